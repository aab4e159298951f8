package shipping

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/shipping/shippingtest"
)

const chunk = adminapi.TransferMinChunk // 64 KiB: small test files still have several chunks

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// publish writes a recording format as BBB does; it returns its files.
func publish(t *testing.T, root, format, id string) map[string][]byte {
	files := map[string][]byte{
		"metadata.xml":           []byte("<recording><id>" + id + "</id></recording>"),
		"video/webcams.webm":     random(3*chunk + 1234),
		"presentation/slide.png": random(chunk),
		"empty.txt":              {},
	}
	for p, b := range files {
		write(t, filepath.Join(root, format, id, filepath.FromSlash(p)), b)
	}
	return files
}

func newShipper(srv *shippingtest.Server) *Shipper {
	return &Shipper{
		Peers: func() []string { return []string{srv.URL} }, Token: "tok", Backend: "https://bbb1.example.org/bigbluebutton/api/",
		ChunkSize: chunk, Progress: &Progress{},
	}
}

func newServer(t *testing.T) *shippingtest.Server {
	srv := shippingtest.New()
	srv.Token = "tok"
	t.Cleanup(srv.Close)
	return srv
}

func unitOf(t *testing.T, root, format, id string) Unit {
	t.Helper()
	us, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Format == format && u.RecordID == id {
			return u
		}
	}
	t.Fatalf("no unit %s/%s in %v", format, id, us)
	return Unit{}
}

func size(files map[string][]byte) (n int64) {
	for _, b := range files {
		n += int64(len(b))
	}
	return n
}

func TestShipFull(t *testing.T) {
	root := t.TempDir()
	files := publish(t, root, "presentation", "rec-1")
	srv := newServer(t)
	sh := newShipper(srv)
	st, err := sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-1"))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "central" {
		t.Fatalf("state %q", st.State)
	}
	if got := srv.Central("presentation", "rec-1"); !reflect.DeepEqual(got, files) {
		t.Fatalf("central files differ: %d files, want %d", len(got), len(files))
	}
	total := size(files)
	want := Snapshot{Offered: total, Sent: total, Resumed: 0, Done: 1}
	if got := sh.Progress.Snapshot(); got != want {
		t.Fatalf("progress %+v, want %+v", got, want)
	}
	stats := srv.Stats()
	if stats.BadAuth != 0 || stats.Offers != 1 || stats.Completes != 1 || stats.Chunks != 4+1+1 {
		t.Fatalf("stats %+v", stats)
	}
	if stats.Backends[0] != sh.Backend {
		t.Fatalf("backend %q", stats.Backends[0])
	}

	// Shipping it again: already central, nothing is sent.
	st, err = sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-1"))
	if err != nil || st.State != "central" {
		t.Fatal(st, err)
	}
	if got := sh.Progress.Snapshot(); got.Sent != total || got.Resumed != total || got.Done != 2 {
		t.Fatalf("progress after a second ship %+v", got)
	}
}

