//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

// metricSum adds up a metric's samples (every label set) on a peer.
func metricSum(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			v, _ := strconv.ParseFloat(rest[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// leaderChanges sums the leadership changes every peer has seen.
func leaderChanges(t *testing.T, c *harness.Cluster) float64 {
	n := 0.0
	for _, p := range c.Peers {
		n += metricSum(t, p.HTTP, "conclave_raft_leader_changes_total")
	}
	return n
}

// TestOverload floods the leader with joins, more than it serves, while
// creates run at a modest rate through the other peers: the leader must
// keep its leadership, creates stay fast, and the excess is shed at once.
func TestOverload(t *testing.T) {
	dur := envDuration("BENCH_OVERLOAD_DURATION", 60*time.Second)
	// Peers talk over mutual TLS, as in production: their calls (a
	// follower's forwarded create) reach the leader on connections of
	// their own, which client pacing never holds.
	env := []string{"CONCLAVE_LOG_LEVEL=info"}
	if v := os.Getenv("BENCH_CLIENT_CPU"); v != "" {
		env = append(env, "CONCLAVE_CLIENT_CPU="+v)
	}
	c := harness.StartClusterTLS(t, 3, env...)
	register(t, c, startNodes(t, c, 0, 4))
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "bench", Secret: feSecret}, nil); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(10 * time.Second)
	var followers []*harness.Peer
	for _, p := range c.Peers {
		if p != leader {
			followers = append(followers, p)
		}
	}
	client := func(p *harness.Peer) harness.BBBClient {
		return harness.BBBClient{Base: "http://" + p.HTTP + "/bigbluebutton/api", Secret: feSecret}
	}
	const rooms = 200
	var joins []string
	for i := 0; i < rooms; i++ {
		if a := client(leader).Get(t, "create", fmt.Sprintf("meetingID=room%d&moderatorPW=mp&attendeePW=ap", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
		joins = append(joins, client(leader).URL("join", fmt.Sprintf("fullName=U%d&meetingID=room%d&password=ap", i, i)))
	}
	// A generator sharing the machine's two cores cannot offer twice what
	// a peer with those cores serves: the leader gets a share of one core
	// (a cgroup CPU quota), so that twice its capacity can be sent.
	// BENCH_LEADER_CPU=0 leaves it the whole machine (the flood is then as
	// fast as the generator goes: a saturated machine).
	limit, limited := "none: the whole machine", false
	if share := envFloat("BENCH_LEADER_CPU", 0.25); share > 0 {
		if undo, err := cpuQuota(leader.PID(), share); err == nil {
			t.Cleanup(undo)
			limit, limited = fmt.Sprintf("%.0f %% of one core (cgroup CPU quota)", share*100), true
		} else {
			limit = "none (no writable cgroup)"
			t.Logf("leader not limited: %v", err)
		}
	}
	// The leader's capacity for joins, closed loop.
	capacity := Run(Load{Name: "join capacity, leader", URLs: joins, Cycle: true, Conns: 64, Duration: 3 * time.Second, MaxReqs: 1_000_000, Check: redirect})
	t.Log(capacity.String())

	changes0 := leaderChanges(t, c)
	term0 := mustStatus(t, leader).Term
	shed0 := metricSum(t, leader.HTTP, "conclave_requests_shed_total")
	paced0 := metricSum(t, leader.HTTP, "conclave_client_paced_total")
	cpu0, cpuAt0 := metricSum(t, leader.HTTP, "process_cpu_seconds_total"), time.Now()
	pacedWait0 := metricSum(t, leader.HTTP, "conclave_client_paced_seconds_total")
	creates := make([]string, int(20*dur.Seconds()))
	for i := range creates {
		creates[i] = client(followers[i%len(followers)]).URL("create", fmt.Sprintf("meetingID=ov%d&moderatorPW=mp&attendeePW=ap", i))
	}
	if path := os.Getenv("BENCH_PROFILE_OVERLOAD"); path != "" { // the leader's CPU profile during the flood
		go profile(leader.HTTP, 10, path)
	}
	// BENCH_FLOOD_FACTOR sets the flood against the capacity (2: the
	// issue's overload; lower values show the set-up's own floor), or
	// BENCH_FLOOD_RATE in requests/s (twice the capacity measured with
	// pacing off, since pacing lowers the capacity measured here).
	factor := envFloat("BENCH_FLOOD_FACTOR", 2)
	var flood, writes Result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rate, what := factor*capacity.RPS, fmt.Sprintf("%g× its capacity", factor)
		if fixed := envFloat("BENCH_FLOOD_RATE", 0); fixed > 0 {
			rate, what = fixed, "BENCH_FLOOD_RATE"
		}
		l := Load{Name: fmt.Sprintf("join flood on the leader at %.0f req/s (%s), %d conns", rate, what, floodConns),
			URLs: joins, Cycle: true, Conns: floodConns, Rate: rate, Duration: dur, MaxReqs: 50_000_000, Check: redirect, CountShed: true}
		if !limited { // twice the capacity is more than the generator can send: flat out
			l.Name, l.Rate = fmt.Sprintf("join flood on the leader, %d conns as fast as they go", floodConns), 0
		}
		flood = Run(l)
	}()
	go func() {
		defer wg.Done()
		writes = Run(Load{Name: "creates through the followers, 20 req/s", URLs: creates, Conns: 8, Rate: 20, Duration: dur, MaxReqs: len(creates), Check: okBody("SUCCESS")})
	}()
	wg.Wait()
	changes := leaderChanges(t, c) - changes0
	st := mustStatus(t, leader)
	shed := metricSum(t, leader.HTTP, "conclave_requests_shed_total") - shed0
	paced := metricSum(t, leader.HTTP, "conclave_client_paced_total") - paced0
	cpuUse := (metricSum(t, leader.HTTP, "process_cpu_seconds_total") - cpu0) / time.Since(cpuAt0).Seconds()
	pacedWait := metricSum(t, leader.HTTP, "conclave_client_paced_seconds_total") - pacedWait0

	var out strings.Builder
	fmt.Fprintf(&out, "\nOverload (%d cores, everything on this machine, %s, %s): the leader limited to %s; its join capacity %.0f req/s closed loop.\n\n",
		runtime.NumCPU(), dur, time.Now().UTC().Format("2006-01-02"), limit, capacity.RPS)
	out.WriteString("| load | served | errors | served req/s | p50 | p99 | p99.9 | shed (503) | shed p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range []Result{flood, writes} {
		fmt.Fprintf(&out, "| %s | %d | %d | %.0f | %s | %s | %s | %d | %s |\n", r.Name, r.Requests, r.Errors, r.RPS,
			ms(r.P50), ms(r.P99), ms(r.P999), r.Shed, ms(r.ShedP99))
	}
	fmt.Fprintf(&out, "\nLeader changes seen by the peers during the flood: %.0f (term %d → %d, leader still %s: %v); the leader counted %.0f shed requests.\n",
		changes, term0, st.Term, leader.ID, st.State == "Leader", shed)
	fmt.Fprintf(&out, "The leader used %.1f %% of one core.\n", 100*cpuUse)
	if paced > 0 {
		fmt.Fprintf(&out, "The leader paced %.0f client reads (held unread %.1f ms on average).\n", paced, 1000*pacedWait/paced)
	}
	for _, e := range append(flood.ErrorSamples, writes.ErrorSamples...) {
		t.Log("  error: " + e)
	}
	fmt.Print(out.String())
	appendBenchOut(t, out.String())
}

func mustStatus(t *testing.T, p *harness.Peer) harness.Status {
	t.Helper()
	st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nodeGetMeetings sums the getMeetings calls the fake nodes answered.
func nodeGetMeetings(t *testing.T, nodes []node) int {
	t.Helper()
	total := 0
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.host + fakebbb.RequestsPath)
		if err != nil {
			t.Fatal(err)
		}
		var counts map[string]int
		err = json.NewDecoder(resp.Body).Decode(&counts)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		total += counts["getMeetings"]
	}
	return total
}

// TestGetMeetingsNodeLoad measures getMeetings through one peer with 200
// and 2 000 meetings over 10 nodes, and what it costs the nodes: their
// getMeetings calls per client call (the leader's prober lists each node
// every 2 s on its own; that is counted too).
func TestGetMeetingsNodeLoad(t *testing.T) {
	dur := envDuration("BENCH_DURATION", 8*time.Second)
	c := harness.StartCluster(t, 3, "CONCLAVE_LOG_LEVEL=info")
	nodes := startNodes(t, c, 0, 10)
	register(t, c, nodes)
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "gm", Secret: feSecret}, nil); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(10 * time.Second)
	via := c.Peers[0]
	if via == leader {
		via = c.Peers[1]
	}
	cl := harness.BBBClient{Base: "http://" + via.HTTP + "/bigbluebutton/api", Secret: feSecret}
	var out strings.Builder
	fmt.Fprintf(&out, "\ngetMeetings through one follower, 10 fake nodes, 32 conns (as in the side-by-side with b3scale), %s per run (%d cores, %s).\n\n"+
		"| meetings | requests | errors | req/s | p50 | p99 | node getMeetings calls | per client call |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
		dur, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	made := 0
	for _, total := range []int{200, 2000} {
		creates := make([]string, 0, total-made)
		for ; made < total; made++ {
			creates = append(creates, cl.URL("create", fmt.Sprintf("meetingID=gm%d&moderatorPW=mp", made)))
		}
		if r := Run(Load{Name: "creates", URLs: creates, Conns: 16, Duration: time.Minute, MaxReqs: len(creates), Check: okBody("SUCCESS")}); r.Errors > 0 {
			t.Fatalf("creating %d meetings: %d errors, e.g. %v", total, r.Errors, r.ErrorSamples)
		}
		if a := cl.Get(t, "getMeetings", ""); strings.Count(a.Raw, "<meeting>") != total {
			t.Fatalf("getMeetings lists %d meetings, want %d", strings.Count(a.Raw, "<meeting>"), total)
		}
		if path := os.Getenv("BENCH_PROFILE_GETMEETINGS"); path != "" && total == 200 {
			go profile(via.HTTP, 5, path) // the follower's CPU profile during the run
		}
		before := nodeGetMeetings(t, nodes)
		r := Run(Load{Name: fmt.Sprintf("getMeetings, %d meetings", total), URLs: []string{cl.URL("getMeetings", "")}, Cycle: true,
			Conns: 32, Duration: dur, MaxReqs: 10_000_000, Check: okBody("SUCCESS")})
		calls := nodeGetMeetings(t, nodes) - before
		t.Log(r.String())
		fmt.Fprintf(&out, "| %d | %d | %d | %.0f | %s | %s | %d | %.4f |\n", total, r.Requests, r.Errors, r.RPS, ms(r.P50), ms(r.P99),
			calls, float64(calls)/float64(max(1, r.Requests)))
	}
	fmt.Print(out.String())
	appendBenchOut(t, out.String())
}

