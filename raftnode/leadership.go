package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
)

// Leader-only work is tied to a leadership term, as Nomad's
// monitorLeadership / establishLeadership / revokeLeadership do it:
//
//   - LeaderLoops registers a loop. Each time this node wins leadership and
//     has applied everything earlier terms committed (takeOver's barrier),
//     the loop starts with that term and a context that is cancelled the
//     moment leadership is lost (observed step-down, a later term, or
//     Shutdown).
//   - ApplyAsLeader is the loops' write path: it never forwards to another
//     peer, and refuses once this node no longer leads in the loop's term.
//     A leader deposed in the middle of a round therefore drops what it
//     computed instead of handing stale reports to its successor.

// ErrNotLeaderOfTerm is ApplyAsLeader's answer when this node does not (or
// no longer) lead in the given term. It is final: the caller's term is over.
var ErrNotLeaderOfTerm = errors.New("not the leader of this term")

// termWatchInterval is how often a running term checks raft's own state, on
// top of the leader observations (which raft drops when its channel is full).
const termWatchInterval = 50 * time.Millisecond

// leaderTerm is one won leadership term and the loops running in it.
type leaderTerm struct {
	term   uint64
	ctx    context.Context
	cancel context.CancelFunc
}

// leaderLoop is one loop registered with LeaderLoops.
type leaderLoop struct {
	parent context.Context
	fn     func(ctx context.Context, term uint64)
}

// leadership holds the registered loops and the current term (nil when
// this node does not lead).
type leadership struct {
	mu    sync.Mutex
	gen   uint64 // bumped on every leader observation: a takeOver of an older one gives up
	loops []leaderLoop
	cur   *leaderTerm
}

// LeaderLoops runs fn in every leadership term this node wins, from the
// end of its take-over barrier until leadership is lost, with ctx cancelled
// then (or when parent ends). fn should return when ctx ends. When the node
// leads already, fn starts at once for the current term. The registration
// lasts until parent ends.
func (n *Node) LeaderLoops(parent context.Context, fn func(ctx context.Context, term uint64)) {
	l := &n.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	loop := leaderLoop{parent: parent, fn: fn}
	l.loops = append(l.loops, loop)
	if l.cur != nil {
		startLoop(l.cur, loop)
	}
}

// startLoop runs one loop for term t: its context ends with the term or
// with the loop's parent.
func startLoop(t *leaderTerm, loop leaderLoop) {
	if loop.parent.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	stop := context.AfterFunc(loop.parent, cancel)
	go func() {
		defer cancel()
		defer stop()
		loop.fn(ctx, t.term)
	}()
}

// observed records a leader observation: whatever takeOver is under way
// for an older one must not start a term. It returns the new generation.
func (n *Node) observed(leading bool) uint64 {
	l := &n.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	if !leading {
		n.revokeLocked("leader changed")
	}
	return l.gen
}

// establish starts a term once takeOver's barrier passed, unless a later
// observation (gen) or a step-down came in between.
func (n *Node) establish(gen uint64) {
	l := &n.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen != gen || n.raft.State() != raft.Leader {
		return
	}
	select {
	case <-n.stop:
		return
	default:
	}
	term := n.raft.CurrentTerm()
	if l.cur != nil {
		if l.cur.term == term {
			return
		}
		n.revokeLocked("new term")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{term: term, ctx: ctx, cancel: cancel}
	l.cur = t
	live := l.loops[:0]
	for _, loop := range l.loops {
		if loop.parent.Err() == nil {
			live = append(live, loop)
			startLoop(t, loop)
		}
	}
	l.loops = live
	n.log.Info("leader loops started", "term", term, "loops", len(live))
	go n.watchTerm(t)
}

// revokeLocked ends the current term's loops (l.mu held).
func (n *Node) revokeLocked(why string) {
	l := &n.lead
	if l.cur == nil {
		return
	}
	n.log.Info("leader loops stopped", "term", l.cur.term, "why", why)
	l.cur.cancel()
	l.cur = nil
}

// revokeTerm ends term t if it is still the current one.
func (n *Node) revokeTerm(t *leaderTerm, why string) {
	l := &n.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == t {
		n.revokeLocked(why)
	}
}

// watchTerm ends t as soon as raft no longer leads in it, should the
// observation that says so be late or lost.
func (n *Node) watchTerm(t *leaderTerm) {
	tk := time.NewTicker(termWatchInterval)
	defer tk.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-n.stop:
			n.revokeTerm(t, "shutting down")
			return
		case <-tk.C:
			if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != t.term {
				n.revokeTerm(t, "leadership lost")
				return
			}
		}
	}
}

// leadsTerm reports whether this node leads in term, with that term's
// loops still running.
func (n *Node) leadsTerm(term uint64) bool {
	l := &n.lead
	l.mu.Lock()
	cur := l.cur
	l.mu.Unlock()
	return cur != nil && cur.term == term && cur.ctx.Err() == nil &&
		n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term
}

// ApplyAsLeader commits c on this node as the leader of term, for the
// leader-only loops. It never forwards: when this node does not lead in
// term (or loses leadership while the entry is appended) it returns
// ErrNotLeaderOfTerm and nothing else is tried. The answer comes once the
// local FSM has applied the entry.
func (n *Node) ApplyAsLeader(ctx context.Context, term uint64, c fsm.Command) (*fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !n.leadsTerm(term) {
		return nil, fmt.Errorf("%w %d", ErrNotLeaderOfTerm, term)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultOpTimeout)
		defer cancel()
	}
	res, _, err := n.applyLocal(ctx, fsm.Encode(c))
	if errors.Is(err, errNotLeader) {
		return nil, fmt.Errorf("%w %d: %v", ErrNotLeaderOfTerm, term, err)
	}
	return res, err
}
