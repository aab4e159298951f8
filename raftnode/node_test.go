package raftnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func singleNode(t *testing.T) *Node {
	t.Helper()
	n, err := Open(Config{ID: "p1", DataDir: t.TempDir(), RaftBind: freeAddr(t), HTTPAdvertise: "127.0.0.1:1",
		Bootstrap: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("single node did not become leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// Concurrent writes share log store writes (one fsync each): raft hands the
// entries waiting in its apply channel to the store together. Writes one
// after another pay one each.
func TestConcurrentAppliesAreGroupCommitted(t *testing.T) {
	n := singleNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	w0, e0 := n.LogWrites()
	for i := 0; i < 20; i++ {
		if _, err := n.Apply(ctx, &fsm.AddFrontend{Key: fmt.Sprintf("seq%d", i), Secret: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	w1, e1 := n.LogWrites()
	if w1-w0 < 20 || e1-e0 < 20 {
		t.Fatalf("sequential: %d writes for %d entries, want one each", w1-w0, e1-e0)
	}

	const concurrent = 512
	var wg sync.WaitGroup
	errs := make(chan error, concurrent)
	for i := 0; i < concurrent; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := n.Commit(ctx, &fsm.ClaimMeeting{InternalID: fmt.Sprintf("fe~m%d", i), Frontend: "fe", MeetingID: fmt.Sprintf("m%d", i), BackendID: "none", Now: 1}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	w2, e2 := n.LogWrites()
	writes, entries := w2-w1, e2-e1
	t.Logf("GROUP COMMIT: %d concurrent writes took %d log store writes (%.1f entries each)", entries, writes, float64(entries)/float64(writes))
	if entries < concurrent {
		t.Fatalf("%d entries stored, want at least %d", entries, concurrent)
	}
	if writes*4 > entries {
		t.Fatalf("%d log store writes for %d concurrent entries: not batched", writes, entries)
	}
}
