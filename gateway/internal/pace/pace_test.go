package pace

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
)

func TestQuotaFromCgroupV1AndV2(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// v2 mounted at root/v2: the tightest quota along the path counts (a
	// parent's 1.5 cores is looser than the leaf's quarter).
	write("v2/kubepods/cpu.max", "150000 100000\n")
	write("v2/kubepods/pod1/cpu.max", "25000 100000\n")
	write("v2/other/cpu.max", "max 100000\n")
	// v1, the cpu controller co-mounted under a name no guess would find,
	// and a container's view whose mount root is its own cgroup.
	write("odd,cpu,cpuacct/bench/cpu.cfs_quota_us", "2500\n")
	write("odd,cpu,cpuacct/bench/cpu.cfs_period_us", "10000\n")
	write("odd,cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
	write("odd,cpu,cpuacct/cpu.cfs_period_us", "100000\n")
	write("ctr/cpu.cfs_quota_us", "50000\n")
	write("ctr/cpu.cfs_period_us", "100000\n")
	mountinfo := func(lines ...string) []mount {
		return cgroupMounts(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	}
	v2 := mountinfo("30 23 0:26 / "+root+"/v2 rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate",
		"31 23 0:27 / /proc rw - proc proc rw")
	for _, c := range []struct {
		listing string
		want    float64
		ok      bool
	}{
		{"0::/kubepods/pod1\n", 0.25, true},
		{"0::/other\n", 0, false},
		{"garbage\n", 0, false},
	} {
		if q, ok := quotaOf(strings.NewReader(c.listing), v2); ok != c.ok || q != c.want {
			t.Errorf("v2 %q: %v %v, want %v %v", c.listing, q, ok, c.want, c.ok)
		}
	}
	v1 := mountinfo("40 30 0:35 / "+root+"/odd,cpu,cpuacct rw - cgroup cgroup rw,cpuset,cpu,cpuacct",
		"41 30 0:36 / "+root+"/memory rw - cgroup cgroup rw,memory")
	if q, ok := quotaOf(strings.NewReader("12:memory:/bench\n4:cpuset,cpu,cpuacct:/bench\n"), v1); !ok || q != 0.25 {
		t.Errorf("v1: %v %v", q, ok)
	}
	if q, ok := quotaOf(strings.NewReader("4:cpuset,cpu,cpuacct:/\n"), v1); ok {
		t.Errorf("v1 root without a quota: %v", q)
	}
	ctr := mountinfo(`50 40 0:40 /docker/abc ` + root + `/ctr ro - cgroup cgroup rw,cpu,cpuacct`)
	if q, ok := quotaOf(strings.NewReader("4:cpu,cpuacct:/docker/abc\n"), ctr); !ok || q != 0.5 {
		t.Errorf("container view: %v %v", q, ok)
	}
	if q, ok := quotaOf(strings.NewReader("4:cpu,cpuacct:/elsewhere\n"), ctr); ok {
		t.Errorf("a path outside the mount: %v", q)
	}
	if got := unescape(`/a\040b`); got != "/a b" {
		t.Errorf("unescape: %q", got)
	}
}

func TestSteerStartsFollowsAndStops(t *testing.T) {
	p := New(0.8)
	// Under the target: nothing happens.
	if calm := p.steer(0.5, 1000, false, 0); p.engaged.Load() || calm != 0 {
		t.Fatal("paced under the target")
	}
	// Over it: pacing starts at the rate that would have kept it there.
	p.steer(1.6, 1000, false, 0)
	if !p.engaged.Load() || p.Rate() != 500 {
		t.Fatalf("engaged %v at %v reads/s, want 500", p.engaged.Load(), p.Rate())
	}
	// Far over: one tick cuts at most 15 %.
	p.steer(4, 500, true, 0)
	if r := p.Rate(); r != 425 {
		t.Fatalf("cut to %v, want 425", r)
	}
	// Under the target with reads waiting: up by at most 5 % a tick.
	p.steer(0.7, 425, true, 0)
	if r := p.Rate(); r != 425*1.05 {
		t.Fatalf("raised to %v, want %v", r, 425*1.05)
	}
	// Under the target with nobody waiting: the rate stays, and pacing
	// ends after calmTicks such ticks.
	r := p.Rate()
	calm := 0
	for i := 0; i < calmTicks-1; i++ {
		calm = p.steer(0.7, 100, false, calm)
	}
	if !p.engaged.Load() || p.Rate() != r {
		t.Fatalf("engaged %v, rate %v after %d calm ticks", p.engaged.Load(), p.Rate(), calmTicks-1)
	}
	if p.steer(0.7, 100, false, calm); p.engaged.Load() {
		t.Fatal("still pacing after calmTicks")
	}
	// The floor holds whatever the CPU says.
	p.steer(1, 1, false, 0)
	for i := 0; i < 100; i++ {
		p.steer(100, 1, true, 0)
	}
	if p.Rate() != minRate {
		t.Fatalf("rate %v under the floor %v", p.Rate(), minRate)
	}
}

// fakeConn counts reads and writes; reads return one byte.
type fakeConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *fakeConn) Read(b []byte) (int, error)      { c.reads.Add(1); b[0] = 'x'; return 1, nil }
func (c *fakeConn) Write(b []byte) (int, error)     { return len(b), nil }
func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }

