//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/internal/testwait"
)

const (
	imageTag    = "dev"
	clientImage = "conclave/e2e-client:" + imageTag
	projPrefix  = "conclave-e2e-"
	labelKey    = "conclave.e2e.project" // on the client containers this test starts
	peerPort    = "42353/tcp"
)

var peers = []string{"peer1", "peer2", "peer3"}

// repoRoot is the module root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// run executes a command with a timeout and returns its stdout; the error
// carries stderr.
func run(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v", timeout)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func docker(args ...string) (string, error) {
	return run(2*time.Minute, os.Environ(), "docker", args...)
}

// requireDocker fails the test loudly when Docker cannot be used.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("e2e: the docker CLI is not installed (%v). The container tests need Docker; run the others with `make unit`.", err)
	}
	out, err := run(30*time.Second, os.Environ(), "docker", "version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Fatalf("e2e: the Docker daemon does not answer — is it running, and may this user use it?\n%v", err)
	}
	t.Logf("Docker server %s", strings.TrimSpace(out))
}

// composeCommand finds Compose: the v2 plugin (`docker compose`) or the
// standalone docker-compose (1.28+ for profiles).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if _, err := run(30*time.Second, os.Environ(), "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		if _, err := run(30*time.Second, os.Environ(), "docker-compose", "version"); err == nil {
			return []string{"docker-compose"}
		}
	}
	t.Fatal("e2e: neither `docker compose` nor `docker-compose` works; install one of them")
	return nil
}

// legacyBuilderEnv chooses the builder: BuildKit needs the buildx plugin;
// without it `docker build` must run with DOCKER_BUILDKIT=0.
func legacyBuilderEnv() []string {
	if _, err := run(30*time.Second, os.Environ(), "docker", "buildx", "version"); err == nil {
		return os.Environ()
	}
	return append(os.Environ(), "DOCKER_BUILDKIT=0")
}

