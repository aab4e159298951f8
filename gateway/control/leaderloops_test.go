package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/test/harness"
)

// staleAttendees marks the report of the probe held across the leadership
// change: no other answer carries it.
const staleAttendees = 777

// recordingCluster is a raftnode.Node that remembers every command the
// control loops got committed through it, by whichever write path.
type recordingCluster struct {
	*raftnode.Node
	mu        sync.Mutex
	committed []fsm.Command
	refused   []fsm.Command
}

func (c *recordingCluster) note(cmd fsm.Command, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.refused = append(c.refused, cmd)
	} else {
		c.committed = append(c.committed, cmd)
	}
}

func (c *recordingCluster) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	r, err := c.Node.Apply(ctx, cmd)
	c.note(cmd, err)
	return r, err
}

func (c *recordingCluster) Commit(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	r, err := c.Node.Commit(ctx, cmd)
	c.note(cmd, err)
	return r, err
}

func (c *recordingCluster) ApplyAsLeader(ctx context.Context, term uint64, cmd fsm.Command) (*fsm.Result, error) {
	r, err := c.Node.ApplyAsLeader(ctx, term, cmd)
	c.note(cmd, err)
	return r, err
}

// reports counts the committed ReportBackends, and those that carry the
// stale figure.
func (c *recordingCluster) reports() (all, stale int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range c.committed {
		if rb, ok := cmd.(*fsm.ReportBackends); ok {
			all++
			for _, r := range rb.Reports {
				if r.Attendees == staleAttendees {
					stale++
				}
			}
		}
	}
	return all, stale
}

type loopPeer struct {
	rc  *recordingCluster
	ctl *Control
}

// startLoopCluster runs three Raft peers in-process, p1 bootstrapping and
// adding the others itself (a leader's Join is local: no HTTP), each with
// its control loops over it.
func startLoopCluster(t *testing.T) []*loopPeer {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var peers []*loopPeer
	for i := 0; i < 3; i++ {
		raftAddr := harness.FreeAddr(t)
		node, err := raftnode.Open(raftnode.Config{ID: fmt.Sprintf("p%d", i+1), DataDir: t.TempDir(), RaftBind: raftAddr,
			HTTPAdvertise: "127.0.0.1:1", Bootstrap: i == 0, Logger: quiet,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Shutdown() })
		p := &loopPeer{rc: &recordingCluster{Node: node}}
		p.ctl = New(Config{Logger: quiet}, p.rc, httpCaller{})
		peers = append(peers, p)
		if i == 0 {
			testwait.EventuallyTrue(t, 10*time.Second, "p1 leads", func() bool { return node.IsLeader() })
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = peers[0].rc.Join(ctx, raftnode.JoinRequest{ID: node.ID(), RaftAddr: raftAddr})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	testwait.EventuallyTrue(t, 30*time.Second, "every peer knows the leader", func() bool {
		for _, p := range peers {
			if id, _ := p.rc.Leader(); id == "" {
				return false
			}
		}
		return true
	})
	return peers
}

func loopLeader(peers []*loopPeer) *loopPeer {
	for _, p := range peers {
		if p.rc.IsLeader() {
			return p
		}
	}
	return nil
}

// A leader that loses leadership while its prober waits for a probe
// answer commits nothing of that round: the report built from the answer
// is neither applied nor forwarded to the new leader. The new leader's
// prober runs and its reports reach every replica.
func TestProberDeposedMidRoundCommitsNothing(t *testing.T) {
	peers := startLoopCluster(t)

	// A BBB node whose first answer is held until the leadership moved,
	// and then tells of staleAttendees; every later answer tells of 5.
	held, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	bk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 5
		if calls.Add(1) == 1 {
			close(held)
			<-release
			n = staleAttendees
		}
		fmt.Fprintf(w, "<response><returncode>SUCCESS</returncode><running>false</running><meetings><meeting>"+
			"<meetingID>unbound</meetingID><participantCount>%d</participantCount></meeting></meetings></response>", n)
	}))
	defer bk.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	lead := loopLeader(peers)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := lead.rc.Apply(ctx, &fsm.AddBackend{ID: "b1", URL: bk.URL + "/bigbluebutton/api/", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := lead.rc.Apply(ctx, &fsm.SetBackendAdminState{ID: "b1", State: fsm.AdminReady}); err != nil {
		t.Fatal(err)
	}

	roundsDone := make(chan string, 64)
	for i, p := range peers {
		id := fmt.Sprintf("p%d", i+1)
		p.ctl.afterProbes = func() {
			select {
			case roundsDone <- id:
			default:
			}
		}
	}
	cfg := HealthConfig{Interval: 100 * time.Millisecond, Timeout: 20 * time.Second, FailAfter: 3, RecoverAfter: 1,
		LoadEvery: 100 * time.Millisecond, EndedGrace: time.Minute}
	hctx, stop := context.WithCancel(context.Background())
	defer stop()
	for _, p := range peers {
		go p.ctl.RunHealth(hctx, cfg)
	}

	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's prober did not call the node")
	}
	old := loopLeader(peers)
	if old == nil {
		t.Fatal("no leader while its probe is held")
	}
	oldID := old.rc.ID()
	old.rc.HandOverLeadership()
	deadline := time.Now().Add(10 * time.Second)
	var neu *loopPeer
	for neu == nil || neu == old {
		if time.Now().After(deadline) {
			t.Fatal("no new leader after the transfer")
		}
		time.Sleep(10 * time.Millisecond)
		neu = loopLeader(peers)
	}
	close(release) // the deposed leader's round goes on with its answer

	// The deposed leader finishes its round...
	deadline = time.Now().Add(10 * time.Second)
	for finished := false; !finished; {
		select {
		case id := <-roundsDone:
			finished = id == oldID
		case <-time.After(time.Until(deadline)):
			t.Fatal("the deposed leader's round did not finish")
		}
	}
	// ...and the new leader's prober reports to every replica.
	deadline = time.Now().Add(10 * time.Second)
	for {
		done := true
		for _, p := range peers {
			b, _ := p.rc.FSM().Backend("b1")
			if b.NodeState != fsm.NodeReady || b.Attendees != 5 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			b, _ := neu.rc.FSM().Backend("b1")
			t.Fatalf("the new leader's reports did not reach every replica: %+v", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A while longer: the stale report must not arrive late either.
	time.Sleep(500 * time.Millisecond)
	stop()
	for _, p := range peers {
		if b, _ := p.rc.FSM().Backend("b1"); b.Attendees == staleAttendees {
			t.Fatalf("%s's replica holds the deposed leader's report: %+v", p.rc.ID(), b)
		}
		all, stale := p.rc.reports()
		t.Logf("%s: %d backend reports committed, %d stale", p.rc.ID(), all, stale)
		if stale > 0 {
			t.Fatalf("%s committed the deposed leader's report", p.rc.ID())
		}
	}
	if all, _ := neu.rc.reports(); all == 0 {
		t.Fatal("the new leader committed no report")
	}
	if all, _ := old.rc.reports(); all != 0 {
		t.Fatalf("the deposed leader committed %d reports (its only round was the held one)", all)
	}
}
