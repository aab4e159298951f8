package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode/peercall"
)

// Apply commits a command and returns the FSM's answer. On a follower the
// command is forwarded to the leader. Leadership changes while it is under
// way are retried until ctx ends: commands are idempotent, so a retry after
// an unknown outcome cannot apply twice in effect.
func (n *Node) Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	return n.applyRaw(ctx, fsm.Encode(c), true)
}

// Commit is Apply without read-your-writes on a follower: it returns as
// soon as the leader has applied the command, without waiting for the local
// replica (which learns the commit a few milliseconds later). For callers
// that need only the FSM's answer, such as a meeting claim.
func (n *Node) Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	return n.applyRaw(ctx, fsm.Encode(c), false)
}

func (n *Node) applyRaw(ctx context.Context, data []byte, waitLocal bool) (*fsm.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultOpTimeout)
		defer cancel()
	}
	return retry(ctx, n, func() (*fsm.Result, error) {
		if n.raft.State() == raft.Leader {
			res, _, err := n.applyLocal(ctx, data)
			return res, err
		}
		var ar peercall.ApplyResponse
		if err := n.forward(ctx, "apply", data, &ar); err != nil {
			return nil, err
		}
		// Read-your-writes on this peer: answer only once the local
		// replica holds the write, so the caller's next read sees it.
		if waitLocal {
			if err := n.WaitApplied(ctx, ar.Index); err != nil {
				return nil, err
			}
		}
		return &ar.Result, nil
	})
}

// applyLocal appends to the log on the leader. Concurrent callers are
// group-committed by raft: entries waiting in its apply channel go to the
// log store in one batch, one fsync for all.
//
// Every command passes the FSM's gate first (fsm.FSM.Check), its own and
// forwarded bytes alike: one that does not decode, has a type this release
// does not know, or fails a check that does not depend on the state never
// enters the log; the caller gets the error in the result (index 0).
func (n *Node) applyLocal(ctx context.Context, data []byte) (*fsm.Result, uint64, error) {
	if _, err := n.fsm.Check(data); err != nil {
		var fe *fsm.Error
		if !errors.As(err, &fe) {
			fe = &fsm.Error{Code: fsm.CodeInvalid, Msg: err.Error()}
		}
		return &fsm.Result{Error: fe}, 0, nil
	}
	timeout := time.Until(deadline(ctx))
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, 0, errNotLeader
		}
		return nil, 0, err
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, 0, fmt.Errorf("raftnode: unexpected FSM response %T", f.Response())
	}
	return res, f.Index(), nil
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(defaultOpTimeout)
}

// retry runs op until it succeeds, fails for a reason other than
// leadership, or ctx ends. The wait between tries stays short (at most
// retryMaxWait): a new leader is elected 0.5–1 s after the old one dies,
// and a longer wait (500 ms, before) put writes half a second behind it.
func retry[T any](ctx context.Context, n *Node, op func() (T, error)) (T, error) {
	backoff := 20 * time.Millisecond
	for {
		v, err := op()
		if err == nil || !retryable(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-n.stop:
			var zero T
			return zero, ErrShuttingDown
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, retryMaxWait)
	}
}

// retryMaxWait bounds the wait between two tries of a forwarded call.
const retryMaxWait = 100 * time.Millisecond

func retryable(err error) bool {
	var pe *peercall.Error
	if errors.As(err, &pe) {
		return pe.NotLeader
	}
	return errors.Is(err, errNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, errLeaderNotYet) || isNetErr(err)
}

// ConsistentRead returns once the local replica reflects every write
// acknowledged before the call (read-your-writes across peers). On the leader
// that is a leadership check; a follower asks the leader for its applied
// index (which the leader confirms under VerifyLeader) and waits to reach it.
func (n *Node) ConsistentRead(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultOpTimeout)
		defer cancel()
	}
	idx, err := retry(ctx, n, func() (uint64, error) {
		if n.raft.State() == raft.Leader {
			return n.readIndex()
		}
		return n.leaderReadIndex(ctx)
	})
	if err != nil {
		return err
	}
	// The leader answered; if this replica cannot reach its index soon,
	// say so rather than spend the caller's whole budget: after a partition
	// heals, raft may wait seconds (its replication backoff) before sending
	// this peer what it missed, and the caller can ask the leader instead.
	wctx, cancel := context.WithTimeout(ctx, BehindWait)
	defer cancel()
	if err := n.WaitApplied(wctx, idx); err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			return fmt.Errorf("%w: applied %d, the leader %d", ErrBehind, n.fsm.AppliedIndex(), idx)
		}
		return err
	}
	return nil
}

// ErrBehind is ConsistentRead's answer when the leader has applied writes
// this replica did not receive within BehindWait.
var ErrBehind = errors.New("this peer's replica is behind the leader's")

// BehindWait is how long ConsistentRead waits for the replica to reach the
// leader's applied index.
const BehindWait = time.Second

// LeaderHTTP is the leader's HTTP address for requests this peer cannot
// answer itself; "" when this peer leads or no leader is known.
func (n *Node) LeaderHTTP() string {
	id, addr := n.Leader()
	if id == n.cfg.ID {
		return ""
	}
	return addr
}

// leaderReadIndex asks the leader for its read index: a follower's half of
// ConsistentRead.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	var r peercall.ReadIndexResponse
	err := n.forward(ctx, "readindex", nil, &r)
	return r.Index, err
}

// readIndex is the leader's half of ConsistentRead.
func (n *Node) readIndex() (uint64, error) {
	if !n.leaderReady.Load() {
		return 0, errLeaderNotYet
	}
	idx := n.fsm.AppliedIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, errNotLeader
	}
	return idx, nil
}

// WaitApplied blocks until the local FSM has applied index idx.
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := n.rfsm.WaitCh()
		if n.fsm.AppliedIndex() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (at %d): %w", idx, n.fsm.AppliedIndex(), ctx.Err())
		case <-n.stop:
			return ErrShuttingDown
		}
	}
}
