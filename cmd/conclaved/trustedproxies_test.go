package main

import (
	"strings"
	"testing"
)

// A bad CONCLAVE_TRUSTED_PROXIES stops the peer at start, naming the entry.
func TestBadTrustedProxiesRefusedAtStart(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.org", "10.0.0.1,,nope"} {
		t.Setenv("CONCLAVE_TRUSTED_PROXIES", bad)
		err := run(options{id: "p1", dataDir: t.TempDir(), listenHTTP: "127.0.0.1:0", raftAddr: "127.0.0.1:0", gossipAddr: "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "CONCLAVE_TRUSTED_PROXIES") || !strings.Contains(err.Error(), "is not a CIDR") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
