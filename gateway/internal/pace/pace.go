// Package pace keeps a peer's client traffic from taking the CPU that
// consensus needs.
//
// Go's scheduler has no priorities: every runnable goroutine gets its turn,
// so once client requests fill the CPU, Raft's loops wait behind them and
// a create's commits slow from milliseconds to hundreds of them (measured:
// docs/PERFORMANCE.md). Bounding client goroutines does not help, since
// reading a request and refusing it costs most of what serving it does.
// What helps is not reading it: a request left in the socket costs this
// process nothing, and TCP pushes back on the client.
//
// So a Pacer watches the process's own CPU time against what it may use
// (its cgroup's CPU quota, or its cores). While the process uses more than
// a target share of it, each client connection waits for a slot before it
// reads its next request, the slots handed out at a rate the Pacer steers
// every tick so the process stays at the target. The rest of the CPU stays
// free for Raft, read-index and forwarded writes, which arrive on
// connections the Pacer never sees (the Raft port, peer TLS). Below the
// target nothing waits, and a request costs one atomic load.
package pace

import (
	"context"
	"errors"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultTarget is the share of the CPU budget client work may keep busy
// before it is paced: the rest is headroom for consensus. Measured under a
// flood at twice a peer's capacity (docs/PERFORMANCE.md).
const DefaultTarget = 0.8

const (
	// tick is how often the rate is steered; the CPU share it steers by is
	// smoothed over about four ticks (a CFS period is 10 to 100 ms, so one
	// tick's share jumps).
	tick  = 25 * time.Millisecond
	alpha = 0.25
	// dispense is the shortest gap between two hand-outs of slots.
	dispense = time.Millisecond
	// minRate is the floor of the paced rate, so that a peer whose CPU
	// goes to something else (a compaction, a snapshot) still serves.
	minRate = 50.0
	// calmTicks in a row without a held read, or under half the target,
	// end pacing.
	calmTicks = 40
	// maxBurst bounds the slots saved up while no read waits.
	maxBurst = 64
)

// Pacer hands out client reads at a steered rate while the process is
// over its CPU target.
type Pacer struct {
	target float64
	budget func() float64 // cores the process may use
	cpu    func() time.Duration

	engaged atomic.Bool
	rate    atomic.Uint64 // math.Float64bits of the paced reads/s
	slots   chan struct{} // handed out by dispense while engaged
	waiting atomic.Int64  // reads parked on slots

	admitted atomic.Int64 // reads let through, for the steering
	held     atomic.Int64 // reads that waited, ever (a metric)
	heldNs   atomic.Int64 // total wait, ever
}

// New returns a Pacer keeping client work under target (a share of the CPU
// budget, 0 < target ≤ 1; 0 takes DefaultTarget). Run steers it.
func New(target float64) *Pacer {
	if target <= 0 || target > 1 {
		target = DefaultTarget
	}
	return &Pacer{target: target, budget: Budget, cpu: processCPU, slots: make(chan struct{}, maxBurst)}
}

// Wait blocks until the caller may read a client request: at once unless
// the process is over its target, else until a slot is handed out (in
// the order the callers came).
func (p *Pacer) Wait() {
	p.admitted.Add(1)
	if !p.engaged.Load() {
		return
	}
	select {
	case <-p.slots:
		return
	default:
	}
	p.waiting.Add(1)
	start := time.Now()
	<-p.slots
	p.waiting.Add(-1)
	p.held.Add(1)
	p.heldNs.Add(int64(time.Since(start)))
}

// Held returns how many reads waited for a slot, and their total wait.
func (p *Pacer) Held() (int64, time.Duration) {
	return p.held.Load(), time.Duration(p.heldNs.Load())
}

// Rate returns the paced rate (reads/s), 0 while not pacing.
func (p *Pacer) Rate() float64 {
	if !p.engaged.Load() {
		return 0
	}
	return math.Float64frombits(p.rate.Load())
}

func (p *Pacer) setRate(r float64) { p.rate.Store(math.Float64bits(max(r, minRate))) }

// Run steers the rate until ctx ends.
func (p *Pacer) Run(ctx context.Context) {
	t := time.NewTicker(tick)
	defer t.Stop()
	budget, budgetAt := p.budget(), time.Now()
	lastCPU, lastAt, lastAdmitted, lastHeld := p.cpu(), time.Now(), p.admitted.Load(), p.held.Load()
	var used, rate float64
	calm := 0
	for {
		select {
		case <-ctx.Done():
			p.engaged.Store(false)
			p.release()
			return
		case now := <-t.C:
			if now.Sub(budgetAt) > time.Second { // a quota can change under a running process
				budget, budgetAt = p.budget(), now
			}
			cpu, admitted, held := p.cpu(), p.admitted.Load(), p.held.Load()
			span := now.Sub(lastAt).Seconds()
			if span <= 0 {
				continue
			}
			used += alpha * ((cpu-lastCPU).Seconds()/(budget*span) - used) // share of the budget
			rate += alpha * (float64(admitted-lastAdmitted)/span - rate)
			waited := held > lastHeld || p.waiting.Load() > 0
			lastCPU, lastAt, lastAdmitted, lastHeld = cpu, now, admitted, held
			was := p.engaged.Load()
			calm = p.steer(used, rate, waited, calm)
			switch now := p.engaged.Load(); {
			case now && !was:
				go p.dispense(ctx)
			case was && !now && p.waiting.Load() > 0:
				go p.release() // reads parked under Hold, which has no dispenser
			}
		}
	}
}

// steer sets the paced rate from the smoothed CPU share and admitted
// rate, given whether a read waited since the last tick, and starts or
// ends pacing. It returns the count of calm ticks so far.
func (p *Pacer) steer(used, rate float64, waited bool, calm int) int {
	if !p.engaged.Load() {
		if used <= p.target {
			return 0
		}
		// Start at the rate that would have kept the last ticks on target.
		p.setRate(rate * p.target / used)
		p.engaged.Store(true)
		return 0
	}
	// Pacing ends after calmTicks with no read held, or with the CPU
	// under half the target (then holding reads frees nothing).
	if (!waited && used <= p.target) || used < p.target/2 {
		if calm++; calm >= calmTicks {
			p.engaged.Store(false)
			return 0
		}
		if !waited {
			return calm
		}
	} else {
		calm = 0
	}
	// Multiplicative steps toward the target, bounded so that one noisy
	// tick moves the rate little; the rate only rises while reads wait.
	cur := p.Rate()
	f := p.target / max(used, 1e-3)
	switch {
	case f < 1:
		p.setRate(cur * max(f, 0.85))
	case waited:
		p.setRate(cur * min(f, 1.05))
	}
	return calm
}

// Hold starts pacing with no slots handed out: every client read waits
// until Run ends pacing (after calmTicks without load) or ctx ends. Tests
// use it to show which connections are paced.
func (p *Pacer) Hold() {
	p.rate.Store(0)
	p.engaged.Store(true)
}

// dispense hands out slots at the paced rate while pacing, then lets
// every parked read go. It wakes once per slot at low rates and once per
// millisecond at high ones: every wake-up costs the scheduler, which is
// what a peer over its budget has least of.
func (p *Pacer) dispense(ctx context.Context) {
	t := time.NewTimer(dispense)
	defer t.Stop()
	last, credit := time.Now(), 0.0
	for p.engaged.Load() {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rate := p.Rate()
			credit += now.Sub(last).Seconds() * rate
			last = now
		fill:
			for ; credit >= 1; credit-- {
				select {
				case p.slots <- struct{}{}:
				default: // maxBurst saved up: the rest is lost
					credit = 0
					break fill
				}
			}
			t.Reset(max(dispense, time.Duration((1-credit)/max(rate, minRate)*float64(time.Second))))
		}
	}
	p.release()
}

