package raftnode

import (
	"errors"
	"fmt"
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
	// onHalt is told once when the FSM halts on a command type it does not
	// know; onSkip of every skipped one (halt.go). Either may be nil.
	onHalt func(error)
	onSkip func(t fsm.CmdType, index uint64)
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
	res := r.f.Apply(l.Index, l.Data)
	if res.Skipped && r.onSkip != nil {
		r.onSkip(fsm.CmdType(l.Data[0]), l.Index)
	}
	if h := r.f.Halted(); h != nil && r.onHalt != nil {
		r.onHalt(h) // the first call counts: later entries come here too
	}
	return res
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

// Snapshot is refused once the FSM has halted: a snapshot would cover the
// entry it could not apply, and the upgraded peer would never replay it.
func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	if h := r.f.Halted(); h != nil {
		return nil, fmt.Errorf("no snapshot of a halted FSM: %w", h)
	}
	return &fsmSnapshot{s: r.f.Snapshot()}, nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := r.f.Restore(rc)
	r.notify()
	if errors.Is(err, fsm.ErrNewerSnapshot) && r.onHalt != nil {
		r.onHalt(err) // raft would ask the leader for it again and again
	}
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
