//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestScale fills a three-peer cluster with 1 000 backends and 100 000
// meetings through the BBB API, then measures what an operator sizes for:
// each peer's resident memory, the snapshot (size, time), a fourth peer's
// catch-up and a restarted peer's recovery. BENCH_SCALE_BACKENDS and
// BENCH_SCALE_MEETINGS change the sizes.
func TestScale(t *testing.T) {
	if only := os.Getenv("BENCH_ONLY"); only != "" && !strings.Contains("scale", only) {
		t.Skip("BENCH_ONLY selects other scenarios")
	}
	nBackends := envInt("BENCH_SCALE_BACKENDS", 1000)
	nMeetings := envInt("BENCH_SCALE_MEETINGS", 100000)
	c := harness.StartCluster(t, 3, "CONCLAVE_LOG_LEVEL=info")
	var rows []string
	row := func(what, value string) {
		rows = append(rows, fmt.Sprintf("| %s | %s |", what, value))
		t.Logf("SCALE: %s: %s", what, value)
	}

	// The backends: fake nodes in this process (their speed is not measured
	// here), each on a listener of its own, registered 16 at a time.
	started := time.Now()
	nodes := make([]node, nBackends)
	for i := range nodes {
		secret := fmt.Sprintf("scale%d-secret", i)
		_, api, host := fakebbb.StartTest(t, secret)
		nodes[i] = node{api: api, secret: secret, host: host}
	}
	register(t, c, nodes)
	row(fmt.Sprintf("register %d backends (16 at a time) until all are ready", nBackends), time.Since(started).Round(100*time.Millisecond).String())

	// The meetings, through the BBB API on all three peers.
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "scale", Secret: feSecret}, nil); err != nil {
		t.Fatal(err)
	}
	urls := make([]string, nMeetings)
	for i := range urls {
		cl := harness.BBBClient{Base: "http://" + c.Peers[i%3].HTTP + "/bigbluebutton/api", Secret: feSecret}
		urls[i] = cl.URL("create", fmt.Sprintf("meetingID=s%d&moderatorPW=mp&attendeePW=ap", i))
	}
	r := Run(Load{Name: fmt.Sprintf("create: %d backends, three peers, 64 conns", nBackends), URLs: urls, Conns: 64,
		Duration: 5 * time.Minute, MaxReqs: nMeetings, Check: okBody("SUCCESS")})
	t.Log(r.String())
	for _, e := range r.ErrorSamples {
		t.Log("  error: " + e)
	}
	if r.Errors > 0 || r.Requests != nMeetings {
		t.Fatalf("%d of %d creates failed or were not sent", r.Errors+nMeetings-r.Requests, nMeetings)
	}
	row(fmt.Sprintf("create %d meetings (64 connections over three peers)", nMeetings),
		fmt.Sprintf("%.0f /s, p50 %s, p99 %s", r.RPS, ms(r.P50), ms(r.P99)))
	c.WaitConverged(60 * time.Second)

	for _, p := range c.Peers {
		row(fmt.Sprintf("resident memory of %s (VmRSS)", p.ID), fmt.Sprintf("%.0f MB", rssMB(t, p.PID())))
	}

	// A snapshot on the leader: time and size.
	leader := c.Leader(10 * time.Second)
	t0 := time.Now()
	if err := c.API(leader, "POST", "/api/v1/snapshot", nil, nil); err != nil {
		t.Fatal(err)
	}
	row("snapshot on the leader (write and fsync)", ms(time.Since(t0)))
	row("snapshot size", fmt.Sprintf("%.1f MB", newestSnapshotMB(t, leader.DataDir)))

	// A fourth peer joins empty and catches up to everything committed
	// before it started (the leader sends it the snapshot, then the log).
	target := appliedIndex(t, leader)
	t0 = time.Now()
	p4 := c.AddPeer("p4", false, []string{c.Peers[0].HTTP})
	waitApplied(t, p4, target, 120*time.Second)
	row("new peer: start to caught up", ms(time.Since(t0)))
	row("resident memory of p4 after catch-up (VmRSS)", fmt.Sprintf("%.0f MB", rssMB(t, p4.PID())))

	// A follower restarts: it restores its own snapshot and replays the log after it.
	var follower *harness.Peer
	for _, p := range c.Peers[:3] {
		if p != leader {
			follower = p
			break
		}
	}
	if err := c.API(follower, "POST", "/api/v1/snapshot", nil, nil); err != nil {
		t.Fatal(err)
	}
	follower.Stop()
	target = appliedIndex(t, leader)
	t0 = time.Now()
	follower.Start()
	waitApplied(t, follower, target, 120*time.Second)
	row("restarted peer: start to caught up (restores its own snapshot, replays the log after it)", ms(time.Since(t0)))

	out := fmt.Sprintf("\nScale: %d backends, %d meetings, three peers on this machine.\n\n| what | measured |\n|---|---|\n%s\n",
		nBackends, nMeetings, strings.Join(rows, "\n"))
	fmt.Print(out)
	appendBenchOut(t, out)
}

func rssMB(t *testing.T, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

func newestSnapshotMB(t *testing.T, dataDir string) float64 {
	paths, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*", "state.bin"))
	var newest os.FileInfo
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && (newest == nil || fi.ModTime().After(newest.ModTime())) {
			newest = fi
		}
	}
	if newest == nil {
		t.Fatalf("no snapshot in %s", dataDir)
	}
	return float64(newest.Size()) / 1e6
}

func appliedIndex(t *testing.T, p *harness.Peer) uint64 {
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st.AppliedIndex
}

func waitApplied(t *testing.T, p *harness.Peer, target uint64, timeout time.Duration) {
	t.Helper()
	testwait.Eventually(t, timeout, func() error {
		st, err := p.Status()
		if err != nil {
			return err
		}
		if st.AppliedIndex < target {
			return fmt.Errorf("%s has applied %d, not yet %d", p.ID, st.AppliedIndex, target)
		}
		return nil
	})
}
