package admit

import (
	"sync"
	"testing"
)

func TestGateBoundsEachClassApart(t *testing.T) {
	t.Parallel()
	g := New(2, 3)
	if !g.Enter(Read) || !g.Enter(Read) {
		t.Fatal("the first two reads were shed")
	}
	if g.Enter(Read) {
		t.Fatal("a third read was admitted past the bound of 2")
	}
	// A read flood does not use up the writes' bound.
	for i := 0; i < 3; i++ {
		if !g.Enter(Write) {
			t.Fatalf("write %d shed while reads were full", i+1)
		}
	}
	if g.Enter(Write) {
		t.Fatal("a fourth write was admitted past the bound of 3")
	}
	g.Leave(Read)
	if !g.Enter(Read) {
		t.Fatal("a read was shed after one left")
	}
	if got := g.InFlight(Read); got != 2 {
		t.Fatalf("reads in flight = %d, want 2 (a shed request must not stay counted)", got)
	}
}

func TestGateUnderConcurrency(t *testing.T) {
	t.Parallel()
	const limit = 8
	g := New(limit, 1)
	var mu sync.Mutex
	cur, peak := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if !g.Enter(Read) {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				g.Leave(Read)
			}
		}()
	}
	wg.Wait()
	if peak > limit {
		t.Fatalf("%d requests were in flight at once, bound %d", peak, limit)
	}
	if g.InFlight(Read) != 0 {
		t.Fatalf("%d reads still counted after all left", g.InFlight(Read))
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	g := New(0, -1)
	if g.Limit(Read) != int64(DefaultReads) || g.Limit(Write) != int64(DefaultWrites) {
		t.Fatalf("limits %d/%d, want the defaults %d/%d", g.Limit(Read), g.Limit(Write), DefaultReads, DefaultWrites)
	}
}
