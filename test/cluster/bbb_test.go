package cluster

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

// bbbCluster is a three-peer cluster with fake BBB nodes registered,
// enabled and seen ready by the leader's prober, and one frontend.
type bbbCluster struct {
	*harness.Cluster
	nodes   []*fakebbb.Server
	secrets []string
	hosts   []string
}

const frontendSecret = "moodle-secret"

func startBBBCluster(t *testing.T, nodes int, env ...string) *bbbCluster {
	return withBBB(t, harness.StartCluster(t, 3, env...), nodes)
}

// withBBB registers and enables fake BBB nodes and a frontend on a
// running cluster.
func withBBB(t *testing.T, hc *harness.Cluster, nodes int) *bbbCluster {
	c := &bbbCluster{Cluster: hc}
	for i := 0; i < nodes; i++ {
		secret := fmt.Sprintf("node%d-secret", i)
		n, api, host := fakebbb.StartTest(t, secret)
		c.nodes, c.secrets, c.hosts = append(c.nodes, n), append(c.secrets, secret), append(c.hosts, host)
		p := c.Peers[i%3]
		if err := c.API(p, "POST", "/api/v1/backends", adminapi.AddBackendRequest{URL: api, Secret: secret}, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.API(p, "POST", "/api/v1/backends/"+url.PathEscape(host)+"/enable", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "moodle", Secret: frontendSecret}, nil); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		var bs []adminapi.Backend
		for _, p := range c.Peers { // the new frontend has reached every replica
			if err := c.API(p, "GET", "/api/v1/frontends/moodle", nil, nil); err != nil {
				return err
			}
		}
		if err := c.API(c.Peers[2], "GET", "/api/v1/backends", nil, &bs); err != nil {
			return err
		}
		for _, b := range bs {
			if b.NodeState != "ready" {
				return fmt.Errorf("backend %s not ready yet: NodeState %s", b.URL, b.NodeState)
			}
		}
		return nil
	})
	return c
}

func (c *bbbCluster) client(p *harness.Peer) harness.BBBClient {
	return harness.BBBClient{Base: "http://" + p.HTTP + "/bigbluebutton/api", Secret: frontendSecret}
}

// TestCreateOnOnePeerJoinOnAnother: read-your-writes across peers. Each
// join goes to a different peer right after the create returned.
func TestCreateOnOnePeerJoinOnAnother(t *testing.T) {
	c := startBBBCluster(t, 2)
	for i := 0; i < 30; i++ {
		creator, joiner := c.Peers[i%3], c.Peers[(i+1)%3]
		mid := fmt.Sprintf("class-%d", i)
		if a := c.client(creator).Get(t, "create", "meetingID="+mid+"&name=Class&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create on %s: %s", creator.ID, a.Raw)
		}
		resp, err := harness.NoRedirect.Get(c.client(joiner).URL("join", "meetingID="+mid+"&fullName=Ann&password=ap"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != 302 || loc == nil {
			t.Fatalf("join of %s on %s right after create on %s: HTTP %d", mid, joiner.ID, creator.ID, resp.StatusCode)
		}
		node := -1
		for j, n := range c.nodes {
			for _, id := range n.MeetingIDs() {
				if id == "moodle~"+mid {
					node = j
				}
			}
		}
		if node < 0 || loc.Host != c.hosts[node] {
			t.Fatalf("join sent to %s, meeting runs on node %d", loc.Host, node)
		}
		if !bbb.Verify("join", loc.RawQuery, c.secrets[node]) {
			t.Fatalf("join URL not signed with node %d's secret", node)
		}
	}
}

// TestConcurrentCreatesPlaceOnce: 24 creates of one meeting, spread over
// the three peers at once, all succeed and the meeting runs on one node.
func TestConcurrentCreatesPlaceOnce(t *testing.T) {
	c := startBBBCluster(t, 2)
	for round := 0; round < 3; round++ {
		mid := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		errs := make(chan string, 24)
		for i := 0; i < 24; i++ {
			wg.Add(1)
			go func(p *harness.Peer) {
				defer wg.Done()
				a, err := c.client(p).TryGet("create", "meetingID="+mid+"&name=Race&moderatorPW=mp&attendeePW=ap")
				if err != nil || a.ReturnCode != "SUCCESS" {
					errs <- fmt.Sprintf("%s: %v %s", p.ID, err, a.Raw)
				}
			}(c.Peers[i%3])
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
		holders := 0
		for _, n := range c.nodes {
			for _, id := range n.MeetingIDs() {
				if strings.HasSuffix(id, "~"+mid) {
					holders++
				}
			}
		}
		if holders != 1 {
			t.Fatalf("round %d: meeting exists on %d backends", round, holders)
		}
	}
}
