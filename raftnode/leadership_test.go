package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
)

// threeNodes starts a three-voter cluster in-process: n[0] bootstraps and
// adds the others itself (no HTTP: Join on the leader is local).
func threeNodes(t *testing.T) []*Node {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*Node
	for i := 0; i < 3; i++ {
		n, err := Open(Config{ID: fmt.Sprintf("p%d", i+1), DataDir: t.TempDir(), RaftBind: harness.FreeAddr(t),
			HTTPAdvertise: "127.0.0.1:1", Bootstrap: i == 0, Logger: quiet,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		nodes = append(nodes, n)
	}
	testwait.EventuallyTrue(t, 10*time.Second, "p1 leads", func() bool { return nodes[0].IsLeader() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := nodes[0].Join(ctx, JoinRequest{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertise}); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

func leaderOf(nodes []*Node) *Node {
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// termRun is one start of a leader loop.
type termRun struct {
	node string
	term uint64
	// applyErr: what ApplyAsLeader in the loop's term answered once the
	// loop's ctx ended (the write of a deposed leader).
	applyErr error
	ended    time.Time
}

// A leader loop starts when its node wins a term and its ctx ends the
// moment leadership moves away; a write in that term made after the loss
// is refused, not forwarded, and reaches no replica. The new leader's
// loop starts in a later term and writes in it.
func TestLeaderLoopsEndWithTheTermAndItsWritesAreRefused(t *testing.T) {
	nodes := threeNodes(t)
	var mu sync.Mutex
	runs := map[string][]*termRun{}
	started := make(chan *termRun, 8)
	for _, n := range nodes {
		n.LeaderLoops(t.Context(), func(ctx context.Context, term uint64) {
			r := &termRun{node: n.cfg.ID, term: term}
			mu.Lock()
			runs[n.cfg.ID] = append(runs[n.cfg.ID], r)
			mu.Unlock()
			started <- r
			<-ctx.Done() // the round in flight: it finishes after the loss
			r.ended = time.Now()
			_, err := n.ApplyAsLeader(context.Background(), term, &fsm.AddFrontend{Key: "stale-" + n.cfg.ID, Secret: "s"})
			mu.Lock()
			r.applyErr = err
			mu.Unlock()
		})
	}
	var first *termRun
	select {
	case first = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no leader loop started")
	}
	old := leaderOf(nodes)
	if old == nil || old.cfg.ID != first.node || first.term != old.raft.CurrentTerm() {
		t.Fatalf("loop started on %s in term %d; leader %v", first.node, first.term, old)
	}
	// While it leads, its term's writes go through.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := old.ApplyAsLeader(ctx, first.term, &fsm.AddFrontend{Key: "in-term", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	// ...and not in another term, nor on a follower (no forwarding).
	if _, err := old.ApplyAsLeader(ctx, first.term+1, &fsm.AddFrontend{Key: "other-term", Secret: "s"}); !errors.Is(err, ErrNotLeaderOfTerm) {
		t.Fatalf("ApplyAsLeader in a term not led: %v", err)
	}
	for _, n := range nodes {
		if n != old {
			if _, err := n.ApplyAsLeader(ctx, first.term, &fsm.AddFrontend{Key: "follower", Secret: "s"}); !errors.Is(err, ErrNotLeaderOfTerm) {
				t.Fatalf("ApplyAsLeader on follower %s: %v", n.cfg.ID, err)
			}
		}
	}

	moved := time.Now()
	old.HandOverLeadership()
	var second *termRun
	select {
	case second = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the new leader's loop did not start")
	}
	if second.node == old.cfg.ID || second.term <= first.term {
		t.Fatalf("second loop on %s in term %d after %s's term %d", second.node, second.term, old.cfg.ID, first.term)
	}
	testwait.EventuallyTrue(t, 5*time.Second, "the deposed leader's loop ends", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !first.ended.IsZero() && first.applyErr != nil
	})
	mu.Lock()
	t.Logf("LEADER LOOPS: %s's loop (term %d) ended %v after the transfer began; %s's started in term %d; the deposed write: %v",
		old.cfg.ID, first.term, first.ended.Sub(moved).Round(time.Millisecond), second.node, second.term, first.applyErr)
	if !errors.Is(first.applyErr, ErrNotLeaderOfTerm) {
		t.Fatalf("the deposed leader's write: %v, want ErrNotLeaderOfTerm", first.applyErr)
	}
	mu.Unlock()

	// The new leader writes in its term; once every replica has that
	// write, none holds the deposed leader's.
	neu := leaderOf(nodes)
	testwait.EventuallyTrue(t, 5*time.Second, "the new leader known", func() bool { neu = leaderOf(nodes); return neu != nil })
	if _, err := neu.ApplyAsLeader(ctx, second.term, &fsm.AddFrontend{Key: "new-term", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	idx := neu.FSM().AppliedIndex()
	for _, n := range nodes {
		if err := n.WaitApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"in-term", "new-term"} {
			if _, ok := n.FSM().Frontend(key); !ok {
				t.Fatalf("%s lacks %s", n.cfg.ID, key)
			}
		}
		for _, key := range []string{"other-term", "follower", "stale-" + old.cfg.ID} {
			if _, ok := n.FSM().Frontend(key); ok {
				t.Fatalf("%s holds %s: a write outside its term was applied", n.cfg.ID, key)
			}
		}
	}
}

// A loop registered while the node leads starts at once in the current
// term; one whose parent context ends stops, and does not start again.
func TestLeaderLoopsRegisteredWhileLeading(t *testing.T) {
	n := singleNode(t)
	testwait.EventuallyTrue(t, 5*time.Second, "the term established", func() bool {
		n.lead.mu.Lock()
		defer n.lead.mu.Unlock()
		return n.lead.cur != nil
	})
	parent, stop := context.WithCancel(context.Background())
	got := make(chan uint64, 1)
	ended := make(chan struct{})
	n.LeaderLoops(parent, func(ctx context.Context, term uint64) {
		got <- term
		<-ctx.Done()
		close(ended)
	})
	select {
	case term := <-got:
		if term != n.raft.CurrentTerm() {
			t.Fatalf("term %d, raft is in %d", term, n.raft.CurrentTerm())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not start")
	}
	stop()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not end with its parent")
	}
}
