package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/test/harness"
)

// A peer whose log holds a command type its release does not know, without
// the skippable flag, exits with an error naming the type, the index and
// the fix, instead of serving a state that differs from its neighbours'.
func TestUnknownCommandInTheLogStopsThePeer(t *testing.T) {
	dir := t.TempDir()
	n, err := raftnode.Open(raftnode.Config{ID: "p1", DataDir: dir, RaftBind: harness.FreeAddr(t), HTTPAdvertise: "127.0.0.1:1",
		Bootstrap: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Apply(ctx, &fsm.AddFrontend{Key: "fe", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// A newer release's entry, as a newer leader would have logged it.
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := store.LastIndex()
	var prev raft.Log
	if err := store.GetLog(last, &prev); err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLog(&raft.Log{Index: last + 1, Term: prev.Term, Type: raft.LogCommand, Data: []byte{0x55, 1, 2}}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	cmd := newCommand()
	cmd.SetArgs([]string{"--id", "p1", "--data-dir", dir, "--listen-http", harness.FreeAddr(t),
		"--raft-addr", harness.FreeAddr(t), "--gossip-addr", harness.FreeAddr(t)})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("conclaved did not stop")
	}
	for _, want := range []string{"type 85 (0x55)", "log entry", "upgrade this peer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("conclaved returned %v, want it to say %q", err, want)
		}
	}
}
