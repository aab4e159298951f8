package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/testwait"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bigbluebutton.properties")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hermetic points BBB_CONFIG_OVERRIDE at an empty file, so a real
// /etc/bigbluebutton/bbb-web.properties on the test machine is not read.
func hermetic(t *testing.T) {
	t.Setenv("BBB_CONFIG_OVERRIDE", writeConfig(t, "# no overrides\n"))
	for _, k := range []string{"CONCLAVE_GOSSIP_KEY", "CONCLAVE_LOAD_FACTOR", "CONCLAVE_API_TOKEN", "CONCLAVE_GOSSIP_JOIN",
		"CONCLAVE_AUTOREGISTER", "CONCLAVE_BBB_API", "CONCLAVE_AGENT_GOSSIP_ADDR", "CONCLAVE_AGENT_NAME", "CONCLAVE_AGENT_POLL",
		"CONCLAVE_RECORDINGS_DIR", "CONCLAVE_TRANSFER_RATE", "CONCLAVE_TRANSFER_CHUNK", "CONCLAVE_RECORDINGS_SCAN", "CONCLAVE_RECORDINGS_SETTLE"} {
		t.Setenv(k, "")
	}
}

func execute(t *testing.T, stop <-chan struct{}, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newCommand(stop)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := execute(t, nil, "--version")
	if err != nil || out != "conclave-agent dev\n" {
		t.Fatalf("--version: %q, %v", out, err)
	}
	out, err = execute(t, nil, "--help")
	if err != nil || !strings.Contains(out, "CONCLAVE_GOSSIP_JOIN") || !strings.Contains(out, "--autoregister") {
		t.Fatalf("--help: %v\n%s", err, out)
	}
}

func TestBadStart(t *testing.T) {
	good := "bigbluebutton.web.serverURL=https://bbb.example.org\nsecuritySalt=s3cret\n"
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad flag", nil, []string{"--nope"}, "unknown flag"},
		{"stray argument", nil, []string{"extra"}, "unknown command"},
		{"unreadable config", map[string]string{"BBB_CONFIG": "/nonexistent/bbb.properties"}, nil, "no such file"},
		{"unreadable override", map[string]string{"BBB_CONFIG_OVERRIDE": "/nonexistent/override"}, nil, "no such file"},
		{"empty salt", map[string]string{"BBB_CONFIG": writeConfig(t, "bigbluebutton.web.serverURL=https://x.org\nsecuritySalt=\n")}, nil, "securitySalt"},
		{"bad gossip key", map[string]string{"CONCLAVE_GOSSIP_KEY": "c2hvcnQ="}, nil, "CONCLAVE_GOSSIP_KEY"},
		{"gossip key not base64", map[string]string{"CONCLAVE_GOSSIP_KEY": "%%%"}, nil, "CONCLAVE_GOSSIP_KEY"},
		{"bad load factor", map[string]string{"CONCLAVE_LOAD_FACTOR": "-2"}, nil, "CONCLAVE_LOAD_FACTOR"},
		{"bad poll env", map[string]string{"CONCLAVE_AGENT_POLL": "banana"}, nil, "CONCLAVE_AGENT_POLL"},
		{"zero poll", nil, []string{"--poll", "0s"}, "--poll"},
		{"bad bbb api", nil, []string{"--bbb-api", "ftp://bbb"}, "BBB API URL"},
		{"bad gossip addr", nil, []string{"--gossip-addr", "nowhere"}, "--gossip-addr"},
		{"bad transfer rate env", map[string]string{"CONCLAVE_TRANSFER_RATE": "fast"}, nil, "CONCLAVE_TRANSFER_RATE"},
		{"bad transfer rate", nil, []string{"--transfer-rate", "-1M"}, "--transfer-rate"},
		{"small transfer chunk", map[string]string{"CONCLAVE_TRANSFER_CHUNK": "1k"}, nil, "--transfer-chunk"},
		{"zero recordings scan", nil, []string{"--recordings-scan", "0s"}, "--recordings-scan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hermetic(t)
			t.Setenv("BBB_CONFIG", writeConfig(t, good))
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := c.args
			if !strings.Contains(strings.Join(args, " "), "--gossip-addr") {
				args = append(args, "--gossip-addr", "127.0.0.1:0") // should it get that far
			}
			_, err := execute(t, nil, args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatal("the BBB secret is in the error")
			}
		})
	}
}

