package main

import (
	"strings"
	"testing"
)

// A recordings store the peer cannot use stops it at start, saying which
// setting and why (never with the credentials in the message).
func TestBadRecordingsStoreRefusedAtStart(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key")
	for _, bad := range []string{"ftp://host/dir", "file:///no/such/dir/at/all", "s3://user:pw@bucket/prefix", "file://" + t.TempDir() + "x"} {
		err := run(options{id: "p1", dataDir: t.TempDir(), listenHTTP: "127.0.0.1:0", raftAddr: "127.0.0.1:0", gossipAddr: "127.0.0.1:0",
			recordingsStore: bad})
		if err == nil || !strings.Contains(err.Error(), "--recordings-store") || strings.Contains(err.Error(), "very-secret-key") ||
			strings.Contains(err.Error(), "pw@") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
