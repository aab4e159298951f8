package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode"
)

// MemCluster is a one-peer, in-memory Cluster: the FSM without Raft. Tests
// and benchmarks use it to exercise the gateway alone. Commands still go
// through the codec, as they would through the log.
type MemCluster struct {
	f   *fsm.FSM
	mu  sync.Mutex
	idx uint64
	// readErr is what ConsistentRead answers and leaderAddr what LeaderHTTP
	// does (SetFollower).
	readErr    error
	leaderAddr string
}

// SetFollower makes this "cluster" play a follower of the leader at
// leaderAddr ("" for none known) whose ConsistentRead answers readErr.
func (m *MemCluster) SetFollower(leaderAddr string, readErr error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaderAddr, m.readErr = leaderAddr, readErr
}

// NewMemCluster returns an empty in-memory cluster.
func NewMemCluster() *MemCluster { return &MemCluster{f: fsm.New()} }

func (m *MemCluster) FSM() *fsm.FSM { return m.f }

// Apply passes the FSM's gate first (fsm.FSM.Check), as a Raft leader
// does before the log: a command it refuses is answered in the result and
// never applied.
func (m *MemCluster) Apply(_ context.Context, c fsm.Command) (*fsm.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data := fsm.Encode(c)
	if _, err := m.f.Check(data); err != nil {
		var fe *fsm.Error
		if !errors.As(err, &fe) {
			fe = &fsm.Error{Code: fsm.CodeInvalid, Msg: err.Error()}
		}
		return &fsm.Result{Error: fe}, nil
	}
	m.idx++
	return m.f.Apply(m.idx, data), nil
}

func (m *MemCluster) Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	return m.Apply(ctx, c)
}

// MustApply applies c and panics on any error: for test setup only.
func (m *MemCluster) MustApply(c fsm.Command) *fsm.Result {
	r, _ := m.Apply(context.Background(), c)
	if r.Error != nil {
		panic(r.Error)
	}
	return r
}

// MustAddReadyBackend adds a backend, enabled and reported ready: one
// that takes meetings at once.
func (m *MemCluster) MustAddReadyBackend(id, url, secret string) {
	m.MustApply(&fsm.AddBackend{ID: id, URL: url, Secret: secret})
	m.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
	m.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: id, NodeState: fsm.NodeReady}}})
}

func (m *MemCluster) ConsistentRead(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readErr
}

func (m *MemCluster) LeaderHTTP() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaderAddr
}
func (m *MemCluster) Join(context.Context, raftnode.JoinRequest) error {
	return errors.New("in-memory cluster has no peers")
}
func (m *MemCluster) Remove(context.Context, string) error { return raftnode.ErrNotFound }
func (m *MemCluster) Peers(context.Context) ([]raftnode.PeerInfo, error) {
	return []raftnode.PeerInfo{{ID: "mem", Voter: true, Leader: true, State: "Leader", Reachable: true}}, nil
}
func (m *MemCluster) Status() raftnode.Status {
	return raftnode.Status{ID: "mem", State: "Leader", LeaderID: "mem", AppliedIndex: m.f.AppliedIndex(), Ready: true}
}
func (m *MemCluster) Ready() (bool, string) { return true, "" }
func (m *MemCluster) IsLeader() bool        { return true }

// LeaderLoops starts fn at once: the in-memory cluster leads in term 1
// until ctx ends.
func (m *MemCluster) LeaderLoops(ctx context.Context, fn func(context.Context, uint64)) {
	go fn(ctx, 1)
}

// ApplyAsLeader is Apply: the in-memory cluster never loses leadership.
func (m *MemCluster) ApplyAsLeader(ctx context.Context, _ uint64, c fsm.Command) (*fsm.Result, error) {
	return m.Apply(ctx, c)
}
func (m *MemCluster) Snapshot() error { return nil }
func (m *MemCluster) ServeInternal(context.Context, string, []byte) (int, []byte) {
	return http.StatusNotFound, []byte(`{"error":"no peers"}`)
}