// TestRunJoinsAndLeaves: flags and environment reach the agent; it joins a
// peer, reports its BBB, and leaves when stopped.
func TestRunJoinsAndLeaves(t *testing.T) {
	hermetic(t)
	bbbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<response><returncode>SUCCESS</returncode><meetings/></response>")
	}))
	defer bbbSrv.Close()
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	k, err := discovery.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := discovery.Start(discovery.Config{Name: "peer-1", BindAddr: "127.0.0.1:0", SecretKey: k,
		Meta: discovery.Meta{Role: discovery.RolePeer, HTTPAddr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Shutdown()

	t.Setenv("BBB_CONFIG", writeConfig(t, "bigbluebutton.web.serverURL=https://unused.example.org\nsecuritySalt=s3cret\n"))
	t.Setenv("CONCLAVE_GOSSIP_KEY", key)
	t.Setenv("CONCLAVE_LOAD_FACTOR", "2")
	t.Setenv("CONCLAVE_AGENT_NAME", "from-env")
	t.Setenv("CONCLAVE_AGENT_POLL", "100ms")
	t.Setenv("CONCLAVE_GOSSIP_JOIN", peer.Addr())
	t.Setenv("CONCLAVE_RECORDINGS_DIR", t.TempDir())
	t.Setenv("CONCLAVE_TRANSFER_RATE", "512k")
	t.Setenv("CONCLAVE_TRANSFER_CHUNK", "64k")

	stop := make(chan struct{})
	done := make(chan error, 1)
	var out string
	go func() {
		o, err := execute(t, stop, "--bbb-api", bbbSrv.URL+"/bigbluebutton/api", "--gossip-addr", "127.0.0.1:0")
		out = o
		done <- err
	}()
	api := bbbSrv.URL + "/bigbluebutton/api/"
	testwait.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, func() error {
		l, ok := peer.Loads()[api]
		if ok && l.Name == "from-env" && l.Meta.BBBUp && l.Meta.LoadFactor == 2 {
			return nil
		}
		select {
		case err := <-done:
			t.Fatalf("agent exited: %v", err)
		default:
		}
		return fmt.Errorf("peer never saw the agent: %+v", peer.Members())
	})
	close(stop)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testwait.Scaled(10 * time.Second)):
		t.Fatal("agent did not stop")
	}
	if l := peer.Loads()[api]; l.Alive {
		t.Fatal("agent stopped without leaving")
	}
	if !strings.Contains(out, `"msg":"recording shipping on"`) || !strings.Contains(out, "shipping recordings without CONCLAVE_API_TOKEN") {
		t.Fatalf("no word on recording shipping:\n%s", out)
	}
}

func TestTransferRateFlag(t *testing.T) {
	cmd := newCommand(nil)
	f := cmd.Flags().Lookup("transfer-rate")
	if f.DefValue != "20.0 MiB/s" {
		t.Fatalf("default %q", f.DefValue)
	}
	for in, want := range map[string]int64{"512k": 512 << 10, "20M": 20 << 20, "0": 0, "1048576": 1 << 20} {
		var r byteRate
		if err := r.Set(in); err != nil || int64(r) != want {
			t.Fatalf("%q: %d, %v", in, r, err)
		}
	}
	if d := cmd.Flags().Lookup("recordings-dir").DefValue; d != "/var/bigbluebutton/published" {
		t.Fatal(d)
	}
}

func TestDefaultName(t *testing.T) {
	if got := defaultName("https://bbb7.example.org/bigbluebutton/api/", "0.0.0.0:42356"); got != "bbb7.example.org:42356" {
		t.Fatal(got)
	}
}