func TestShipResumes(t *testing.T) {
	root := t.TempDir()
	files := publish(t, root, "video", "rec-2")
	srv := newServer(t)
	accepted := 0
	srv.BeforeChunk = func(file, c int) int {
		if accepted >= 3 {
			return http.StatusServiceUnavailable
		}
		accepted++
		return 0
	}
	sh := newShipper(srv)
	u := unitOf(t, root, "video", "rec-2")
	_, err := sh.Ship(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "chunk") || !strings.Contains(err.Error(), srv.URL) || !Retryable(err) {
		t.Fatalf("first ship: %v (want a retryable chunk error naming the peer)", err)
	}
	if strings.Contains(err.Error(), "tok") {
		t.Fatal("the token is in the error")
	}
	first := sh.Progress.Snapshot()
	if first.Failed != 1 || first.Done != 0 || srv.Staged("video", "rec-2") != 3 {
		t.Fatalf("after the interruption: %+v, %d staged", first, srv.Staged("video", "rec-2"))
	}

	srv.BeforeChunk = nil
	sh2 := newShipper(srv) // a restarted process
	before := srv.Stats()
	if _, err := sh2.Ship(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	after := srv.Stats()
	total := size(files)
	got := sh2.Progress.Snapshot()
	if got.Sent+got.Resumed != total || got.Resumed != first.Sent || got.Resumed == 0 {
		t.Fatalf("resumed ship: %+v (first sent %d, total %d)", got, first.Sent, total)
	}
	if after.ChunkBytes-before.ChunkBytes != got.Sent || after.Chunks-before.Chunks != 6-3 {
		t.Fatalf("server got %d more chunks (%d bytes), want 3 (%d)", after.Chunks-before.Chunks, after.ChunkBytes-before.ChunkBytes, got.Sent)
	}
	if !reflect.DeepEqual(srv.Central("video", "rec-2"), files) {
		t.Fatal("central files differ")
	}
}

func TestShipResendsAfter422(t *testing.T) {
	root := t.TempDir()
	files := publish(t, root, "presentation", "rec-3")
	srv := newServer(t)
	srv.CorruptOnComplete = 1
	sh := newShipper(srv)
	st, err := sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-3"))
	if err != nil || st.State != "central" {
		t.Fatal(st, err)
	}
	stats := srv.Stats()
	if stats.Offers != 2 || stats.Completes != 2 {
		t.Fatalf("stats %+v: want 2 offers and 2 completes", stats)
	}
	if !reflect.DeepEqual(srv.Central("presentation", "rec-3"), files) {
		t.Fatal("central files differ")
	}
	if got := sh.Progress.Snapshot(); got.Sent <= size(files) || got.Done != 1 {
		t.Fatalf("progress %+v: want the damaged file sent twice", got)
	}

	// A file that never verifies: MaxRounds rounds, then the 422.
	srv.CorruptOnComplete = 100
	publish(t, root, "presentation", "rec-4")
	_, err = sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-4"))
	if ErrorStatus(err) != http.StatusUnprocessableEntity || !strings.HasPrefix(err.Error(), "complete at "+srv.URL) {
		t.Fatalf("err %v", err)
	}
	if n := srv.Stats().Completes - stats.Completes; n != MaxRounds {
		t.Fatalf("%d completes, want %d", n, MaxRounds)
	}
}

func TestShipUnavailableAndFailover(t *testing.T) {
	root := t.TempDir()
	publish(t, root, "presentation", "rec-5")
	u := unitOf(t, root, "presentation", "rec-5")
	srv := newServer(t)
	srv.Unavailable = true
	sh := newShipper(srv)
	_, err := sh.Ship(context.Background(), u)
	if !NoCentralStore(err) || !Retryable(err) || !strings.HasPrefix(err.Error(), "offer at "+srv.URL) {
		t.Fatalf("err %v", err)
	}

	// A dead peer first: the next one takes every step.
	srv.Unavailable = false
	dead := shippingtest.New()
	deadURL := dead.URL
	dead.Close()
	sh.Peers = func() []string { return []string{deadURL, srv.URL} }
	if _, err := sh.Ship(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	// Only dead peers: unreachable, and retryable.
	sh.Peers = func() []string { return []string{deadURL} }
	_, err = sh.Ship(context.Background(), u)
	if !Unreachable(err) || !Retryable(err) || !strings.Contains(err.Error(), deadURL) {
		t.Fatalf("err %v", err)
	}
}

func TestShipBadToken(t *testing.T) {
	root := t.TempDir()
	publish(t, root, "presentation", "rec-6")
	srv := newServer(t)
	sh := newShipper(srv)
	sh.Token = "wrong"
	_, err := sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-6"))
	if ErrorStatus(err) != 401 || Retryable(err) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("err %v", err)
	}
}

// TestRateLimit: with a fake clock, the waits the limiter asks for add up
// to what the rate allows (no wall-clock assertions).
func TestRateLimit(t *testing.T) {
	root := t.TempDir()
	files := publish(t, root, "presentation", "rec-7")
	srv := newServer(t)
	sh := newShipper(srv)
	const rate = 100 << 10 // 100 KiB/s
	sh.Rate = rate
	clock := time.Unix(1700000000, 0)
	var slept time.Duration
	sh.now = func() time.Time { return clock }
	sh.sleep = func(_ context.Context, d time.Duration) error {
		slept += d
		clock = clock.Add(d)
		return nil
	}
	if _, err := sh.Ship(context.Background(), unitOf(t, root, "presentation", "rec-7")); err != nil {
		t.Fatal(err)
	}
	total := size(files)
	burst := sh.lim.burst
	want := time.Duration((float64(total) - burst) / rate * float64(time.Second))
	if d := slept - want; d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("slept %v for %d bytes at %d B/s (burst %v), want %v", slept, total, rate, burst, want)
	}
}

