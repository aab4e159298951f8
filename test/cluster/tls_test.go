package cluster

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/pki"
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
// peer calls in plain HTTP, keep out peers with another CA's certificate
// or none, and survive a rolling restart in which every
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
	intrudersCannotJoin(t, c.Cluster)

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

// intrudersCannotJoin starts a conclaved with a certificate from another CA,
// and one without TLS, each asking p1 to let it join: neither becomes a
// member, and each says why in its log.
func intrudersCannotJoin(t *testing.T, c *harness.Cluster) {
	t.Helper()
	otherDir := filepath.Join(t.TempDir(), "other-ca")
	if _, _, err := pki.WriteCA(otherDir, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.WriteCert(otherDir, "intruder", nil, 1); err != nil {
		t.Fatal(err)
	}
	foreignTLS := []string{"--tls-ca", filepath.Join(otherDir, pki.CAFile),
		"--tls-cert", filepath.Join(otherDir, "intruder.pem"), "--tls-key", filepath.Join(otherDir, "intruder-key.pem")}
	for _, tc := range []struct {
		name string
		args []string
		why  string // in the intruder's log line about its failed join
	}{
		{"another CA's certificate", foreignTLS, "not from the cluster CA"},
		{"no TLS", nil, "need mutual TLS"},
	} {
		logPath := filepath.Join(t.TempDir(), "intruder.log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"--id", "intruder", "--data-dir", t.TempDir(), "--listen-http", harness.FreeAddr(t),
			"--raft-addr", harness.FreeAddr(t), "--gossip-addr", harness.FreeAddr(t), "--join", c.Peers[0].HTTP}, tc.args...)
		cmd := exec.Command(c.Bins.Conclaved, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 15*time.Second, func() error {
			b, _ := os.ReadFile(logPath)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "join attempt failed") && strings.Contains(line, tc.why) {
					return nil
				}
			}
			return fmt.Errorf("%s: no join refused for %q in its log yet:\n%s", tc.name, tc.why, b)
		})
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		var peers []harness.PeerInfo
		if err := c.API(c.Peers[0], "GET", "/api/v1/peers", nil, &peers); err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.ID == "intruder" {
				t.Fatalf("%s: the intruder became a member: %+v", tc.name, peers)
			}
		}
		if len(peers) != 3 {
			t.Fatalf("%s: %d members", tc.name, len(peers))
		}
	}
}