// goBuild builds a static binary.
func goBuild(pkg, out string) error {
	_, err := runIn(repoRoot(), 10*time.Minute, append(os.Environ(), "CGO_ENABLED=0"),
		"go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	return err
}

func runIn(dir string, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ensureImages makes sure conclave/conclaved and conclave/fakebbb exist and
// hold the binaries in CONCLAVE_BIN_DIR (make e2e sets it; without it the
// binaries are built now): a missing or stale image (label
// conclave.binary.sha256) is (re)built with scripts/images.sh.
func ensureImages(t *testing.T) {
	t.Helper()
	bin := os.Getenv("CONCLAVE_BIN_DIR")
	if bin == "" {
		bin = t.TempDir()
		for _, c := range []string{"conclaved", "fakebbb", "conclavectl"} {
			if _, err := os.Stat(filepath.Join(repoRoot(), "cmd", c, "main.go")); err != nil {
				continue
			}
			if err := goBuild("./cmd/"+c, filepath.Join(bin, c)); err != nil {
				t.Fatal(err)
			}
		}
	}
	stale := []string{}
	for _, name := range []string{"conclaved", "fakebbb"} {
		want, err := fileSHA256(filepath.Join(bin, name))
		if err != nil {
			t.Fatalf("e2e: no %s binary in %s (run `make build`): %v", name, bin, err)
		}
		have, _ := docker("image", "inspect", "--format", `{{index .Config.Labels "conclave.binary.sha256"}}`, "conclave/"+name+":"+imageTag)
		if strings.TrimSpace(have) != want {
			stale = append(stale, name)
		}
	}
	if len(stale) == 0 {
		return
	}
	t.Logf("building images (%s missing or stale) with scripts/images.sh", strings.Join(stale, ", "))
	started := time.Now()
	out, err := runIn(repoRoot(), 10*time.Minute, append(os.Environ(), "BIN="+bin, "TAG="+imageTag),
		"bash", "scripts/images.sh")
	if err != nil {
		t.Fatalf("e2e: scripts/images.sh failed: %v", err)
	}
	t.Logf("images built in %v:\n%s", time.Since(started).Round(time.Second), strings.TrimSpace(out))
}

// buildClientImage builds the load client (test/e2e/client) into an image
// FROM scratch.
func buildClientImage(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := goBuild("./test/e2e/client", filepath.Join(dir, "client")); err != nil {
		t.Fatal(err)
	}
	df := "FROM scratch\nCOPY client /client\nUSER 65532:65532\nENTRYPOINT [\"/client\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := docker("image", "inspect", "--format", "{{.Id}}", clientImage)
	if _, err := run(5*time.Minute, legacyBuilderEnv(), "docker", "build", "-q", "-t", clientImage, dir); err != nil {
		t.Fatalf("e2e: building the client image: %v", err)
	}
	if now, _ := docker("image", "inspect", "--format", "{{.Id}}", clientImage); strings.TrimSpace(old) != "" && old != now {
		_, _ = docker("rmi", strings.TrimSpace(old)) // the replaced build, unless in use
	}
}

// cluster is one compose project: three peers and three fake BBB nodes.
type cluster struct {
	t         *testing.T
	compose   []string
	file      string
	project   string
	env       []string
	jwtSecret string
	token     string
	network   string
	tlsDir    string // CONCLAVE_TLS_DIR: the cluster CA and the peers' certificates

	mu    sync.Mutex
	ids   map[string]string // service → container ID
	ports map[string]string // service → 127.0.0.1:port (published)
	http  *http.Client
}

func newCluster(t *testing.T, compose []string) *cluster {
	rnd := make([]byte, 32)
	_, _ = rand.Read(rnd)
	jwtSecret := hex.EncodeToString(rnd[:16])
	gossipKey := base64.StdEncoding.EncodeToString(rnd[16:])
	token, err := auth.Mint(jwtSecret, "e2e", []string{auth.ScopeAdmin}, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t: t, compose: compose,
		file:      filepath.Join(repoRoot(), "deploy", "docker-compose.yml"),
		project:   fmt.Sprintf("%s%d-%s", projPrefix, os.Getpid(), hex.EncodeToString(rnd[:3])),
		jwtSecret: jwtSecret, token: token,
		ids: map[string]string{}, ports: map[string]string{},
		http: &http.Client{Timeout: 8 * time.Second},
	}
	c.tlsDir = makeTLS(t)
	c.env = composeEnv(jwtSecret, gossipKey, c.tlsDir)
	return c
}

// composeEnv is the environment compose interpolates the file with.
func composeEnv(jwtSecret, gossipKey, tlsDir string) []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "CONCLAVE_") || strings.HasPrefix(e, "COMPOSE_") {
			continue // nothing of the caller's own setup leaks in (fixed ports, tags, secrets)
		}
		env = append(env, e)
	}
	return append(env,
		"CONCLAVE_API_JWT_SECRET="+jwtSecret, "CONCLAVE_GOSSIP_KEY="+gossipKey, "CONCLAVE_TLS_DIR="+tlsDir,
		"CONCLAVE_RESTART=no", "CONCLAVE_TAG="+imageTag, "CONCLAVE_LOG_LEVEL=info")
}

func (c *cluster) composeRun(timeout time.Duration, args ...string) (string, error) {
	full := append(append(append([]string{}, c.compose[1:]...), "-f", c.file, "-p", c.project), args...)
	return run(timeout, c.env, c.compose[0], full...)
}

// up starts the project; cleanup (registered first) always tears it down.
func (c *cluster) up() {
	t := c.t
	t.Cleanup(c.down)
	if _, err := c.composeRun(5*time.Minute, "up", "-d", "peer1", "peer2", "peer3", "bbb1", "bbb2", "bbb3"); err != nil {
		t.Fatalf("e2e: compose up: %v", err)
	}
	t.Cleanup(c.dumpLogsOnFailure)
	for _, s := range append(append([]string{}, peers...), bbbNodes...) {
		c.container(s) // cached now: later lookups may run outside the test goroutine
	}
	id := c.container("peer1")
	out, err := docker("inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", id)
	if err != nil {
		t.Fatal(err)
	}
	nets := strings.Fields(out)
	if len(nets) != 1 {
		t.Fatalf("peer1 is on networks %v, want one", nets)
	}
	c.network = nets[0]
}

