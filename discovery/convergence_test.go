package discovery

import (
	"fmt"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/conclave-lb/conclave/internal/testwait"
)

// TestConvergence200Agents runs 3 peers and 200 agents, each its own
// memberlist on loopback (Fast timings, encrypted), in this process, and
// measures how long until every peer's Loads() holds all 200 agents with
// their latest meta: after the agents start and join, and after all of
// them update their load at once. The 60 s bound is only a hang guard;
// the figures are in the CONVERGENCE lines (go test -v).
//
// 203 members on a couple of shared cores starve one another in ways 203
// machines would not: probes time out and live members are declared dead,
// which floods gossip further. The simulation therefore probes less often
// and more patiently (5 s, 3 s timeout); gossip, push/pull and the direct
// path are the Fast ones.
func lenientProbes(c *memberlist.Config) {
	c.ProbeInterval, c.ProbeTimeout = 5*time.Second, 3*time.Second
}

func TestConvergence200Agents(t *testing.T) {
	if testing.Short() {
		t.Skip("200 memberlists: skipped with -short")
	}
	const agents = 200
	const guard = 60 * time.Second

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	lenient := func(c *Config) { c.tune = lenientProbes }
	p1 := startNode(t, "peer-1", peerMeta(1), withKey(keyA), lenient)
	p2 := startNode(t, "peer-2", peerMeta(2), withKey(keyA), withJoin(p1.Addr()), lenient)
	p3 := startNode(t, "peer-3", peerMeta(3), withKey(keyA), withJoin(p1.Addr(), p2.Addr()), lenient)
	peers := []*Node{p1, p2, p3}
	eventually(t, 10*time.Second, "peers see each other", func() bool {
		return p1.NumMembers() == 3 && p2.NumMembers() == 3 && p3.NumMembers() == 3
	})
	join := []string{p1.Addr(), p2.Addr(), p3.Addr()}

	nodes := make([]*Node, agents)
	metas := make([]Meta, agents)
	shutdownAll := func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil {
				wg.Go(func() { n.Shutdown() })
			}
		}
		wg.Wait()
	}
	defer shutdownAll() // also on t.Fatal

	// complete checks that every peer sees every agent alive with metas[i]
	// (and, every 5 s, logs how far each peer got).
	lastDiag := time.Now()
	complete := func() bool {
		if time.Since(lastDiag) > 5*time.Second {
			lastDiag = time.Now()
			for _, p := range peers {
				loads := p.Loads()
				ok, alive := 0, 0
				for _, m := range metas {
					if l, f := loads[m.APIURL]; f && l.Alive {
						alive++
						if l.Meta == m {
							ok++
						}
					}
				}
				t.Logf("diag %s: loads %d alive %d ok %d members %d", p.Name(), len(loads), alive, ok, p.NumMembers())
			}
		}
		for _, p := range peers {
			loads := p.Loads()
			if len(loads) != agents {
				return false
			}
			for _, m := range metas {
				if l, ok := loads[m.APIURL]; !ok || !l.Alive || l.Meta != m {
					return false
				}
			}
		}
		return true
	}

	start := time.Now()
	for i := range agents {
		m := agentMeta(i)
		m.Meetings, m.Attendees, m.Videos = i%7, i%50, i%11
		n, err := Start(Config{Name: fmt.Sprintf("agent-%03d", i), BindAddr: "127.0.0.1:0", Join: join,
			SecretKey: keyA, Meta: m, Fast: true, tune: lenientProbes})
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		nodes[i] = n
		m.Seq = n.LocalMeta().Seq
		metas[i] = m
	}
	started := time.Since(start)
	joined := eventually(t, guard, "every peer's Loads() holds all 200 agents", complete)
	t.Logf("CONVERGENCE: %d agents started (one by one, %v) and joined 3 peers: every peer's Loads() complete %v after the first start",
		agents, started.Round(time.Millisecond), (started + joined).Round(time.Millisecond))

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	sys := int64(after.Sys) - int64(before.Sys)
	t.Logf("MEMORY: %d memberlists in one process: heap in use +%.1f MiB (%.0f KiB per member), runtime Sys +%.1f MiB, %d goroutines (%d per member)",
		agents+3, float64(heap)/(1<<20), float64(heap)/1024/float64(agents+3), float64(sys)/(1<<20),
		runtime.NumGoroutine()-goroutinesBefore, (runtime.NumGoroutine()-goroutinesBefore)/(agents+3))

	// Every agent changes its load at once, once the join gossip (each
	// join is relayed a dozen times by every member) has drained.
	testwait.Sleep(5 * time.Second)
	start, lastDiag = time.Now(), time.Now()
	for i, n := range nodes {
		m := metas[i]
		m.Attendees, m.Meetings, m.BBBUp = 1000+i, 1+i%9, i%10 != 0
		if err := n.UpdateMeta(m); err != nil {
			t.Fatal(err)
		}
		m.Seq = n.LocalMeta().Seq
		metas[i] = m
	}
	all := eventually(t, guard, "every peer sees all 200 updated loads", complete)
	t.Logf("CONVERGENCE: all %d agents updated their load at once: every peer had every update after %v", agents, all.Round(time.Millisecond))

	// One agent at a time (the usual case): latency to all 3 peers.
	var single []time.Duration
	for k := range 5 {
		i := (k * 37) % agents
		m := metas[i]
		m.Attendees++
		if err := nodes[i].UpdateMeta(m); err != nil {
			t.Fatal(err)
		}
		m.Seq = nodes[i].LocalMeta().Seq
		metas[i] = m
		single = append(single, eventually(t, guard, "single update", func() bool {
			for _, p := range peers {
				if p.Loads()[m.APIURL].Meta != m {
					return false
				}
			}
			return true
		}))
		time.Sleep(600 * time.Millisecond) // past the publisher's coalescing window
	}
	slices.Sort(single)
	t.Logf("CONVERGENCE: one agent's update among %d reached all 3 peers in median %v, max %v (5 samples)",
		agents, single[2].Round(time.Millisecond), single[4].Round(time.Millisecond))

	// Every agent and peer stops; their goroutines go.
	start = time.Now()
	shutdownAll()
	for _, p := range peers {
		p.Shutdown()
	}
	t.Logf("shutting down %d members took %v", agents+3, time.Since(start).Round(time.Millisecond))
	if err := testwait.Poll(20*time.Second, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > goroutinesBefore+10 {
			return fmt.Errorf("%d goroutines left", n)
		}
		return nil
	}); err != nil {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		out := b.String()
		if len(out) > 8000 {
			out = out[:8000]
		}
		t.Fatalf("%v after shutting every member down (%d before):\n%s", err, goroutinesBefore, out)
	}
}
