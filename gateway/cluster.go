package gateway

import (
	"context"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/raftnode"
)

// Cluster is what a peer's HTTP face needs of the replicated core, put
// together from what each part needs: the admin API (admin.Cluster), the
// control loops (control.Cluster), and what the BBB API and the server
// use themselves. *raftnode.Node implements it; tests use a single
// in-memory FSM instead of a cluster (MemCluster).
type Cluster interface {
	admin.Cluster   // FSM, Apply, ConsistentRead, Join, Remove, Peers, Status, Snapshot
	control.Cluster // FSM, LeaderLoops, ApplyAsLeader

	// Commit is Apply without waiting for the local replica.
	Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// LeaderHTTP is the leader's HTTP address ("" when this peer leads or
	// none is known), for requests a lagging replica hands over
	// (ConsistentRead answers raftnode.ErrBehind when the leader answered
	// but the replica could not catch up quickly).
	LeaderHTTP() string
	Ready() (bool, string)
	IsLeader() bool
	// ServeInternal answers a peer-to-peer call (/api/v1/internal/*).
	ServeInternal(ctx context.Context, op string, body []byte) (int, []byte)
}

var _ Cluster = (*raftnode.Node)(nil)
