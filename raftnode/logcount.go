package raftnode

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// countingLogStore counts the writes reaching the log store (each one a
// bolt transaction, one fsync) and the entries they carry. Their ratio
// shows group commit at work: raft hands concurrent Applies to the store
// together, and under load a write carries many entries.
type countingLogStore struct {
	raft.LogStore
	writes, entries atomic.Uint64
}

func (c *countingLogStore) StoreLog(l *raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(1)
	return c.LogStore.StoreLog(l)
}

func (c *countingLogStore) StoreLogs(logs []*raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(uint64(len(logs)))
	return c.LogStore.StoreLogs(logs)
}

// LogWrites returns how many writes (fsyncs) the log store has taken since
// start, and how many entries they held.
func (n *Node) LogWrites() (writes, entries uint64) {
	return n.logCount.writes.Load(), n.logCount.entries.Load()
}
