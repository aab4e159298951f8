package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

// syncBuffer lets the test read what a running run() writes.
// syncBuffer captures logs written by goroutines.
type syncBuffer = harness.SyncBuffer

func runQuick(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersionHelpAndBadFlags(t *testing.T) {
	if code, out, _ := runQuick(t, "--version"); code != 0 || out != "fakebbb dev\n" {
		t.Fatalf("--version: %d %q", code, out)
	}
	if code, out, _ := runQuick(t, "--help"); code != 0 || !strings.Contains(out, "--listen") || !strings.Contains(out, "FAKEBBB_SECRET") {
		t.Fatalf("--help: %d %q", code, out)
	}
	if code, _, errOut := runQuick(t, "--bogus"); code != 2 || !strings.Contains(errOut, "bogus") {
		t.Fatalf("bad flag: %d %q", code, errOut)
	}
	if code, _, errOut := runQuick(t, "extra"); code != 2 || !strings.Contains(errOut, "extra") {
		t.Fatalf("stray argument: %d %q", code, errOut)
	}
	t.Setenv("FAKEBBB_SECRET", "")
	if code, _, errOut := runQuick(t, "--listen", "127.0.0.1:0"); code != 2 || !strings.Contains(errOut, "secret is required") {
		t.Fatalf("no secret: %d %q", code, errOut)
	}
	for _, n := range []string{"0", "-1", "lots"} {
		if code, _, errOut := runQuick(t, "--secret", "s", "--recording-bytes", n); code != 2 || !strings.Contains(errOut, "--recording-bytes") {
			t.Fatalf("--recording-bytes %s: %d %q", n, code, errOut)
		}
	}
	if code, out, _ := runQuick(t, "--help"); code != 0 || !strings.Contains(out, "--published-dir") || !strings.Contains(out, "FAKEBBB_RECORDING_BYTES") {
		t.Fatalf("--help lacks the recording flags: %q", out)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errOut := runQuick(t, "--listen", ln.Addr().String(), "--secret", "s")
	if code != 1 || !strings.Contains(errOut, "cannot listen on "+ln.Addr().String()) {
		t.Fatalf("port in use: %d %q", code, errOut)
	}
}

// Serve with the environment's settings (a flag wins), write the
// properties file, answer a signed call, stop on cancel.
func TestServeWritesPropertiesAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	props := filepath.Join(t.TempDir(), "bigbluebutton.properties")
	t.Setenv("FAKEBBB_LISTEN", "127.0.0.1:1") // overridden by --listen
	t.Setenv("FAKEBBB_SECRET", "env-secret")

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"--listen", addr, "--properties", props}, &out, &errOut) }()

	if err := testwait.Poll(5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "BBB API at") {
			return errors.New("no \"BBB API at\" line")
		}
		return nil
	}); err != nil {
		cancel()
		t.Fatalf("not serving (%v): %q %q", err, out.String(), errOut.String())
	}
	data, err := os.ReadFile(props)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "bigbluebutton.web.serverURL=http://"+addr+"\n") ||
		!strings.Contains(string(data), "securitySalt=env-secret\n") {
		t.Fatalf("properties: %s", data)
	}
	if fi, err := os.Stat(props); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("properties mode: %v %v", fi.Mode(), err)
	}

	sum := sha256.Sum256([]byte("getMeetings" + "" + "env-secret"))
	resp, err := http.Get("http://" + addr + "/bigbluebutton/api/getMeetings?checksum=" + hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "<returncode>SUCCESS</returncode>") {
		t.Fatalf("getMeetings: %s", body)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(testwait.Scaled(5 * time.Second)):
		t.Fatal("did not stop")
	}
	if _, err := http.Get("http://" + addr + "/bigbluebutton/api"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

// The test binary doubles as the fakebbb binary (run as a child process by
// TestProcessFaults).
func TestMain(m *testing.M) {
	if os.Getenv("FAKEBBB_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// The binary's faults through fakebbb.Process: SIGSTOP hangs it (the
// connection is accepted, nothing answers) until SIGCONT; SIGHUP restarts
// it empty on the same address; SIGKILL ends it even while stopped.
func TestProcessFaults(t *testing.T) {
	const secret = "proc-secret"
	p := fakebbb.StartProcess(t, os.Args[0], secret, "FAKEBBB_TEST_AS_MAIN=1")
	c := harness.BBBClient{Base: strings.TrimSuffix(p.API, "/"), Secret: secret}
	if a := c.Get(t, "create", "meetingID=held&attendeePW=ap&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("create: %s", a.Raw)
	}

	p.Hang()
	conn, err := net.DialTimeout("tcp", p.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("a stopped node refused the connection: %v", err)
	}
	conn.Close()
	done := make(chan error, 1)
	go func() {
		_, err := (&http.Client{Timeout: 10 * time.Second}).Get(c.URL("getMeetingInfo", "meetingID=held"))
		done <- err
	}()
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		select {
		case err := <-done:
			return fmt.Errorf("a stopped node answered: %v", err)
		default:
			return nil
		}
	})
	p.Resume()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGCONT: %v", err)
		}
	case <-time.After(testwait.Scaled(5 * time.Second)):
		t.Fatal("no answer after SIGCONT")
	}

	p.Hang()
	p.Restart() // resumes, then restarts empty
	if a := c.Get(t, "getMeetingInfo", "meetingID=held"); a.MessageKey != "notFound" {
		t.Fatalf("after SIGHUP: %s", a.Raw)
	}
	p.Hang()
	p.Kill()
	if p.Alive() {
		t.Fatal("alive after Kill")
	}
	if _, err := c.TryGet("getMeetings", ""); err == nil {
		t.Fatal("a killed node answered")
	}
}

// The binary writes the published tree where FAKEBBB_PUBLISHED_DIR says,
// with FAKEBBB_RECORDING_BYTES of media, and serves it.
func TestProcessPublishedDir(t *testing.T) {
	const secret = "pub-secret"
	pub := filepath.Join(t.TempDir(), "var", "published")
	p := fakebbb.StartProcess(t, os.Args[0], secret, "FAKEBBB_TEST_AS_MAIN=1",
		"FAKEBBB_PUBLISHED_DIR="+pub, "FAKEBBB_RECORDING_BYTES=4096")
	c := harness.BBBClient{Base: strings.TrimSuffix(p.API, "/"), Secret: secret}
	a := c.Get(t, "create", "meetingID=pubbed&record=true")
	if a.ReturnCode != "SUCCESS" {
		t.Fatalf("create: %s", a.Raw)
	}
	if a := c.Get(t, "end", "meetingID=pubbed"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("end: %s", a.Raw)
	}
	sum := sha1.Sum([]byte("pubbed"))
	matches, _ := filepath.Glob(filepath.Join(pub, "video", hex.EncodeToString(sum[:])+"-*", "metadata.xml"))
	if len(matches) != 1 {
		t.Fatalf("metadata.xml files: %v", matches)
	}
	dir := filepath.Dir(matches[0])
	id := filepath.Base(dir)
	media, err := os.ReadFile(filepath.Join(dir, "video-0.m4v"))
	if err != nil || !bytes.Equal(media, fakebbb.RecordingMedia(id, 4096)) {
		t.Fatalf("media: %d bytes, %v", len(media), err)
	}
	req, _ := http.NewRequest("GET", "http://"+p.Host+"/playback/video/"+id+"/video-0.m4v", nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, media[100:200]) {
		t.Fatalf("range: HTTP %d, %d bytes", resp.StatusCode, len(body))
	}
}
