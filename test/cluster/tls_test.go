package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/test/harness"
)

// createAndJoinEverywhere creates meetings on each peer and joins each on
// the next peer (read-your-writes across peers, forwarded claims).
func createAndJoinEverywhere(t *testing.T, c *bbbCluster, tag string) {
	t.Helper()
	for i, creator := range c.Peers {
		joiner := c.Peers[(i+1)%len(c.Peers)]
		mid := fmt.Sprintf("%s-%d", tag, i)
		if a := c.create(t, creator, mid); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create %s on %s: %s", mid, creator.ID, a.Raw)
		}
		if host := c.joinHost(t, joiner, mid); host == "" {
			t.Fatalf("join %s on %s right after its create on %s: no redirect", mid, joiner.ID, creator.ID)
		}
	}
}

// TestClusterOverMutualTLS: three conclaved processes with --tls-ca,
// --tls-cert and --tls-key join each other, serve creates and joins
// through every peer (claims are forwarded to the leader over TLS), refuse
// peer calls in plain HTTP, and survive a rolling restart in which every
// peer gets a new certificate from the same CA, staying one cluster.
func TestClusterOverMutualTLS(t *testing.T) {
	c := withBBB(t, harness.StartClusterTLS(t, 3), 2)
	for _, p := range c.Peers {
		if !strings.Contains(p.Log(), "peer TLS on") {
			t.Fatalf("%s does not say TLS is on:\n%s", p.ID, p.Log())
		}
		if strings.Contains(p.Log(), "PRIVATE KEY") {
			t.Fatalf("%s logs key material", p.ID)
		}
		resp, err := http.Post("http://"+p.HTTP+"/api/v1/internal/status", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: internal call in plain HTTP answered %d, want 403", p.ID, resp.StatusCode)
		}
	}
	createAndJoinEverywhere(t, c, "before")

	for round, p := range c.Peers {
		old := p.CertName()
		p.Stop()
		// The others keep serving while it is away.
		for _, q := range c.Peers {
			if q.Running() {
				harness.Eventually(t, 15*time.Second, func() error {
					a, err := c.client(q).TryGet("create", fmt.Sprintf("meetingID=away-%d-%s&moderatorPW=mp&attendeePW=ap", round, q.ID))
					if err != nil || a.ReturnCode != "SUCCESS" {
						return fmt.Errorf("create on %s while %s is away: %v %s", q.ID, p.ID, err, a.Raw)
					}
					return nil
				})
			}
		}
		p.ReplaceCert()
		p.Start()
		if !strings.Contains(p.Log(), `"subject":"`+p.CertName()+`"`) || p.CertName() == old {
			t.Fatalf("%s did not restart with its new certificate %s", p.ID, p.CertName())
		}
		c.WaitMembers(3, 30*time.Second)
	}
	c.WaitConverged(20 * time.Second)
	createAndJoinEverywhere(t, c, "after")

	var peers []harness.PeerInfo
	if err := c.API(c.Peers[0], "GET", "/api/v1/peers", nil, &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Fatalf("after the rolling certificate change: %+v", peers)
	}
}
