package admit

import (
	"sync"
	"testing"
	"time"
)

func TestGateBoundsEachClassApart(t *testing.T) {
	t.Parallel()
	g := New(1, 2, 3)
	if !g.Enter(Read) || !g.Enter(Read) {
		t.Fatal("the first two reads were shed")
	}
	if g.Enter(Read) {
		t.Fatal("a third read was admitted past the bound of 2")
	}
	// Full reads do not use up the writes' bound, nor the joins'.
	for i := 0; i < 3; i++ {
		if !g.Enter(Write) {
			t.Fatalf("write %d shed while reads were full", i+1)
		}
	}
	if g.Enter(Write) {
		t.Fatal("a fourth write was admitted past the bound of 3")
	}
	if !g.Enter(Join) {
		t.Fatal("a join was shed while only reads and writes were full")
	}
	g.Leave(Read)
	if !g.Enter(Read) {
		t.Fatal("a read was shed after one left")
	}
	if got := g.InFlight(Read); got != 2 {
		t.Fatalf("reads in flight = %d, want 2 (a shed request must not stay counted)", got)
	}
}

// A join past the bound waits for a slot, briefly: it gets one when a join
// leaves within MaxJoinWait, and is shed after that.
func TestJoinWaitsBrieflyForASlot(t *testing.T) {
	t.Parallel()
	g := New(1, 1, 1)
	if !g.Enter(Join) {
		t.Fatal("the first join was shed")
	}
	start := time.Now()
	if g.Enter(Join) {
		t.Fatal("a second join was admitted past the bound of 1")
	}
	if waited := time.Since(start); waited < MaxJoinWait {
		t.Fatalf("shed after %v, before MaxJoinWait (%v)", waited, MaxJoinWait)
	}
	go func() {
		time.Sleep(MaxJoinWait / 4)
		g.Leave(Join)
	}()
	if !g.Enter(Join) {
		t.Fatal("a join was shed although a slot came free within MaxJoinWait")
	}
	if got := g.InFlight(Join); got != 1 {
		t.Fatalf("joins in flight = %d, want 1", got)
	}
}

func TestGateUnderConcurrency(t *testing.T) {
	t.Parallel()
	const limit = 8
	for _, c := range []Class{Join, Read} {
		g := New(limit, limit, 1)
		var mu sync.Mutex
		cur, peak := 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					if !g.Enter(c) {
						continue
					}
					mu.Lock()
					cur++
					peak = max(peak, cur)
					mu.Unlock()
					mu.Lock()
					cur--
					mu.Unlock()
					g.Leave(c)
				}
			}()
		}
		wg.Wait()
		if peak > limit {
			t.Fatalf("class %d: %d requests were in flight at once, bound %d", c, peak, limit)
		}
		if g.InFlight(c) != 0 {
			t.Fatalf("class %d: %d still counted after all left", c, g.InFlight(c))
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	g := New(0, 0, -1)
	if g.Limit(Join) != int64(DefaultJoins) || g.Limit(Read) != int64(DefaultReads) || g.Limit(Write) != int64(DefaultWrites) {
		t.Fatalf("limits %d/%d/%d, want the defaults", g.Limit(Join), g.Limit(Read), g.Limit(Write))
	}
}