// release lets every parked read go once pacing ends.
func (p *Pacer) release() {
	for p.waiting.Load() > 0 {
		select {
		case p.slots <- struct{}{}:
		default:
			time.Sleep(dispense)
		}
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Listener wraps ln so that each connection waits on p before reading a
// new request (its first read, and the first read after each response).
// Reads inside a request (a body arriving in parts) never wait.
func (p *Pacer) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, p: p} }

type listener struct {
	net.Listener
	p *Pacer
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, p: l.p, between: true}, nil
}

// conn is a client connection whose reads between requests are paced.
// fasthttp reads and writes a connection from one goroutine at a time, so
// between needs no lock.
type conn struct {
	net.Conn
	p       *Pacer
	between bool // the next read starts a request
}

func (c *conn) Read(b []byte) (int, error) {
	if c.between {
		c.between = false
		c.p.Wait()
	}
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	c.between = true
	return c.Conn.Write(b)
}

// CloseWrite half-closes the connection underneath, which the guard's
// lingering close needs (a wrapper would otherwise hide it).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Budget returns the cores this process may use: its cgroup's CPU quota
// when it has one (v2 cpu.max, v1 cpu.cfs_quota_us, the tightest along its
// path), else GOMAXPROCS.
func Budget() float64 {
	if q, ok := cgroupQuota(); ok && q < float64(runtime.GOMAXPROCS(0)) {
		return q
	}
	return float64(runtime.GOMAXPROCS(0))
}
