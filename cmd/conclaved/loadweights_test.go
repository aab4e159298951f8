package main

import (
	"strings"
	"testing"
)

// Bad load weights stop conclaved before anything starts, from the flag
// and from CONCLAVE_LOAD_WEIGHTS.
func TestBadLoadWeightsRefused(t *testing.T) {
	cmd := newCommand()
	cmd.SetArgs([]string{"--data-dir", t.TempDir(), "--load-weights", "video=lots"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--load-weights") {
		t.Fatalf("flag: %v", err)
	}
	t.Setenv("CONCLAVE_LOAD_WEIGHTS", "cpu=1")
	cmd = newCommand()
	cmd.SetArgs([]string{"--data-dir", t.TempDir()})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "cpu=1") {
		t.Fatalf("env: %v", err)
	}
}
