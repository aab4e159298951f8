package cluster

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/test/harness"
)

func scrape(t *testing.T, p *harness.Peer) string {
	t.Helper()
	resp, err := http.Get("http://" + p.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue reads one sample, e.g. `conclave_raft_leader_changes_total`.
func metricValue(metrics, series string) (float64, bool) {
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(metrics)
	if m == nil {
		return 0, false
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v, true
}

// TestMetricsMoveAndSecretsStayHidden drives BBB calls, kills a node and
// forces a leader change, checks /metrics shows all three, then greps every
// log and metrics page for every secret.
func TestMetricsMoveAndSecretsStayHidden(t *testing.T) {
	const jwtSecret = "jwt-secret-9f8e7d6c5b4a"
	token, _ := auth.Mint(jwtSecret, "test", []string{auth.ScopeAdmin}, time.Hour)
	c := startBBBCluster(t, 2, "CONCLAVE_API_JWT_SECRET="+jwtSecret, "CONCLAVE_TEST_TOKEN="+token)

	// Without a token the admin API answers 401.
	if err := harness.APIWithToken(c.Peers[0].HTTP, "", "GET", "/api/v1/backends", nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("admin API without a token: %v", err)
	}
	// An agent token may not add a frontend.
	agentTok, _ := auth.Mint(jwtSecret, "node9.local", []string{auth.ScopeAgent}, time.Hour)
	err := harness.APIWithToken(c.Peers[1].HTTP, agentTok, "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "evil", Secret: "x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("agent token adding a frontend: %v", err)
	}
	// With the secret in its environment, conclavectl mints an admin token
	// and every command works.
	for _, args := range [][]string{
		{"show", "peers"}, {"show", "backends"}, {"show", "frontends"}, {"show", "meetings"},
		{"add", "frontend", "extra", "--secret", "extra-secret"},
		{"set", "frontend", "-j", `{"required_tags":["x"]}`, "extra"},
		{"delete", "frontend", "extra"},
		{"disable", "backend", c.hosts[0]}, {"enable", "backend", c.hosts[0]},
		{"set", "backend", "-j", `{"load_factor":1.5}`, c.hosts[0]},
		{"show", "backend", c.hosts[0]},
		{"token", "--ttl", "1m"},
	} {
		if _, err := c.Ctl(c.Peers[2], args...); err != nil {
			t.Fatalf("with an admin token: %v", err)
		}
	}
	cl := c.client(c.Peers[0])
	for i := 0; i < 5; i++ {
		if a := cl.Get(t, "create", fmt.Sprintf("meetingID=obs%d&moderatorPW=mp", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
		cl.Get(t, "getMeetingInfo", fmt.Sprintf("meetingID=obs%d", i))
	}
	bad := cl
	bad.Secret = "wrong"
	bad.Get(t, "getMeetings", "")

	m := scrape(t, c.Peers[0])
	for _, series := range []string{
		`conclave_bbb_requests_total{call="create",frontend="moodle",result="success"}`,
		`conclave_bbb_requests_total{call="getMeetingInfo",frontend="moodle",result="success"}`,
		`conclave_bbb_requests_total{call="getMeetings",frontend="",result="checksumError"}`,
		`conclave_bbb_request_duration_seconds_count{call="create"}`,
	} {
		if v, ok := metricValue(m, series); !ok || v < 1 {
			t.Fatalf("metric %s missing or zero", series)
		}
	}
	// Every peer writes the creates to its log store, each write holding at
	// least one entry.
	writes, _ := metricValue(m, "conclave_raft_log_writes_total")
	entries, _ := metricValue(m, "conclave_raft_log_entries_total")
	if writes < 1 || entries < writes || entries < 5 {
		t.Fatalf("log store counters: %v writes, %v entries (5 creates and the setup before them)", writes, entries)
	}
	// Every metric the Grafana dashboard queries exists.
	dash, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`conclave_[a-z_]+`).FindAllString(string(dash), -1) {
		base := strings.TrimSuffix(name, "_bucket")
		if !strings.Contains(m, "\n"+base) && !strings.Contains(m, "# TYPE "+base+" ") {
			t.Errorf("dashboard uses %s, which /metrics does not have", name)
		}
	}
	if v, _ := metricValue(m, `conclave_bbb_requests_total{call="create",frontend="moodle",result="success"}`); v != 5 {
		t.Fatalf("create counter %v, want 5", v)
	}

	// The three peers find each other's gossip through the peer table.
	harness.Eventually(t, 15*time.Second, func() error {
		if v, _ := metricValue(scrape(t, c.Peers[2]), "conclave_gossip_members"); v != 3 {
			return fmt.Errorf("gossip members %v, want 3", v)
		}
		return nil
	})

	// Kill a node: its NodeState gauge moves to error.
	var backends []adminapi.Backend
	if err := c.API(c.Peers[0], "GET", "/api/v1/backends", nil, &backends); err != nil {
		t.Fatal(err)
	}
	victim := backends[0]
	for i, h := range c.hosts {
		if strings.Contains(victim.URL, h) {
			c.nodes[i].Close()
		}
	}
	harness.Eventually(t, 10*time.Second, func() error {
		v, _ := metricValue(scrape(t, c.Peers[2]), `conclave_backend_node_state{backend="`+victim.ID+`",state="error"}`)
		if v != 1 {
			return fmt.Errorf("NodeState gauge of %s not error yet", victim.ID)
		}
		return nil
	})

	// A leader change shows in the Raft metrics of the survivors.
	leader := c.Leader(10 * time.Second)
	other := followers(c.Cluster, leader)[0]
	before, _ := metricValue(scrape(t, other), "conclave_raft_leader_changes_total")
	leader.Stop()
	harness.Eventually(t, 15*time.Second, func() error {
		m := scrape(t, other)
		after, _ := metricValue(m, "conclave_raft_leader_changes_total")
		if after <= before {
			return fmt.Errorf("leader changes %v -> %v", before, after)
		}
		if _, ok := metricValue(m, `conclave_raft_state{state="Leader"}`); !ok {
			return fmt.Errorf("no raft state gauge")
		}
		return nil
	})
	leader.Start()

	// Secrets never appear in logs or metrics.
	secrets := append([]string{jwtSecret, frontendSecret, "extra-secret"}, c.secrets...)
	for _, p := range c.Peers {
		texts := map[string]string{"log": p.Log()}
		if p.Running() {
			texts["metrics"] = scrape(t, p)
		}
		for what, text := range texts {
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Fatalf("secret %q… appears in %s's %s", s[:4], p.ID, what)
				}
			}
		}
	}
}
