// Package admit bounds the client work a peer takes on at once, so that a
// flood of clients cannot starve what keeps the cluster alive: Raft's own
// transport, read-index and forwarded writes never pass through it.
//
// Three classes are counted apart. Joins are answered from the local
// replica: pure CPU, microseconds each, and the request a crowd sends all
// at once at nine o'clock. Past a few per core, more joins in flight only
// lengthen the run queue that every goroutine waits in (Raft's heartbeats
// and the claims of creates forwarded by other peers included), so their
// bound is small, and a join waits for a slot a short while (MaxJoinWait),
// parked and costing nothing, before it is shed. Reads (getMeetingInfo,
// getMeetings, ...) mostly wait on a BBB node, and writes (create, end,
// ...) on Raft and a node: they have larger bounds of their own, which a
// join flood cannot use up, and are shed at once past them. A shed
// request is answered before any parsing or checksum.
package admit

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Class is what kind of work a request is.
type Class int

const (
	Join Class = iota
	Read
	Write
	classes
)

// Defaults: joins a few per core; reads and writes enough to keep
// thousands a second in flight while each waits on a node or a commit.
var (
	DefaultJoins  = 4 * runtime.GOMAXPROCS(0)
	DefaultReads  = 512
	DefaultWrites = 2048
)

// MaxJoinWait is how long a join waits for a slot before it is shed: long
// enough to ride out a burst, short enough that a shed answer comes fast.
const MaxJoinWait = 20 * time.Millisecond

// Gate counts the requests in flight per class.
type Gate struct {
	inflight [classes]atomic.Int64
	limit    [classes]int64
	// joinSlots is the joins' semaphore, so that a waiting join parks
	// until one leaves instead of spinning.
	joinSlots chan struct{}
}

// New returns a gate admitting at most joins, reads and writes requests
// of each class at once; a bound ≤ 0 takes the default.
func New(joins, reads, writes int) *Gate {
	pick := func(v, def int) int64 {
		if v <= 0 {
			return int64(def)
		}
		return int64(v)
	}
	g := &Gate{}
	g.limit[Join], g.limit[Read], g.limit[Write] = pick(joins, DefaultJoins), pick(reads, DefaultReads), pick(writes, DefaultWrites)
	g.joinSlots = make(chan struct{}, g.limit[Join])
	return g
}

// Enter admits a request of class c, or reports false (shed) when c is at
// its bound (for a join: still, after waiting up to MaxJoinWait). Every
// admitted request must Leave.
func (g *Gate) Enter(c Class) bool {
	if c == Join {
		select {
		case g.joinSlots <- struct{}{}:
		default:
			t := time.NewTimer(MaxJoinWait)
			defer t.Stop()
			select {
			case g.joinSlots <- struct{}{}:
			case <-t.C:
				return false
			}
		}
		g.inflight[Join].Add(1)
		return true
	}
	if g.inflight[c].Add(1) > g.limit[c] {
		g.inflight[c].Add(-1)
		return false
	}
	return true
}

// Leave ends an admitted request.
func (g *Gate) Leave(c Class) {
	g.inflight[c].Add(-1)
	if c == Join {
		<-g.joinSlots
	}
}

// InFlight returns the requests of class c being served.
func (g *Gate) InFlight(c Class) int64 { return g.inflight[c].Load() }

// Limit returns class c's bound.
func (g *Gate) Limit(c Class) int64 { return g.limit[c] }