// down removes everything the project made: containers, network, volumes,
// and the client containers this test started. CONCLAVE_E2E_KEEP=1 keeps
// them for a post-mortem.
func (c *cluster) down() {
	if os.Getenv("CONCLAVE_E2E_KEEP") == "1" {
		c.t.Logf("CONCLAVE_E2E_KEEP=1: project %s kept; remove it with\n  %s -f %s -p %s down -v --remove-orphans (with CONCLAVE_API_JWT_SECRET/CONCLAVE_GOSSIP_KEY/CONCLAVE_TLS_DIR set to anything)",
			c.project, strings.Join(c.compose, " "), c.file, c.project)
		return
	}
	removeProject(c.compose, c.file, c.project, c.env)
}

func removeProject(compose []string, file, project string, env []string) error {
	if out, _ := docker("ps", "-aq", "--filter", "label="+labelKey+"="+project); strings.TrimSpace(out) != "" {
		_, _ = docker(append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...)
	}
	args := append(append([]string{}, compose[1:]...), "-f", file, "-p", project, "down", "-v", "--remove-orphans", "-t", "5")
	_, err := run(3*time.Minute, env, compose[0], args...)
	return err
}

// reapStale removes projects left by e2e runs whose process is gone (a
// run killed by `go test -timeout` does not run its cleanups). Projects of
// live processes — a colleague's run — are left alone.
func reapStale(t *testing.T, compose []string) {
	out, err := docker("ps", "-a", "--filter", "label=com.docker.compose.project", "--format", `{{.Label "com.docker.compose.project"}}`)
	if err != nil {
		return
	}
	re := regexp.MustCompile("^" + regexp.QuoteMeta(projPrefix) + `(\d+)-[0-9a-f]+$`)
	seen := map[string]bool{}
	for _, p := range strings.Fields(out) {
		m := re.FindStringSubmatch(p)
		if m == nil || seen[p] {
			continue
		}
		seen[p] = true
		pid, _ := strconv.Atoi(m[1])
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		t.Logf("removing project %s left by an earlier run", p)
		if err := removeProject(compose, filepath.Join(repoRoot(), "deploy", "docker-compose.yml"), p, composeEnv("x", "x", "x")); err != nil {
			t.Logf("could not remove %s: %v", p, err)
		}
	}
}

func (c *cluster) dumpLogsOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, s := range append(append([]string{}, peers...), "bbb1") {
		id := c.container(s)
		out, _ := runIn(repoRoot(), 30*time.Second, os.Environ(), "docker", "logs", "--tail", "60", id)
		c.t.Logf("--- last log lines of %s ---\n%s", s, out)
	}
}

// container returns a service's container ID (stable across docker
// start/restart/network changes).
func (c *cluster) container(svc string) string {
	c.mu.Lock()
	id := c.ids[svc]
	c.mu.Unlock()
	if id != "" {
		return id
	}
	out, err := docker("ps", "-aq", "--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+svc)
	ids := strings.Fields(out)
	if err != nil || len(ids) != 1 {
		c.t.Fatalf("e2e: container of %s: %v %v", svc, ids, err)
	}
	c.mu.Lock()
	c.ids[svc] = ids[0]
	c.mu.Unlock()
	return ids[0]
}

// addr is the published loopback address of a service's port. Docker
// assigns a new one whenever the container starts or rejoins its network,
// so it is looked up again after each fault.
func (c *cluster) addr(svc, port string) (string, error) {
	key := svc + "/" + port
	c.mu.Lock()
	a := c.ports[key]
	c.mu.Unlock()
	if a != "" {
		return a, nil
	}
	out, err := docker("port", c.container(svc), port)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "127.0.0.1:") {
			c.mu.Lock()
			c.ports[key] = l
			c.mu.Unlock()
			return l, nil
		}
	}
	return "", fmt.Errorf("%s has no published %s (down or disconnected?)", svc, port)
}

func (c *cluster) forget(svc string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.ports {
		if strings.HasPrefix(k, svc+"/") {
			delete(c.ports, k)
		}
	}
}

// api calls a peer's admin API through its published port.
func (c *cluster) api(svc, method, path string, body, out any) error {
	a, err := c.addr(svc, peerPort)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+a+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		c.forget(svc) // the port may have moved
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s on %s: HTTP %d: %s", method, path, svc, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *cluster) status(svc string) (adminapi.Status, error) {
	var st adminapi.Status
	err := c.api(svc, "GET", "/api/v1/status", nil, &st)
	return st, err
}

