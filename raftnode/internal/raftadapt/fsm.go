// Package raftadapt holds what raftnode hands hashicorp/raft in place of
// raft's own parts: the FSM (fsm.FSM, with a wait for an applied index and
// the halts on commands this release does not know), the logger (slog
// behind hclog), the log store (counting its writes) and, under mutual
// TLS, the transport's stream layer. Each implements one of raft's
// interfaces and nothing else; raftnode wires them together.
package raftadapt

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
)

// FSM adapts fsm.FSM to raft's FSM and BatchingFSM interfaces and lets
// readers wait for an index to be applied.
type FSM struct {
	f       *fsm.FSM
	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every apply
	// onHalt is told once when the FSM halts on a command type it does not
	// know; onSkip of every skipped one (raftnode's halt.go). Either may be
	// nil.
	onHalt func(error)
	onSkip func(t fsm.CmdType, index uint64)
}

// NewFSM adapts f; onHalt and onSkip (either may be nil) are told of halts
// and skipped commands, on raft's FSM goroutine.
func NewFSM(f *fsm.FSM, onHalt func(error), onSkip func(t fsm.CmdType, index uint64)) *FSM {
	return &FSM{f: f, changed: make(chan struct{}), onHalt: onHalt, onSkip: onSkip}
}

func (r *FSM) Apply(l *raft.Log) any {
	res := r.apply(l)
	r.notify()
	return res
}

// ApplyBatch applies the entries raft committed together.
func (r *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = r.apply(l)
	}
	r.notify()
	return out
}

func (r *FSM) apply(l *raft.Log) any {
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

func (r *FSM) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// WaitCh returns a channel closed at the next apply.
func (r *FSM) WaitCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Snapshot is refused once the FSM has halted: a snapshot would cover the
// entry it could not apply, and the upgraded peer would never replay it.
func (r *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if h := r.f.Halted(); h != nil {
		return nil, fmt.Errorf("no snapshot of a halted FSM: %w", h)
	}
	return &fsmSnapshot{s: r.f.Snapshot()}, nil
}

func (r *FSM) Restore(rc io.ReadCloser) error {
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
