package pace

import (
	"context"
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
	// v2: the tightest quota along the path counts (a parent's 1.5 cores
	// is looser than the leaf's quarter).
	write("kubepods/cpu.max", "150000 100000\n")
	write("kubepods/pod1/cpu.max", "25000 100000\n")
	if q, ok := quotaOf(strings.NewReader("0::/kubepods/pod1\n"), root); !ok || q != 0.25 {
		t.Fatalf("v2: %v %v", q, ok)
	}
	write("other/cpu.max", "max 100000\n")
	if q, ok := quotaOf(strings.NewReader("0::/other\n"), root); ok {
		t.Fatalf("v2 without a quota: %v", q)
	}
	// v1: quota over period, -1 meaning none; the path seen from a
	// container may be missing under its own mount.
	write("cpu,cpuacct/bench/cpu.cfs_quota_us", "2500\n")
	write("cpu,cpuacct/bench/cpu.cfs_period_us", "10000\n")
	write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
	write("cpu,cpuacct/cpu.cfs_period_us", "100000\n")
	if q, ok := quotaOf(strings.NewReader("12:memory:/bench\n4:cpu,cpuacct:/bench\n"), root); !ok || q != 0.25 {
		t.Fatalf("v1: %v %v", q, ok)
	}
	if q, ok := quotaOf(strings.NewReader("4:cpu,cpuacct:/docker/abc\n"), root); ok {
		t.Fatalf("v1, host path missing, root without quota: %v", q)
	}
	if _, ok := quotaOf(strings.NewReader("garbage\n"), root); ok {
		t.Fatal("a listing without cgroups gave a quota")
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

func (c *fakeConn) Read(b []byte) (int, error)  { c.reads.Add(1); b[0] = 'x'; return 1, nil }
func (c *fakeConn) Write(b []byte) (int, error) { return len(b), nil }

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
		p.Wait()
		time.Sleep(time.Millisecond)
	}
	testwait.EventuallyTrue(t, 5*time.Second, "pacing under load", func() bool { return p.Rate() > 0 })
	parked := make(chan struct{}, 64)
	for i := 0; i < 64; i++ {
		go func() { p.Wait(); parked <- struct{}{} }()
	}
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