// eventually retries fn every 100 ms until it succeeds or timeout (times
// CONCLAVE_TEST_TIMEOUT_SCALE) passes: testwait.Poll at the interval these
// tests poll Docker's published ports.
func eventually(timeout time.Duration, fn func() error) error {
	return testwait.Poll(timeout, 100*time.Millisecond, fn)
}

// waitReady waits until svc answers /readyz with 200.
func (c *cluster) waitReady(svc string, timeout time.Duration) error {
	return eventually(timeout, func() error { return c.readyz(svc) })
}

// readyz asks svc's /readyz once: nil when it answers 200.
func (c *cluster) readyz(svc string) error {
	a, err := c.addr(svc, peerPort)
	if err != nil {
		return err
	}
	resp, err := c.http.Get("http://" + a + "/readyz")
	if err != nil {
		c.forget(svc)
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s /readyz: %d %s", svc, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// leader waits for one of among to say it leads and is ready.
func (c *cluster) leader(among []string, timeout time.Duration) (string, error) {
	var found string
	err := eventually(timeout, func() error {
		for _, s := range among {
			if st, err := c.status(s); err == nil && st.State == "Leader" && st.Ready {
				found = s
				return nil
			}
		}
		return errors.New("no ready leader among " + strings.Join(among, ","))
	})
	return found, err
}

func others(all []string, not string) []string {
	var out []string
	for _, s := range all {
		if s != not {
			out = append(out, s)
		}
	}
	return out
}

// waitCaughtUp waits until svc's replica has applied what the leader had
// applied when the wait began: /readyz may say ready before that.
func (c *cluster) waitCaughtUp(svc string, timeout time.Duration) error {
	var target uint64
	return eventually(timeout, func() error {
		if target == 0 {
			l, err := c.leader(peers, time.Second)
			if err != nil {
				return err
			}
			st, err := c.status(l)
			if err != nil {
				return err
			}
			target = st.AppliedIndex
		}
		st, err := c.status(svc)
		if err != nil {
			return err
		}
		if st.AppliedIndex < target {
			return fmt.Errorf("%s has applied %d of %d", svc, st.AppliedIndex, target)
		}
		return nil
	})
}

// waitHealthy waits until every peer is ready (one after another) and the
// leader lists three reachable voters, all within one timeout.
func (c *cluster) waitHealthy(timeout time.Duration) error {
	ready := 0 // peers[:ready] have answered /readyz
	return eventually(timeout, func() error {
		for ; ready < len(peers); ready++ {
			if err := c.readyz(peers[ready]); err != nil {
				return err
			}
		}
		l, err := c.leader(peers, time.Second)
		if err != nil {
			return err
		}
		var ps []adminapi.Peer
		if err := c.api(l, "GET", "/api/v1/peers", nil, &ps); err != nil {
			return err
		}
		ok := 0
		for _, p := range ps {
			if p.Voter && p.Reachable {
				ok++
			}
		}
		if ok != 3 || len(ps) != 3 {
			return fmt.Errorf("peers: %+v", ps)
		}
		return nil
	})
}

func (c *cluster) meetings(svc string) (map[string]string, error) {
	var ms []adminapi.Meeting
	if err := c.api(svc, "GET", "/api/v1/meetings?frontend="+frontendKey, nil, &ms); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		out[m.MeetingID] = m.BackendID
	}
	return out, nil
}

// waitConverged waits until the three peers have applied the same index
// and hold the same meetings, bound to the same backends.
func (c *cluster) waitConverged(timeout time.Duration) error {
	return eventually(timeout, func() error {
		var idx []uint64
		var lists []string
		for _, s := range peers {
			st, err := c.status(s)
			if err != nil {
				return err
			}
			ms, err := c.meetings(s)
			if err != nil {
				return err
			}
			idx = append(idx, st.AppliedIndex)
			keys := make([]string, 0, len(ms))
			for k, v := range ms {
				keys = append(keys, k+"="+v)
			}
			sort.Strings(keys)
			lists = append(lists, strings.Join(keys, ","))
		}
		if idx[0] != idx[1] || idx[1] != idx[2] {
			return fmt.Errorf("applied indexes differ: %v", idx)
		}
		if lists[0] != lists[1] || lists[1] != lists[2] {
			return fmt.Errorf("meeting lists differ (%d, %d, %d bytes)", len(lists[0]), len(lists[1]), len(lists[2]))
		}
		return nil
	})
}

// ips lists the peers' addresses on the network (they can change when a
// container starts again), to read the client's records by.
func (c *cluster) ips() string {
	var parts []string
	for _, s := range peers {
		out, _ := docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c.container(s))
		parts = append(parts, s+"="+strings.TrimSpace(out))
	}
	return strings.Join(parts, " ")
}