// profile writes a peer's CPU profile over the next seconds to path.
func profile(httpAddr string, seconds int, path string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, seconds))
	if err != nil {
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	os.WriteFile(path, data, 0o644)
}

var floodConns = envInt("BENCH_FLOOD_CONNS", 512)

// cpuQuota limits a process to share of one core with a cgroup (v1 cpu
// controller, as on this machine), and returns how to undo it.
func cpuQuota(pid int, share float64) (func(), error) {
	const root = "/sys/fs/cgroup/cpu"
	dir := filepath.Join(root, fmt.Sprintf("conclave-bench-%d", pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	write := func(file, v string) error { return os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644) }
	undo := func() {
		_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		_ = os.Remove(dir)
	}
	// A short period (10 ms) spreads the share evenly: with the default
	// 100 ms, a quarter core runs 25 ms and then freezes 75 ms, which is
	// not how a busy machine behaves.
	for _, kv := range [][2]string{{"cpu.cfs_period_us", "10000"}, {"cpu.cfs_quota_us", strconv.Itoa(int(share * 10000))},
		{"cgroup.procs", strconv.Itoa(pid)}} {
		if err := write(kv[0], kv[1]); err != nil {
			undo()
			return nil, err
		}
	}
	return undo, nil
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v >= 0 {
		return v
	}
	return def
}
