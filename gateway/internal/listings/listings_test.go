package listings

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestCache(maxAge time.Duration) (*Cache, *clock) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := New(maxAge)
	c.now = clk.now
	return c, clk
}

func TestFreshListingIsServedWithoutCallingTheNode(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(time.Second)
	calls := 0
	fetch := func() (Listing, error) {
		calls++
		return Listing{Size: 1, Started: clk.now()}, nil
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Get("b1", fetch); err != nil {
			t.Fatal(err)
		}
		clk.add(90 * time.Millisecond)
	}
	if calls != 1 {
		t.Fatalf("10 Gets within 0.9 s made %d node calls, want 1", calls)
	}
	clk.add(200 * time.Millisecond) // now 1.1 s after the call was sent
	if _, err := c.Get("b1", fetch); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("a listing older than MaxAge was served (calls %d, want 2)", calls)
	}
	if _, err := c.Get("b2", fetch); err != nil || calls != 3 {
		t.Fatalf("another node shares b1's listing (calls %d, err %v)", calls, err)
	}
}

func TestConcurrentGetsShareOneCall(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(time.Second)
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func() (Listing, error) {
		calls.Add(1)
		<-release
		return Listing{Order: []string{"x"}, Started: clk.now()}, nil
	}
	var wg sync.WaitGroup
	docs := make([]string, 20)
	for i := range docs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l, err := c.Get("b1", fetch)
			if err == nil {
				docs[i] = l.Order[0]
			}
		}(i)
	}
	time.Sleep(50 * time.Millisecond) // let them all arrive while the call is out
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 concurrent Gets made %d node calls, want 1", n)
	}
	for i, d := range docs {
		if d != "x" {
			t.Fatalf("caller %d got %q", i, d)
		}
	}
}

func TestFailedCallIsNotKept(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(time.Second)
	fail := true
	calls := 0
	fetch := func() (Listing, error) {
		calls++
		if fail {
			return Listing{}, errors.New("node down")
		}
		return Listing{Order: []string{"ok"}, Started: clk.now()}, nil
	}
	if _, err := c.Get("b1", fetch); err == nil {
		t.Fatal("the failure was not reported")
	}
	fail = false
	l, err := c.Get("b1", fetch)
	if err != nil || len(l.Order) != 1 || calls != 2 {
		t.Fatalf("after a failure: listing %v err %v calls %d (want a new call)", l.Order, err, calls)
	}
}

func TestBytesBoundedAndSwept(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(time.Second)
	big := MaxBytes/2 + 1
	fetch := func() (Listing, error) { return Listing{Size: big, Started: clk.now()}, nil }
	if _, err := c.Get("b1", fetch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("b2", fetch); err != nil {
		t.Fatal(err)
	}
	if got := c.Bytes(); got != big {
		t.Fatalf("kept %d bytes, want %d (the second listing is over MaxBytes in all)", got, big)
	}
	clk.add(11 * time.Second)
	small := func() (Listing, error) { return Listing{Size: 1, Started: clk.now()}, nil }
	if _, err := c.Get("b3", small); err != nil {
		t.Fatal(err)
	}
	if got := c.Bytes(); got != 1 {
		t.Fatalf("kept %d bytes after the sweep, want 1 (b1's old listing dropped)", got)
	}
}