// Faults. Each forgets the cached published port: Docker assigns a new one.

func (c *cluster) kill(svc string) error {
	defer c.forget(svc)
	_, err := docker("kill", c.container(svc))
	return err
}

func (c *cluster) start(svc string) error {
	defer c.forget(svc)
	_, err := docker("start", c.container(svc))
	return err
}

func (c *cluster) restart(svc string) error {
	defer c.forget(svc)
	_, err := docker("restart", "-t", "15", c.container(svc))
	return err
}

func (c *cluster) disconnect(svc string) error {
	defer c.forget(svc)
	_, err := docker("network", "disconnect", c.network, c.container(svc))
	return err
}

// connect puts a peer back with the aliases compose gave it: its service
// name (other peers' and the Raft addresses) and the shared "conclave".
func (c *cluster) connect(svc string) error {
	defer c.forget(svc)
	_, err := docker("network", "connect", "--alias", svc, "--alias", "conclave", c.network, c.container(svc))
	return err
}

// Clients.

// Record is one line of the client's output (test/e2e/client).
type Record struct {
	At       time.Time `json:"at"`
	Ms       float64   `json:"ms"`
	Op       string    `json:"op"`
	Meeting  string    `json:"meeting"`
	OK       bool      `json:"ok"`
	Status   int       `json:"status"`
	Key      string    `json:"key"`
	Err      string    `json:"err"`
	Backend  string    `json:"backend"`
	Peer     string    `json:"peer"`
	Requests int       `json:"requests"`
	Failed   int       `json:"failed"`
}

func (r Record) end() time.Time { return r.At.Add(time.Duration(r.Ms * float64(time.Millisecond))) }

// startClient starts the load loop in its own container on the project's
// network; it resolves "conclave" before every request.
func (c *cluster) startClient(name string, args ...string) (string, error) {
	full := append([]string{"run", "-d", "--name", c.project + "-" + name, "--label", labelKey + "=" + c.project,
		"--network", c.network, clientImage, "-secret", frontendSecret}, args...)
	out, err := docker(full...)
	return strings.TrimSpace(out), err
}

// stopClient ends a client (SIGTERM: it finishes the requests under way)
// and returns its records.
func (c *cluster) stopClient(id string) ([]Record, error) {
	if _, err := docker("stop", "-t", "30", id); err != nil {
		return nil, err
	}
	defer docker("rm", "-f", id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "logs", id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker logs: %v: %s", err, stderr.String())
	}
	recs, err := parseRecords(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%v (client stderr: %s)", err, stderr.String())
	}
	return recs, nil
}

// parseRecords reads the client's JSON lines; the last must be its summary.
func parseRecords(out []byte) ([]Record, error) {
	var recs []Record
	var summary *Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("client output line %q: %v", sc.Text(), err)
		}
		if r.Op == "summary" {
			summary = &r
			continue
		}
		recs = append(recs, r)
	}
	if summary == nil {
		return recs, errors.New("the client printed no summary (did it crash?)")
	}
	if summary.Requests != len(recs) {
		return recs, fmt.Errorf("client summary counts %d requests, %d lines read", summary.Requests, len(recs))
	}
	return recs, nil
}

// probe sends one request to one peer from inside that peer's network
// namespace (127.0.0.1), which works even while the peer is cut off from
// every network.
func (c *cluster) probe(svc, op, mid string) (Record, error) {
	out, err := docker("run", "--rm", "--label", labelKey+"="+c.project, "--network", "container:"+c.container(svc),
		clientImage, "-secret", frontendSecret, "-target", "127.0.0.1:42353", "-op", op, "-meeting", mid, "-timeout", "30s")
	if err != nil {
		return Record{}, err
	}
	recs, err := parseRecords([]byte(out))
	if err != nil || len(recs) != 1 {
		return Record{}, fmt.Errorf("probe output %q: %v", out, err)
	}
	return recs[0], nil
}
