package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/shipping/shippingtest"
)

func publishRecording(t *testing.T, root, format, id string, mtime time.Time) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"metadata.xml":       []byte("<recording><id>" + id + "</id></recording>"),
		"video/webcams.webm": []byte(strings.Repeat("webm", 50000)),
		"shapes.svg":         []byte("<svg/>"),
	}
	dir := filepath.Join(root, format, id)
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(full, mtime, mtime)
	}
	os.Chtimes(filepath.Join(dir, "video"), mtime, mtime)
	os.Chtimes(dir, mtime, mtime)
	return files
}

// TestAgentShipsRecordings: the agent finds a settled recording format in
// its published directory and ships it, with its token and its BBB API URL
// as the backend, to the peer it learned from gossip; a format still being
// written (newer than the settle time) waits.
func TestAgentShipsRecordings(t *testing.T) {
	fb := newAdminStubBBB(t)
	srv := shippingtest.New()
	t.Cleanup(srv.Close)
	srv.Token = "tok.en.jwt"
	p := startPeer(t, "peer-1", strings.TrimPrefix(srv.URL, "http://"), keyA)

	root := t.TempDir()
	old := time.Now().Add(-time.Hour)
	files := publishRecording(t, root, "presentation", "rec-1", old)
	publishRecording(t, root, "video", "rec-2", time.Now()) // not settled

	logger, logs := testLogger()
	a := startAgent(t, Config{
		APIURL: fb.apiURL(), Logger: logger, APIToken: "tok.en.jwt",
		RecordingsDir: root, TransferRate: 10 << 20, TransferChunk: 64 << 10, RecordingsScan: 50 * time.Millisecond, RecordingsSettle: 30 * time.Minute,
		Gossip: discovery.Config{Join: []string{p.Addr()}, SecretKey: keyA},
	})
	eventually(t, 10*time.Second, "recording shipped", func() bool { return a.Shipped().Done == 1 })
	got := srv.Central("presentation", "rec-1")
	if len(got) != len(files) {
		t.Fatalf("central copy has %d files, want %d", len(got), len(files))
	}
	for p, b := range files {
		if string(got[p]) != string(b) {
			t.Fatalf("%s differs", p)
		}
	}
	st := srv.Stats()
	if st.BadAuth != 0 || len(st.Backends) == 0 || st.Backends[0] != fb.apiURL() || st.Chunks != 4+1+1 {
		t.Fatalf("stats %+v", st)
	}
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	if s := a.Shipped(); s.Sent != total || s.Offered != total || s.Failed != 0 {
		t.Fatalf("shipped %+v, want %d bytes", s, total)
	}
	// Later scans do not offer it again, and the unsettled one waits.
	offers := st.Offers
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		if st := srv.Stats(); st.Offers != offers || srv.Central("video", "rec-2") != nil {
			return fmt.Errorf("offers %d → %d; unsettled central: %v", offers, st.Offers, srv.Central("video", "rec-2") != nil)
		}
		return nil
	})
	out := logs.String()
	if strings.Contains(out, "tok.en.jwt") || strings.Contains(out, bbbSecret) {
		t.Fatal("token or secret in the logs")
	}
	if !strings.Contains(out, "recording shipped to central storage") {
		t.Fatalf("no log of the shipped recording:\n%s", out)
	}
}

// TestAgentRecordingsWithoutToken: without a token the agent still ships
// (a cluster without a JWT secret takes it from loopback, as it takes the
// registration), and the log says what that means.
func TestAgentRecordingsWithoutToken(t *testing.T) {
	fb := newAdminStubBBB(t)
	logger, logs := testLogger()
	startAgent(t, Config{APIURL: fb.apiURL(), Logger: logger, RecordingsDir: t.TempDir()})
	if !strings.Contains(logs.String(), "shipping recordings without CONCLAVE_API_TOKEN") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
