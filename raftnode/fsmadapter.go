package raftnode

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
)

// raftFSM adapts fsm.FSM to raft's FSM and BatchingFSM interfaces and lets
// readers wait for an index to be applied.
type raftFSM struct {
	f       *fsm.FSM
	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every apply
}

func newRaftFSM(f *fsm.FSM) *raftFSM {
	return &raftFSM{f: f, changed: make(chan struct{})}
}

func (r *raftFSM) Apply(l *raft.Log) any {
	res := r.apply(l)
	r.notify()
	return res
}

// ApplyBatch applies the entries raft committed together.
func (r *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = r.apply(l)
	}
	r.notify()
	return out
}

func (r *raftFSM) apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return r.f.Apply(l.Index, l.Data)
}

func (r *raftFSM) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// waitCh returns a channel closed at the next apply.
func (r *raftFSM) waitCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: r.f.Snapshot()}, nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := r.f.Restore(rc)
	r.notify()
	return err
}

type fsmSnapshot struct{ s *fsm.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
