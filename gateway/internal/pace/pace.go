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
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"os"
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
	wake    chan struct{} // tells the dispenser pacing started or ended
	holding atomic.Bool   // Hold: no slot until this episode ends

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
	return &Pacer{target: target, budget: Budget, cpu: processCPU,
		slots: make(chan struct{}, maxBurst), wake: make(chan struct{}, 1)}
}

// Wait blocks until the caller may read a client request: at once unless
// the process is over its target, else until a slot is handed out (in
// the order the callers came) or pacing ends. A zero deadline waits as
// long as that takes; past a deadline Wait gives up and reports false.
func (p *Pacer) Wait(deadline time.Time) bool {
	p.admitted.Add(1)
	if !p.engaged.Load() {
		return true
	}
	select {
	case <-p.slots:
		return true
	default:
	}
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	// Pacing may have ended since the check above, and the releaser seen
	// no one waiting: look again now that this read is counted.
	if !p.engaged.Load() {
		return true
	}
	start := time.Now()
	defer func() {
		p.held.Add(1)
		p.heldNs.Add(int64(time.Since(start)))
	}()
	if deadline.IsZero() {
		<-p.slots
		return true
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.slots:
		return true
	case <-t.C:
		return false
	}
}

// Waiting returns how many reads wait for a slot now.
func (p *Pacer) Waiting() int64 { return p.waiting.Load() }

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
	go p.dispense(ctx)
	t := time.NewTicker(tick)
	defer t.Stop()
	budget, budgetAt := p.budget(), time.Now()
	lastCPU, lastAt, lastAdmitted, lastHeld := p.cpu(), time.Now(), p.admitted.Load(), p.held.Load()
	var used, rate float64
	calm := 0
	for {
		select {
		case <-ctx.Done():
			p.holding.Store(false)
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
			if p.engaged.Load() != was {
				select { // the dispenser starts handing out slots, or lets every parked read go
				case p.wake <- struct{}{}:
				default:
				}
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
			p.holding.Store(false)
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
// until Run ends pacing (after calmTicks under half the target) or its
// context ends. Tests use it to show which connections are paced.
func (p *Pacer) Hold() {
	p.holding.Store(true)
	p.engaged.Store(true)
}

// dispense runs for Run's whole life: while pacing, it hands out slots
// at the paced rate, waking once per slot at low rates and once per
// millisecond at high ones (every wake-up costs the scheduler, which is
// what a peer over its budget has least of); between episodes it lets
// every parked read go and sleeps until woken.
func (p *Pacer) dispense(ctx context.Context) {
	t := time.NewTimer(dispense)
	defer t.Stop()
	for {
		for !p.engaged.Load() {
			p.release()
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
		}
		// A new episode: slots left from the last one are not owed to anyone.
	drain:
		for {
			select {
			case <-p.slots:
			default:
				break drain
			}
		}
		last, credit := time.Now(), 0.0
		t.Reset(dispense)
		for p.engaged.Load() {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				rate := p.Rate()
				if p.holding.Load() {
					rate = 0
				}
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
	}
}

// release lets every parked read go while pacing is off.
func (p *Pacer) release() {
	for !p.engaged.Load() && p.waiting.Load() > 0 {
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
// its fields need no lock.
//
// "Between requests" starts after any write of a response, so an idle
// keep-alive connection (fasthttp peeks for its next request) waits for a
// slot before that request exists: the slot then admits its next request,
// whenever it comes, so each request still costs one slot.
type conn struct {
	net.Conn
	p        *Pacer
	between  bool      // the next read starts a request
	draining bool      // half-closed: the reads left only drain what the client still sends
	deadline time.Time // the read deadline fasthttp set, which a wait must not outlast
}

func (c *conn) Read(b []byte) (int, error) {
	if c.between && !c.draining {
		c.between = false
		if !c.p.Wait(c.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
	}
	return c.Conn.Read(b)
}

// interim is the start of an interim answer (100 Continue): the request's
// body follows it, so the read after it is not a new request.
var interim = []byte("HTTP/1.1 1")

func (c *conn) Write(b []byte) (int, error) {
	c.between = !bytes.HasPrefix(b, interim)
	return c.Conn.Write(b)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite half-closes the connection underneath, which the guard's
// lingering close needs (a wrapper would otherwise hide it); what is read
// after it is dropped, so it is not paced.
func (c *conn) CloseWrite() error {
	c.draining = true
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
