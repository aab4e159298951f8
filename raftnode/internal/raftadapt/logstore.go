package raftadapt

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// CountingLogStore counts the writes reaching the log store (each one a
// bolt transaction, one fsync) and the entries they carry. Their ratio
// shows group commit at work: raft hands concurrent Applies to the store
// together, and under load a write carries many entries.
type CountingLogStore struct {
	raft.LogStore
	writes, entries atomic.Uint64
}

func (c *CountingLogStore) StoreLog(l *raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(1)
	return c.LogStore.StoreLog(l)
}

func (c *CountingLogStore) StoreLogs(logs []*raft.Log) error {
	c.writes.Add(1)
	c.entries.Add(uint64(len(logs)))
	return c.LogStore.StoreLogs(logs)
}

// Counts returns how many writes (fsyncs) the store has taken, and how
// many entries they held.
func (c *CountingLogStore) Counts() (writes, entries uint64) {
	return c.writes.Load(), c.entries.Load()
}
