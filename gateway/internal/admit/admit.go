// Package admit bounds the client work a peer takes on at once, so that a
// flood of clients cannot starve what keeps the cluster alive: Raft's own
// transport, read-index and forwarded writes never pass through it.
//
// Two classes are counted apart. Reads (join, getMeetingInfo, ...) are
// cheap, CPU-bound and safe to retry: past a few per core, more of them in
// flight only lengthen the run queue every goroutine waits in, Raft's
// heartbeats included, so their bound is small. Writes (create, end, ...)
// mostly wait on Raft and on BBB nodes and are what users cannot redo by
// reloading a page: they have their own, larger bound, which a read flood
// cannot use up. A request past its bound is shed at once, before any
// parsing or checksum, so shedding costs far less than serving.
package admit

import (
	"runtime"
	"sync/atomic"
)

// Class is what kind of work a request is.
type Class int

const (
	Read Class = iota
	Write
)

// Defaults: reads a few per core (each is microseconds of CPU), writes
// enough to keep thousands of creates a second in flight while each waits
// on a commit and a node.
var (
	DefaultReads  = 32 * runtime.GOMAXPROCS(0)
	DefaultWrites = 2048
)

// Gate counts the requests in flight per class.
type Gate struct {
	inflight [2]atomic.Int64
	limit    [2]int64
}

// New returns a gate admitting at most reads and writes requests at once;
// a bound ≤ 0 takes the default.
func New(reads, writes int) *Gate {
	if reads <= 0 {
		reads = DefaultReads
	}
	if writes <= 0 {
		writes = DefaultWrites
	}
	g := &Gate{}
	g.limit[Read], g.limit[Write] = int64(reads), int64(writes)
	return g
}

// Enter admits a request of class c, or reports false (shed) when c is at
// its bound. Every admitted request must Leave.
func (g *Gate) Enter(c Class) bool {
	if g.inflight[c].Add(1) > g.limit[c] {
		g.inflight[c].Add(-1)
		return false
	}
	return true
}

// Leave ends an admitted request.
func (g *Gate) Leave(c Class) { g.inflight[c].Add(-1) }

// InFlight returns the requests of class c being served.
func (g *Gate) InFlight(c Class) int64 { return g.inflight[c].Load() }

// Limit returns class c's bound.
func (g *Gate) Limit(c Class) int64 { return g.limit[c] }
