package cluster

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

type fakeNode struct {
	srv         *fakebbb.Server
	api, secret string
	host, props string
}

func newFakeNode(t *testing.T, dir, name string) *fakeNode {
	return newFakeNodeWith(t, dir, name, fakebbb.Config{})
}

// newFakeNodeWith is newFakeNode for a node set up by cfg (its secret is
// the node's own).
func newFakeNodeWith(t *testing.T, dir, name string, cfg fakebbb.Config) *fakeNode {
	secret := name + "-secret"
	cfg.Secret = secret
	s, api, host := fakebbb.StartTestWith(t, cfg)
	props := filepath.Join(dir, name+".properties")
	body := "# bbb-web\nbigbluebutton.web.serverURL=http://" + host + "\nsecuritySalt=" + secret + "\n"
	if err := os.WriteFile(props, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return &fakeNode{srv: s, api: api, secret: secret, host: host, props: props}
}

// startAgent runs conclave-agent beside node, joining the peers' gossip.
func startAgent(t *testing.T, c *harness.Cluster, n *fakeNode, env ...string) *exec.Cmd {
	var joins []string
	for _, p := range c.Peers {
		joins = append(joins, p.Gossip)
	}
	logf, _ := os.Create(filepath.Join(c.Dir, "agent-"+strings.ReplaceAll(n.host, ":", "_")+".log"))
	cmd := exec.Command(c.Bins.Agent, "-a", "--join", strings.Join(joins, ","), "--gossip-addr", harness.FreeAddr(t), "--poll", "500ms")
	cmd.Env = append(append(os.Environ(), "BBB_CONFIG="+n.props, "CONCLAVE_LOG_LEVEL=debug"), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	return cmd
}

func backendByHost(t *testing.T, c *harness.Cluster, host string) (adminapi.Backend, bool) {
	var bs []adminapi.Backend
	if err := c.API(c.Peers[0], "GET", "/api/v1/backends", nil, &bs); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if strings.Contains(b.URL, "//"+host+"/") {
			return b, true
		}
	}
	return adminapi.Backend{}, false
}

// within waits (testwait) until ok holds, checking every 50 ms, and
// returns how long it took.
func within(t *testing.T, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testwait.EventuallyEvery(t, d, 50*time.Millisecond, func() error {
		if !ok() {
			return fmt.Errorf("%s: not yet", what)
		}
		return nil
	})
	return time.Since(start)
}

func TestAgentsRegisterReportLoadAndFail(t *testing.T) {
	c := harness.StartCluster(t, 3)
	dir := t.TempDir()
	a, b := newFakeNode(t, dir, "nodea"), newFakeNode(t, dir, "nodeb")
	agentA := startAgent(t, c, a)
	startAgent(t, c, b)

	// 1. Registered (AdminState init) within 5 s; enable makes it placeable.
	took := within(t, 5*time.Second, "agent registration", func() bool {
		ba, okA := backendByHost(t, c, a.host)
		_, okB := backendByHost(t, c, b.host)
		return okA && okB && ba.AdminState == "init"
	})
	t.Logf("AGENT: registered %v after start", took.Round(10*time.Millisecond))
	for _, n := range []*fakeNode{a, b} {
		if _, err := c.Ctl(c.Peers[1], "enable", "backend", n.host); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "moodle", Secret: frontendSecret}, nil); err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "both ready", func() bool {
		x, _ := backendByHost(t, c, a.host)
		y, _ := backendByHost(t, c, b.host)
		return x.NodeState == "ready" && y.NodeState == "ready"
	})
	c.WaitConverged(5 * time.Second)

	// 2. Load made directly on node A shows in show backends within 5 s,
	// and new meetings then prefer B.
	direct := harness.BBBClient{Base: strings.TrimSuffix(a.api, "/"), Secret: a.secret}
	for i := 0; i < 3; i++ {
		direct.Get(t, "create", fmt.Sprintf("meetingID=local%d&moderatorPW=mp", i))
		resp, err := harness.NoRedirect.Get(direct.URL("join", fmt.Sprintf("meetingID=local%d&fullName=U&password=mp", i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		land, err := http.Get(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		land.Body.Close()
	}
	took = within(t, 5*time.Second, "MC/AC of node A", func() bool {
		out, err := c.Ctl(c.Peers[2], "show", "backend", a.host)
		return err == nil && strings.Contains(out, "MC/AC/R:     3/3/")
	})
	t.Logf("AGENT: load visible in show backends %v after it was made", took.Round(10*time.Millisecond))
	cl := harness.BBBClient{Base: "http://" + c.Peers[0].HTTP + "/bigbluebutton/api", Secret: frontendSecret}
	for i := 0; i < 4; i++ {
		if ans := cl.Get(t, "create", fmt.Sprintf("meetingID=new%d&moderatorPW=mp", i)); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	if got := b.srv.MeetingCount(); got != 4 {
		t.Fatalf("placement ignored A's load: B got %d of 4 new meetings", got)
	}

	// 3. Agent and node die: NodeState error within the prober's bound.
	agentA.Process.Kill()
	a.srv.Close()
	took = within(t, 6*time.Second, "NodeState error", func() bool {
		x, _ := backendByHost(t, c, a.host)
		return x.NodeState == "error"
	})
	t.Logf("AGENT: node and agent dead -> error after %v", took.Round(10*time.Millisecond))
}

func TestGossipKeyAndTokenGuardRegistration(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	other := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	const jwtSecret = "jwt-secret-for-agents"
	admin, _ := auth.Mint(jwtSecret, "t", []string{auth.ScopeAdmin}, time.Hour)
	c := harness.StartCluster(t, 3, "CONCLAVE_GOSSIP_KEY="+key, "CONCLAVE_API_JWT_SECRET="+jwtSecret, "CONCLAVE_TEST_TOKEN="+admin)
	dir := t.TempDir()
	noKey, wrongKey, badToken, good := newFakeNode(t, dir, "nokey"), newFakeNode(t, dir, "wrongkey"), newFakeNode(t, dir, "badtoken"), newFakeNode(t, dir, "good")
	agentTok := func(n *fakeNode) string {
		tok, _ := auth.Mint(jwtSecret, n.host, []string{auth.ScopeAgent}, time.Hour)
		return tok
	}
	startAgent(t, c, noKey, "CONCLAVE_API_TOKEN="+agentTok(noKey))
	startAgent(t, c, wrongKey, "CONCLAVE_GOSSIP_KEY="+other, "CONCLAVE_API_TOKEN="+agentTok(wrongKey))
	startAgent(t, c, badToken, "CONCLAVE_GOSSIP_KEY="+key, "CONCLAVE_API_TOKEN=not-a-token")
	startAgent(t, c, good, "CONCLAVE_GOSSIP_KEY="+key, "CONCLAVE_API_TOKEN="+agentTok(good))
	within(t, 10*time.Second, "the agent with the key and a token registers", func() bool {
		_, ok := backendByHost(t, c, good.host)
		return ok
	})
	// The others had the same time; for 3 s more none registers.
	testwait.AssertUntilEvery(t, 3*time.Second, 200*time.Millisecond, func() error {
		for _, n := range []*fakeNode{noKey, wrongKey, badToken} {
			if _, ok := backendByHost(t, c, n.host); ok {
				return fmt.Errorf("agent of %s registered without the gossip key or a valid token", n.props)
			}
		}
		return nil
	})
}