type oneConn struct {
	net.Listener
	c net.Conn
}

func (l oneConn) Accept() (net.Conn, error) { return l.c, nil }

// A paced connection waits for a slot before the first read of each
// request, never inside one.
func TestConnWaitsBetweenRequestsOnly(t *testing.T) {
	p := New(0.8)
	p.Hold()
	fc := &fakeConn{}
	c, _ := p.Listener(oneConn{c: fc}).Accept()
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 8)
		c.Read(buf) // a request's first read: waits
		c.Read(buf) // inside it: does not
		close(done)
	}()
	testwait.AssertUntil(t, 100*time.Millisecond, func() error {
		if n := fc.reads.Load(); n != 0 {
			t.Fatalf("%d reads while held", n)
		}
		return nil
	})
	p.slots <- struct{}{}
	<-done
	if fc.reads.Load() != 2 {
		t.Fatalf("reads: %d", fc.reads.Load())
	}
	// After the response, the next request's read waits again.
	c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	go c.Read(make([]byte, 8))
	testwait.AssertUntil(t, 50*time.Millisecond, func() error {
		if fc.reads.Load() != 2 {
			t.Fatal("the next request was read while held")
		}
		return nil
	})
	p.slots <- struct{}{}
	testwait.EventuallyTrue(t, 5*time.Second, "the next request read once its slot came", func() bool { return fc.reads.Load() == 3 })
	if n, _ := p.Held(); n != 2 {
		t.Fatalf("held reads counted: %d", n)
	}
}

// A wait ends at the connection's read deadline (fasthttp's timeouts
// keep their meaning); a 100 Continue does not make the body's read wait;
// a half-closed connection's drain is never paced.
func TestConnDeadlineInterimAndDrain(t *testing.T) {
	p := New(0.8)
	p.Hold()
	fc := &fakeConn{}
	c, _ := p.Listener(oneConn{c: fc}).Accept()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) || fc.reads.Load() != 0 {
		t.Fatalf("read past its deadline: %v, %d reads", err, fc.reads.Load())
	}
	c.SetReadDeadline(time.Time{})
	p.slots <- struct{}{}
	c.Read(make([]byte, 8))                          // a request, admitted
	c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")) // then its body
	c.Read(make([]byte, 8))
	if fc.reads.Load() != 2 {
		t.Fatalf("the body after 100 Continue waited: %d reads", fc.reads.Load())
	}
	c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\n\r\n"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.Read(make([]byte, 8))
	if fc.reads.Load() != 3 {
		t.Fatal("the drain of a half-closed connection waited for a slot")
	}
}

// While pacing, no more slots are handed out than the rate allows (plus
// the saved-up burst), however many reads wait.
func TestDispenserHoldsTheRate(t *testing.T) {
	p := New(0.8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.dispense(ctx)
	p.rate.Store(math.Float64bits(200))
	p.engaged.Store(true)
	p.wake <- struct{}{}
	var got atomic.Int64
	for i := 0; i < 32; i++ {
		go func() {
			for ctx.Err() == nil {
				if p.Wait(time.Now().Add(time.Second)) {
					got.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	time.Sleep(500 * time.Millisecond)
	n, elapsed := got.Load(), time.Since(start)
	if limit := int64(200*elapsed.Seconds()) + maxBurst + 1; n > limit {
		t.Fatalf("%d reads in %v at 200/s (limit %d)", n, elapsed, limit)
	}
	if n == 0 {
		t.Fatal("no slot handed out")
	}
	p.engaged.Store(false)
	p.wake <- struct{}{}
}

// Run paces while the process burns more than its target and lets every
// held read go when the load is gone.
func TestRunPacesUnderLoadAndReleases(t *testing.T) {
	p := New(0.5)
	p.budget = func() float64 { return 1 }
	var burned atomic.Int64 // ns of "CPU" the fake process has used
	p.cpu = func() time.Duration { return time.Duration(burned.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	stop := make(chan struct{})
	go func() { // the process burns its whole budget
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-time.After(5 * time.Millisecond):
				burned.Add(int64(now.Sub(last)))
				last = now
			}
		}
	}()
	for i := 0; i < 100 && !p.engaged.Load(); i++ { // reads flowing
		p.Wait(time.Time{})
		time.Sleep(time.Millisecond)
	}
	testwait.EventuallyTrue(t, 5*time.Second, "pacing under load", func() bool { return p.Rate() > 0 })
	// From here no slot is handed out (rate 0): only the end of pacing
	// can let the parked reads go.
	p.Hold()
	parked := make(chan struct{}, 64)
	for i := 0; i < 64; i++ {
		go func() { p.Wait(time.Time{}); parked <- struct{}{} }()
	}
	testwait.EventuallyTrue(t, 5*time.Second, "reads parked", func() bool { return p.waiting.Load() == 64 })
	close(stop) // the load is gone: pacing ends, and every read goes
	for i := 0; i < 64; i++ {
		select {
		case <-parked:
		case <-time.After(testwait.Scaled(10 * time.Second)):
			t.Fatalf("%d reads still held after the load went", 64-i)
		}
	}
	testwait.EventuallyTrue(t, 5*time.Second, "pacing ended", func() bool { return !p.engaged.Load() })
}
