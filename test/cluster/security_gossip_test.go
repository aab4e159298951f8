package cluster

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/test/harness"
)

// Replays of issue 13's holes against the real binaries: forged gossip
// load (3) and the callback relay (4).

const secJWT = "jwt-secret-for-security-replays"

var secGossipKey = []byte("0123456789abcdef0123456789abcdef")

func startSecuredBBBCluster(t *testing.T, nodes int) *bbbCluster {
	admin, _ := auth.Mint(secJWT, "t", []string{auth.ScopeAdmin}, time.Hour)
	return startBBBCluster(t, nodes, "CONCLAVE_API_JWT_SECRET="+secJWT, "CONCLAVE_TEST_TOKEN="+admin,
		"CONCLAVE_GOSSIP_KEY="+base64.StdEncoding.EncodeToString(secGossipKey))
}

// joinsAnswered checks every peer still creates and joins.
func joinsAnswered(t *testing.T, c *bbbCluster, tag string) {
	t.Helper()
	for i, p := range c.Peers {
		mid := fmt.Sprintf("after-%s-%d", tag, i)
		if a := c.client(p).Get(t, "create", "meetingID="+mid+"&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
			t.Fatalf("peer %s after %s: create: %s", p.ID, tag, a.Raw)
		}
		resp, err := harness.NoRedirect.Get(c.client(p).URL("join", "meetingID="+mid+"&fullName=U&password=mp"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("peer %s after %s: join answered %d", p.ID, tag, resp.StatusCode)
		}
	}
}

// TestForgedGossipLoadIgnored: a member holding the gossip key (it is on
// every BBB server) advertises a real backend's URL with 1 000 000
// attendees, unsigned and with a made-up signature. Placement does not
// believe it, every peer counts the rejected reports, and says so in its log.
func TestForgedGossipLoadIgnored(t *testing.T) {
	c := startSecuredBBBCluster(t, 2)
	victim := "http://" + c.hosts[0] + "/bigbluebutton/api/"
	var joins []string
	for _, p := range c.Peers {
		joins = append(joins, p.Gossip)
	}
	forged := discovery.Meta{Role: discovery.RoleAgent, APIURL: victim, Meetings: 1000, Attendees: 1_000_000, BBBUp: true, LoadFactor: 1}
	start := func(name string) *discovery.Node {
		n, err := discovery.Start(discovery.Config{Name: name, BindAddr: harness.FreeAddr(t), SecretKey: secGossipKey,
			Join: joins, Meta: forged, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	unsigned := start("evil-unsigned")
	badSig := start("evil-badsig")
	// A MAC made up (and one under a key derived from another secret).
	badSig.SetLoadKey(auth.AgentLoadKey("not-the-cluster-secret", strings.TrimPrefix(strings.TrimSuffix(victim, "/bigbluebutton/api/"), "http://")))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // keep reporting, as an agent would
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			unsigned.UpdateMeta(forged)
			badSig.UpdateMeta(forged)
		}
	}()
	defer func() { close(stop); <-done }()

	harness.Eventually(t, 15*time.Second, func() error {
		for _, p := range c.Peers {
			m := scrape(t, p)
			u, _ := metricValue(m, `conclave_gossip_reports_rejected_total{reason="unsigned"}`)
			s, _ := metricValue(m, `conclave_gossip_reports_rejected_total{reason="bad_signature"}`)
			if u < 1 || s < 1 {
				return fmt.Errorf("peer %s: rejected unsigned %v, bad_signature %v", p.ID, u, s)
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second) // past the prober's load commit (2 s)

	// The state does not carry the forged figures ...
	b, ok := backendByHost(t, c.Cluster, c.hosts[0])
	if !ok {
		t.Fatal("victim backend gone")
	}
	var raw []map[string]any
	if err := c.API(c.Peers[0], "GET", "/api/v1/backends", nil, &raw); err != nil {
		t.Fatal(err)
	}
	for _, x := range raw {
		if a, _ := x["attendees"].(float64); a >= 1000 {
			t.Fatalf("forged load reached the state: %v", x)
		}
	}
	// ... and placement still sends new meetings to the victim.
	before := c.nodes[0].MeetingCount()
	for i := 0; i < 6; i++ {
		if a := c.client(c.Peers[i%3]).Get(t, "create", fmt.Sprintf("meetingID=forged-%d&moderatorPW=mp", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
	}
	if got := c.nodes[0].MeetingCount() - before; got == 0 {
		t.Fatalf("placement believed the forged load: backend %s got none of 6 meetings", b.ID)
	}
	for _, p := range c.Peers {
		if !strings.Contains(p.Log(), "gossip load report rejected") {
			t.Errorf("peer %s did not log the rejected reports", p.ID)
		}
	}
	joinsAnswered(t, c, "forged-gossip")
}
