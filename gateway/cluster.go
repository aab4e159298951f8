package gateway

import (
	"context"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode"
)

// Cluster is what the gateway needs of the replicated core. *raftnode.Node
// implements it; tests use a single in-memory FSM instead of a cluster.
type Cluster interface {
	// FSM is the local replica: reads from it may be slightly stale.
	FSM() *fsm.FSM
	// Apply commits a command (forwarded to the leader when needed) and
	// returns once the local replica has applied it too.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// Commit is Apply without waiting for the local replica.
	Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// ConsistentRead waits until the local replica holds every write
	// acknowledged before the call; raftnode.ErrBehind when the leader
	// answered but the replica could not catch up quickly.
	ConsistentRead(ctx context.Context) error
	// LeaderHTTP is the leader's HTTP address ("" when this peer leads or
	// none is known), for requests a lagging replica hands over.
	LeaderHTTP() string
	Join(ctx context.Context, req raftnode.JoinRequest) error
	Remove(ctx context.Context, id string) error
	Peers(ctx context.Context) ([]raftnode.PeerInfo, error)
	Status() raftnode.Status
	Ready() (bool, string)
	IsLeader() bool
	// LeaderLoops runs fn in each leadership term this peer wins, with a
	// ctx cancelled when the term's leadership is lost (or ctx ends).
	LeaderLoops(ctx context.Context, fn func(ctx context.Context, term uint64))
	// ApplyAsLeader commits c as the leader of term: never forwarded,
	// refused (raftnode.ErrNotLeaderOfTerm) once that term's leadership is
	// lost. The leader loops' only write path.
	ApplyAsLeader(ctx context.Context, term uint64, c fsm.Command) (*fsm.Result, error)
	Snapshot() error
	ServeInternal(ctx context.Context, op string, body []byte) (int, []byte)
}

var _ Cluster = (*raftnode.Node)(nil)
