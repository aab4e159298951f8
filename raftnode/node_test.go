package raftnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
)

func singleNode(t *testing.T) *Node {
	t.Helper()
	n, err := Open(Config{ID: "p1", DataDir: t.TempDir(), RaftBind: harness.FreeAddr(t), HTTPAdvertise: "127.0.0.1:1",
		Bootstrap: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	testwait.EventuallyTrue(t, 10*time.Second, "leader (single node)", n.IsLeader)
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

// A follower whose own commit index is caught up is still not ready while
// the leader has applied far more: after a restart, a follower's commit
// index covers only the part of the backlog it has received so far.
func TestReadinessComparesWithTheLeader(t *testing.T) {
	now := time.Now()
	leaderAt := func(idx uint64, err error) func() (uint64, error) {
		return func() (uint64, error) { return idx, err }
	}
	follower := readiness{leaderKnown: true, state: raft.Follower, lastContact: now, commit: 500, applied: 500, stateApplied: 480}
	for _, tc := range []struct {
		name  string
		r     readiness
		ready bool
	}{
		{"caught up", with(follower, leaderAt(600, nil)), true},
		{"own commit index caught up, the leader's far ahead", with(follower, leaderAt(480+MaxApplyLag+1, nil)), false},
		{"leader unreachable", with(follower, leaderAt(0, ErrNoLeader)), false},
		{"no contact for long", func() readiness {
			r := with(follower, leaderAt(480, nil))
			r.lastContact = now.Add(-time.Minute)
			return r
		}(), false},
		{"no leader", readiness{state: raft.Follower}, false},
		{"leader taking over", readiness{leaderKnown: true, state: raft.Leader}, false},
		{"leader", readiness{leaderKnown: true, state: raft.Leader, leaderReady: true, commit: 10, applied: 10}, true},
		{"applying a long backlog", readiness{leaderKnown: true, state: raft.Leader, leaderReady: true, commit: 5000, applied: 10}, false},
		{"candidate", readiness{leaderKnown: true, state: raft.Candidate}, false},
	} {
		if ok, why := tc.r.check(now); ok != tc.ready {
			t.Errorf("%s: ready=%v (%s), want %v", tc.name, ok, why, tc.ready)
		}
	}
}

func with(r readiness, leaderApplied func() (uint64, error)) readiness {
	r.leaderApplied = leaderApplied
	return r
}

// A single leader is ready once it has taken over. (The follower path asks
// the leader over the peers' HTTP port; TestRestartRestoresFromSnapshot in
// test/cluster waits for a restarted follower's /readyz.)
func TestSingleNodeReady(t *testing.T) {
	n := singleNode(t)
	testwait.Eventually(t, 10*time.Second, func() error {
		if ok, why := n.Ready(); !ok {
			return fmt.Errorf("single leader not ready: %s", why)
		}
		return nil
	})
}
