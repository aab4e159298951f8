package raftnode

import (
	"fmt"
	"sync"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// A peer whose FSM meets a log entry of a command type its release does not
// know, without the skippable flag, must not go on: it would serve a state
// that differs from its neighbours'. The FSM halts (applies nothing more);
// the node logs the error, tells Config.OnHalt (conclaved exits non-zero
// with the message), and shuts down. Raft is refused snapshots from then
// on, so the entry is still in the log when the peer, upgraded, replays it.
// A snapshot whose format is newer than this release reads halts it too.
//
// A skippable type it does not know is skipped, counted per type
// (SkippedCommands; conclave_fsm_commands_skipped_total) and logged, at
// most once a minute per type.

// halt runs on raft's FSM goroutine; the first call counts. err is an
// *fsm.UnknownCommandError, or a snapshot from a newer release
// (fsm.ErrNewerSnapshot) that the leader sent.
func (n *Node) halt(err error) {
	n.haltOnce.Do(func() {
		n.haltMu.Lock()
		n.haltErr = err
		n.haltMu.Unlock()
		n.log.Error("stopping: this release cannot apply the replicated log", "err", err)
		close(n.haltCh)
		go func() {
			if n.cfg.OnHalt != nil {
				n.cfg.OnHalt(err)
			}
			select { // a restore inside raft.NewRaft: Open fails with it
			case <-n.opened:
			case <-n.stop:
				return
			}
			_ = n.Shutdown() // not on the FSM goroutine: raft's shutdown waits for it
		}()
	})
}

// Halted is closed when the FSM met a command type this release does not
// know and may not skip (or a snapshot of a newer release); HaltError says
// which and where.
func (n *Node) Halted() <-chan struct{} { return n.haltCh }

// HaltError is why the node halted (nil while it has not).
func (n *Node) HaltError() error {
	n.haltMu.Lock()
	defer n.haltMu.Unlock()
	return n.haltErr
}

// skipCounter counts skipped commands by type and rate-limits their logs.
type skipCounter struct {
	mu     sync.Mutex
	counts map[fsm.CmdType]uint64
	logged map[fsm.CmdType]time.Time
}

// skipLogEvery is the least time between two logs of skips of one type.
const skipLogEvery = time.Minute

func (n *Node) skip(t fsm.CmdType, index uint64) {
	s := &n.skips
	s.mu.Lock()
	if s.counts == nil {
		s.counts, s.logged = map[fsm.CmdType]uint64{}, map[fsm.CmdType]time.Time{}
	}
	s.counts[t]++
	count := s.counts[t]
	now := time.Now()
	log := now.Sub(s.logged[t]) >= skipLogEvery
	if log {
		s.logged[t] = now
	}
	s.mu.Unlock()
	if log {
		n.log.Warn("skipped a command of a type this release does not know (skippable: a newer peer's additive command)",
			"type", int(t), "index", index, "skipped_so_far", count)
	}
}

// SkippedCommands counts the log entries skipped since start, by command
// type (its number in decimal): commands of a newer release, flagged
// skippable, that this release does not know.
func (n *Node) SkippedCommands() map[string]uint64 {
	n.skips.mu.Lock()
	defer n.skips.mu.Unlock()
	out := make(map[string]uint64, len(n.skips.counts))
	for t, c := range n.skips.counts {
		out[fmt.Sprint(int(t))] = c
	}
	return out
}
