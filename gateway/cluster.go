package gateway

import (
	"context"

	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/bbbapi"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/raftnode"
)

// Cluster is what a peer's HTTP face needs of the replicated core, put
// together from what each part needs: the admin API (admin.Cluster), the
// control loops (control.Cluster), the BBB API (bbbapi.Cluster), and what
// the server uses itself. *raftnode.Node implements it; tests use a single
// in-memory FSM instead of a cluster (MemCluster).
type Cluster interface {
	admin.Cluster   // FSM, Apply, ConsistentRead, Join, Remove, Peers, Status, Snapshot
	control.Cluster // FSM, LeaderLoops, ApplyAsLeader
	bbbapi.Cluster  // FSM, Apply, Commit, ConsistentRead, IsLeader, LeaderHTTP

	Ready() (bool, string)
	// ServeInternal answers a peer-to-peer call (/api/v1/internal/*).
	ServeInternal(ctx context.Context, op string, body []byte) (int, []byte)
}

var _ Cluster = (*raftnode.Node)(nil)
