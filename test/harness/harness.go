// Package harness starts real Conclave binaries on loopback for
// multi-process tests: peers on free ports, each with its own data dir and
// log file, that a test can kill, stop and restart.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/internal/pki"
	"github.com/conclave-lb/conclave/internal/testwait"
)

// Binaries are the paths of the built programs.
type Binaries struct {
	Conclaved, Conclavectl, Fakebbb, Agent string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// repoRoot finds the module root from this source file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the binaries once per test process. CONCLAVE_BIN_DIR, when
// set (make test sets it), points at binaries built already.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir := os.Getenv("CONCLAVE_BIN_DIR")
		if dir == "" {
			dir, buildErr = os.MkdirTemp("", "conclave-bin-")
			if buildErr != nil {
				return
			}
			for _, name := range []string{"conclaved", "conclavectl", "fakebbb", "conclave-agent"} {
				if _, err := os.Stat(filepath.Join(repoRoot(), "cmd", name, "main.go")); err != nil {
					continue
				}
				cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
				cmd.Dir = repoRoot()
				if out, err := cmd.CombinedOutput(); err != nil {
					buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
					return
				}
			}
		}
		built = Binaries{
			Conclaved: filepath.Join(dir, "conclaved"), Conclavectl: filepath.Join(dir, "conclavectl"),
			Fakebbb: filepath.Join(dir, "fakebbb"), Agent: filepath.Join(dir, "conclave-agent"),
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// FreeAddr returns a loopback address with a port free at the time of the call.
func FreeAddr(t testing.TB) string {
	t.Helper()
	// The kernel may hand out a port it just handed out and got back (it
	// gave one peer's HTTP and gossip ports the same number once): never
	// return one twice in this process.
	givenMu.Lock()
	defer givenMu.Unlock()
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !given[addr] || try >= 100 {
			given[addr] = true
			return addr
		}
	}
}

var (
	givenMu sync.Mutex
	given   = map[string]bool{} // addresses FreeAddr returned
)

// Peer is one conclaved process.
type Peer struct {
	ID, HTTP, Raft, Gossip, DataDir, LogPath string
	Bootstrap                                bool
	Join                                     []string
	c                                        *Cluster
	certName                                 string // under TLS: the files <certName>.pem, -key.pem
	certs                                    int    // certificates made for this peer
	cmd                                      *exec.Cmd
	done                                     chan struct{}
}

// Cluster is a set of peers sharing an environment.
type Cluster struct {
	T     testing.TB
	Bins  Binaries
	Dir   string
	Env   []string // extra environment for every peer, e.g. CONCLAVE_API_JWT_SECRET=…
	Peers []*Peer
	// TLSDir, when set (EnableTLS), holds the cluster CA and the peers'
	// certificates, and peers start with mutual TLS.
	TLSDir string
	mu     sync.Mutex
}

// NewCluster prepares (but does not start) a cluster in a temp dir.
func NewCluster(t testing.TB, env ...string) *Cluster {
	dir := t.TempDir()
	if keep := os.Getenv("CONCLAVE_TEST_KEEP"); keep != "" { // keep data dirs and logs for a post-mortem
		dir, _ = os.MkdirTemp(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	}
	c := &Cluster{T: t, Bins: Build(t), Dir: dir, Env: env}
	t.Cleanup(c.StopAll)
	return c
}

// StartCluster starts n peers: the first bootstraps, the others join it,
// and waits until all n are voters with one leader.
func StartCluster(t testing.TB, n int, env ...string) *Cluster {
	return NewCluster(t, env...).start(n)
}

// StartClusterTLS is StartCluster with mutual TLS between the peers
// (EnableTLS).
func StartClusterTLS(t testing.TB, n int, env ...string) *Cluster {
	c := NewCluster(t, env...)
	c.EnableTLS()
	return c.start(n)
}

// EnableTLS makes a cluster CA in Dir/tls (internal/pki, as conclavectl
// tls ca create does); peers started from then on get a certificate of
// their own from it and run with --tls-ca, --tls-cert and --tls-key.
func (c *Cluster) EnableTLS() {
	c.T.Helper()
	dir := filepath.Join(c.Dir, "tls")
	if _, _, err := pki.WriteCA(dir, 1); err != nil {
		c.T.Fatal(err)
	}
	c.TLSDir = dir
}

// ReplaceCert gives the peer a new certificate from the cluster CA (new
// files, new key); it is used from the peer's next Start.
func (p *Peer) ReplaceCert() {
	p.c.T.Helper()
	p.certs++
	p.certName = fmt.Sprintf("%s-%d", p.ID, p.certs)
	if _, _, err := pki.WriteCert(p.c.TLSDir, p.certName, nil, 1); err != nil {
		p.c.T.Fatal(err)
	}
}

// CertName is the common name of the peer's current certificate.
func (p *Peer) CertName() string { return p.certName }

func (c *Cluster) start(n int) *Cluster {
	first := c.AddPeer("p1", true, nil)
	for i := 2; i <= n; i++ {
		c.AddPeer(fmt.Sprintf("p%d", i), false, []string{first.HTTP})
	}
	c.WaitMembers(n, 20*time.Second)
	return c
}

// AddPeer creates and starts a peer.
func (c *Cluster) AddPeer(id string, bootstrap bool, join []string) *Peer {
	p := &Peer{
		ID: id, HTTP: FreeAddr(c.T), Raft: FreeAddr(c.T), Gossip: FreeAddr(c.T),
		DataDir: filepath.Join(c.Dir, id), LogPath: filepath.Join(c.Dir, id+".log"),
		Bootstrap: bootstrap, Join: join, c: c,
	}
	c.mu.Lock()
	c.Peers = append(c.Peers, p)
	c.mu.Unlock()
	p.Start()
	return p
}

// Start runs the peer's process (again, after Kill or Stop).
func (p *Peer) Start() {
	t := p.c.T
	args := []string{"--id", p.ID, "--data-dir", p.DataDir, "--listen-http", p.HTTP,
		"--raft-addr", p.Raft, "--gossip-addr", p.Gossip}
	if p.Bootstrap {
		args = append(args, "--bootstrap")
	}
	if len(p.Join) > 0 {
		args = append(args, "--join", strings.Join(p.Join, ","))
	}
	if p.c.TLSDir != "" {
		if p.certName == "" {
			p.ReplaceCert()
		}
		args = append(args, "--tls-ca", filepath.Join(p.c.TLSDir, pki.CAFile),
			"--tls-cert", filepath.Join(p.c.TLSDir, pki.CertFile(p.certName)),
			"--tls-key", filepath.Join(p.c.TLSDir, pki.KeyFile(p.certName)))
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.c.Bins.Conclaved, args...)
	cmd.Env = append(append(os.Environ(), "CONCLAVE_LOG_LEVEL=debug"), p.c.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	if err := WaitHTTP("http://"+p.HTTP+"/healthz", 10*time.Second); err != nil {
		t.Fatalf("peer %s did not come up: %v\n%s", p.ID, err, p.Log())
	}
}

// Running reports whether the process is alive.
func (p *Peer) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is the process ID of the running peer (0 when not started).
func (p *Peer) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL (a crash) and waits for the process to go.
func (p *Peer) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful stop) and waits for the process to go.
func (p *Peer) Stop() { p.signal(syscall.SIGTERM) }

func (p *Peer) signal(sig syscall.Signal) {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Log returns the peer's log so far.
func (p *Peer) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// StopAll stops every peer (test cleanup). Logs of a failed test are kept
// in the temp dir and their tails printed.
func (c *Cluster) StopAll() {
	for _, p := range c.Peers {
		p.Kill()
		if c.T.Failed() {
			l := p.Log()
			if len(l) > 4000 {
				l = l[len(l)-4000:]
			}
			c.T.Logf("--- log tail of %s ---\n%s", p.ID, l)
		}
	}
}

// Status is a peer's /api/v1/status answer.
type Status = adminapi.Status

// Status asks one peer about itself.
func (p *Peer) Status() (Status, error) {
	var st Status
	err := p.c.API(p, "GET", "/api/v1/status", nil, &st)
	return st, err
}

// Leader waits for a running peer that says it leads and is ready.
func (c *Cluster) Leader(timeout time.Duration) *Peer {
	c.T.Helper()
	var leader *Peer
	if err := testwait.Poll(timeout, 50*time.Millisecond, func() error {
		for _, p := range c.Peers {
			if !p.Running() {
				continue
			}
			if st, err := p.Status(); err == nil && st.State == "Leader" && st.Ready {
				leader = p
				return nil
			}
		}
		return errors.New("no leader")
	}); err != nil {
		c.T.Fatal(err)
	}
	return leader
}

// PeerInfo is one row of GET /api/v1/peers.
type PeerInfo = adminapi.Peer

// WaitMembers waits until a leader lists n reachable voters.
func (c *Cluster) WaitMembers(n int, timeout time.Duration) []PeerInfo {
	c.T.Helper()
	var last []PeerInfo
	if err := testwait.Poll(timeout, 100*time.Millisecond, func() error {
		l := c.Leader(timeout)
		if err := c.API(l, "GET", "/api/v1/peers", nil, &last); err != nil {
			return err
		}
		ok := 0
		for _, pi := range last {
			if pi.Voter && pi.Reachable && pi.HTTPAddr != "" {
				ok++
			}
		}
		if ok == n && len(last) == n {
			return nil
		}
		return fmt.Errorf("cluster did not reach %d members: %+v", n, last)
	}); err != nil {
		c.T.Fatal(err)
	}
	return last
}

// Token, when set, is sent as the bearer token by API and Ctl.
var client = &http.Client{Timeout: 30 * time.Second}

// API calls a peer's admin API with JSON and decodes the answer into out.
// A non-2xx answer is an error carrying the body.
func (c *Cluster) API(p *Peer, method, path string, body any, out any) error {
	return APIWithToken(p.HTTP, c.token(), method, path, body, out)
}

func (c *Cluster) token() string {
	for _, e := range c.Env {
		if v, ok := strings.CutPrefix(e, "CONCLAVE_TEST_TOKEN="); ok {
			return v
		}
	}
	return ""
}

// APIWithToken is API against any HTTP address with an explicit token.
func APIWithToken(httpAddr, token, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+httpAddr+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Status: resp.StatusCode, Body: string(data)}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// Ctl runs conclavectl against a peer and returns its stdout.
func (c *Cluster) Ctl(p *Peer, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bins.Conclavectl, append([]string{"--api", "http://" + p.HTTP}, args...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("conclavectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// WaitHTTP polls url until it answers 200.
func WaitHTTP(url string, timeout time.Duration) error {
	err := testwait.Poll(timeout, 50*time.Millisecond, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s not up: %w", url, err)
	}
	return nil
}

// Eventually retries fn every 50 ms until it returns nil, or fails t once
// timeout (times CONCLAVE_TEST_TIMEOUT_SCALE) has passed: testwait's
// Eventually, kept under this name for the multi-process tests.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	testwait.EventuallyEvery(t, timeout, 50*time.Millisecond, fn)
}

// WaitConverged waits until every running peer has applied as far as the
// most advanced one: a write acknowledged on one peer is then visible on all.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.T.Helper()
	Eventually(c.T, timeout, func() error {
		var hi, lo uint64 = 0, ^uint64(0)
		for _, p := range c.Peers {
			if !p.Running() {
				continue
			}
			st, err := p.Status()
			if err != nil {
				return err
			}
			hi, lo = max(hi, st.AppliedIndex), min(lo, st.AppliedIndex)
		}
		if hi != lo {
			return fmt.Errorf("applied indexes range %d..%d", lo, hi)
		}
		return nil
	})
}