func TestLimiter(t *testing.T) {
	clock := time.Unix(0, 0)
	l := newLimiter(1000, func() time.Time { return clock }) // burst: 32 KiB floor
	if l.burst != 32<<10 {
		t.Fatalf("burst %v", l.burst)
	}
	if d := l.take(32 << 10); d != 0 {
		t.Fatalf("the burst waits %v", d)
	}
	if d := l.take(500); d != 500*time.Millisecond {
		t.Fatalf("wait %v, want 500ms", d)
	}
	if d := l.take(500); d != time.Second {
		t.Fatalf("wait %v, want 1s (debt adds up)", d)
	}
	clock = clock.Add(time.Second)
	if d := l.take(0); d != 0 {
		t.Fatalf("after paying, wait %v", d)
	}
	clock = clock.Add(time.Hour) // saved tokens stop at the burst
	l.take(0)
	if l.tokens != l.burst {
		t.Fatalf("tokens %v, burst %v", l.tokens, l.burst)
	}
	if d := (*limiter)(nil).take(1 << 30); d != 0 {
		t.Fatal("nil limiter waits")
	}
	if d := newLimiter(0, nil).take(1 << 30); d != 0 {
		t.Fatal("unlimited waits")
	}
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	meta := []byte("<recording/>")
	write(t, filepath.Join(root, "presentation", "rec-a", "metadata.xml"), meta)
	write(t, filepath.Join(root, "presentation", "rec-b", "metadata.xml"), meta)
	write(t, filepath.Join(root, "presentation", "rec-b", "slides", "1.png"), random(10))
	write(t, filepath.Join(root, "video", "rec-a", "metadata.xml"), meta)
	write(t, filepath.Join(root, "presentation", "no-meta", "index.html"), meta)      // no metadata.xml
	write(t, filepath.Join(root, "presentation", "bad name", "metadata.xml"), meta)   // not a simple name
	write(t, filepath.Join(root, "pre sentation", "rec-c", "metadata.xml"), meta)     // not a simple name
	write(t, filepath.Join(root, "presentation", "file-not-dir"), meta)               // a file
	write(t, filepath.Join(root, "presentation", "rec-d", "metadata.xml", "x"), meta) // metadata.xml is a dir
	if err := os.Symlink(filepath.Join(root, "presentation", "rec-a"), filepath.Join(root, "presentation", "linked")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(root, "presentation", "rec-b", "metadata.xml"), old, old)
	units, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range units {
		got = append(got, u.String())
		if u.Dir != filepath.Join(root, u.Format, u.RecordID) || u.Newest.IsZero() {
			t.Fatalf("unit %+v", u)
		}
	}
	want := []string{"presentation/rec-a", "presentation/rec-b", "video/rec-a"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("units %v, want %v", got, want)
	}
	if _, err := Scan(filepath.Join(root, "missing")); err == nil {
		t.Fatal("scanning a missing dir succeeded")
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a b", "ä"} {
		if SimpleName(bad) {
			t.Fatalf("%q is simple", bad)
		}
	}
}

func TestManifest(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.txt")
	write(t, outside, []byte("not to be shipped"))
	dir := filepath.Join(root, "presentation", "rec-1")
	write(t, filepath.Join(dir, "metadata.xml"), []byte("<recording/>"))
	write(t, filepath.Join(dir, "a", "b.txt"), []byte("hello"))
	if err := os.Symlink(outside, filepath.Join(dir, "escape.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	u := unitOf(t, root, "presentation", "rec-1")
	m, err := Manifest(u, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.ChunkSize != adminapi.TransferDefaultSize || m.Format != "presentation" || m.RecordID != "rec-1" || m.Backend != "" {
		t.Fatalf("manifest %+v", m)
	}
	want := []adminapi.TransferFile{
		{Path: "a/b.txt", Size: 5, SHA256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
		{Path: "metadata.xml", Size: 12, SHA256: m.Files[1].SHA256},
	}
	if !reflect.DeepEqual(m.Files, want) {
		t.Fatalf("files %+v, want %+v (symbolic links skipped)", m.Files, want)
	}
	for _, cs := range []int64{1, adminapi.TransferMinChunk - 1, adminapi.TransferMaxChunk + 1, -1} {
		if _, err := Manifest(u, cs); err == nil {
			t.Fatalf("chunk size %d accepted", cs)
		}
	}
	// The unit's directory itself a link: refused.
	link := Unit{Format: "presentation", RecordID: "rec-x", Dir: filepath.Join(root, "presentation", "rec-x")}
	os.Symlink(filepath.Dir(outside), link.Dir)
	if _, err := Manifest(link, 0); err == nil {
		t.Fatal("a linked unit directory was accepted")
	}
	// Names the protocol refuses: refused here, with a clear error.
	bad := Unit{Format: "Presentation", RecordID: "rec-1", Dir: dir}
	if _, err := Manifest(bad, 0); err == nil || !strings.Contains(err.Error(), "[a-z0-9_-]") {
		t.Fatalf("upper-case format: %v", err)
	}
	write(t, filepath.Join(dir, "back\\slash.txt"), []byte("x"))
	if _, err := Manifest(u, 0); err == nil || !strings.Contains(err.Error(), "backslash") {
		t.Fatalf("backslash: %v", err)
	}
	os.Remove(filepath.Join(dir, "back\\slash.txt"))
	// Paths past the limit.
	long := filepath.Join(dir, strings.Repeat("d", 200), strings.Repeat("e", 200), strings.Repeat("f", 200))
	write(t, long, []byte("x"))
	if _, err := Manifest(u, 0); err == nil || !strings.Contains(err.Error(), "path longer") {
		t.Fatalf("long path: %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "512k": 512 << 10, "512K": 512 << 10, "20M": 20 << 20, "20MB": 20 << 20,
		"20MiB": 20 << 20, "1.5G": 3 << 29, "100B": 100, " 2m ": 2 << 20, "20M/s": 20 << 20,
	} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Fatalf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "abc", "20X", "NaN", "1e300"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Fatalf("ParseBytes(%q) accepted", bad)
		}
	}
	if s := FormatBytes(12<<20 + 512<<10); s != "12.5 MiB" {
		t.Fatal(s)
	}
	if s := FormatBytes(100); s != "100 B" {
		t.Fatal(s)
	}
	_ = bytes.MinRead
}
