// Package cluster tests the replicated core with real conclaved processes
// on loopback: formation, forwarded writes, crash failover, restart and
// catch-up, snapshots, and membership changes.
package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/test/harness"
)

func addBackend(c *harness.Cluster, p *harness.Peer, i int) (adminapi.Backend, error) {
	var b adminapi.Backend
	err := c.API(p, "POST", "/api/v1/backends", adminapi.AddBackendRequest{URL: backendURL(i), Secret: "s"}, &b)
	return b, err
}

// backendURL is a distinct loopback address per i, on a closed port: the
// leader's prober gets "connection refused" at once and no traffic leaves
// the machine (no DNS either).
func backendURL(i int) string {
	return fmt.Sprintf("http://127.0.%d.%d:9/bigbluebutton/api/", i/250, i%250+1)
}

func backendURLs(t *testing.T, c *harness.Cluster, p *harness.Peer) map[string]bool {
	t.Helper()
	var bs []adminapi.Backend
	if err := c.API(p, "GET", "/api/v1/backends", nil, &bs); err != nil {
		t.Fatalf("list backends on %s: %v", p.ID, err)
	}
	out := map[string]bool{}
	for _, b := range bs {
		out[b.URL] = true
	}
	return out
}

// waitHasAll waits until peer p's local replica holds every URL in want.
func waitHasAll(t *testing.T, c *harness.Cluster, p *harness.Peer, want []string, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		have := backendURLs(t, c, p)
		for _, u := range want {
			if !have[u] {
				return fmt.Errorf("%s lacks %s (has %d backends)", p.ID, u, len(have))
			}
		}
		return nil
	})
}

func followers(c *harness.Cluster, leader *harness.Peer) []*harness.Peer {
	var out []*harness.Peer
	for _, p := range c.Peers {
		if p != leader && p.Running() {
			out = append(out, p)
		}
	}
	return out
}

func TestThreePeersFormCluster(t *testing.T) {
	c := harness.StartCluster(t, 3)
	for _, p := range c.Peers {
		out, err := c.Ctl(p, "show", "peers", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var peers []harness.PeerInfo
		if err := json.Unmarshal([]byte(out), &peers); err != nil {
			t.Fatalf("show peers -o json on %s: %v\n%s", p.ID, err, out)
		}
		ids, leaders := []string{}, 0
		for _, pi := range peers {
			ids = append(ids, pi.ID)
			if pi.Leader {
				leaders++
			}
		}
		if strings.Join(ids, ",") != "p1,p2,p3" || leaders != 1 {
			t.Fatalf("%s sees peers %v with %d leaders", p.ID, ids, leaders)
		}
	}
}

func TestAddBackendOnFollowerReplicates(t *testing.T) {
	c := harness.StartCluster(t, 3)
	f := followers(c, c.Leader(10*time.Second))[0]
	url := backendURL(22)
	if _, err := c.Ctl(f, "add", "backend", url, "--secret", "s3cret"); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Peers {
		waitHasAll(t, c, p, []string{url}, 5*time.Second)
		out, err := c.Ctl(p, "show", "backends")
		if err != nil || !strings.Contains(out, "Host:        "+url) || !strings.Contains(out, "AdminState:  init") {
			t.Fatalf("show backends on %s: %v\n%s", p.ID, err, out)
		}
	}
}

// TestLeaderCrashFailover kills the leader with SIGKILL, measures how long
// until a survivor accepts a write, checks no acknowledged write is lost,
// then restarts the dead peer and checks it catches up.
func TestLeaderCrashFailover(t *testing.T) {
	c := harness.StartCluster(t, 3)
	leader := c.Leader(10 * time.Second)
	var acked []string
	for i := 0; i < 30; i++ {
		p := c.Peers[i%3] // through leader and followers alike
		b, err := addBackend(c, p, i)
		if err != nil {
			t.Fatalf("write %d via %s: %v", i, p.ID, err)
		}
		acked = append(acked, b.URL)
	}

	leader.Kill()
	killed := time.Now()
	survivor := followers(c, leader)[0]
	b, err := addBackend(c, survivor, 100) // blocks through the election
	if err != nil {
		t.Fatalf("no write accepted after the leader died: %v", err)
	}
	failover := time.Since(killed)
	t.Logf("FAILOVER: first write accepted %v after kill -9 of the leader", failover.Round(time.Millisecond))
	if failover > 15*time.Second {
		t.Fatalf("failover took %v", failover)
	}
	acked = append(acked, b.URL)
	for _, p := range followers(c, leader) {
		waitHasAll(t, c, p, acked, 5*time.Second)
	}

	// Writes while the old leader is down, then it comes back and catches up.
	for i := 200; i < 210; i++ {
		b, err := addBackend(c, survivor, i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, b.URL)
	}
	leader.Start()
	waitHasAll(t, c, leader, acked, 15*time.Second)
	c.WaitMembers(3, 15*time.Second)
	// Converged means identical, not merely a superset: a replica that
	// applied corrupted entries would hold backends nobody added.
	want := backendURLs(t, c, survivor)
	for _, p := range c.Peers {
		if got := backendURLs(t, c, p); fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(acked) {
			t.Fatalf("%s holds %d backends, %s holds %d, %d acknowledged", p.ID, len(got), survivor.ID, len(want), len(acked))
		}
	}
}

// TestRestartRestoresFromSnapshot restarts a peer after a snapshot and
// checks it restored from it and then replayed the entries after it.
func TestRestartRestoresFromSnapshot(t *testing.T) {
	c := harness.StartCluster(t, 3)
	f := followers(c, c.Leader(10*time.Second))[0]
	var acked []string
	for i := 0; i < 20; i++ {
		b, err := addBackend(c, f, i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, b.URL)
	}
	waitHasAll(t, c, f, acked, 5*time.Second)
	if err := c.API(f, "POST", "/api/v1/snapshot", nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 25; i++ { // after the snapshot: must come from the log
		b, err := addBackend(c, c.Peers[0], i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, b.URL)
	}
	f.Stop()
	f.Start()
	// A follower's /readyz asks the leader how far it has applied.
	harness.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + f.HTTP + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", resp.StatusCode, body)
		}
		return nil
	})
	waitHasAll(t, c, f, acked, 10*time.Second)
	if !strings.Contains(f.Log(), "restored from snapshot") {
		t.Fatalf("%s did not restore from its snapshot on restart", f.ID)
	}
}

// TestMembershipChanges joins a fresh fourth peer with conclavectl, then
// removes the leader and a follower; writes keep working throughout.
func TestMembershipChanges(t *testing.T) {
	c := harness.StartCluster(t, 3)
	var acked []string
	for i := 0; i < 10; i++ {
		b, err := addBackend(c, c.Peers[i%3], i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, b.URL)
	}
	// A fresh peer that neither bootstraps nor joins: an operator adds it.
	p4 := c.AddPeer("p4", false, nil)
	if _, err := c.Ctl(c.Peers[1], "join", "peer", "p4", p4.Raft); err != nil {
		t.Fatal(err)
	}
	c.WaitMembers(4, 20*time.Second)
	waitHasAll(t, c, p4, acked, 10*time.Second)

	leader := c.Leader(10 * time.Second)
	if _, err := c.Ctl(followers(c, leader)[0], "remove", "peer", leader.ID); err != nil {
		t.Fatalf("remove leader: %v", err)
	}
	leader.Stop()
	c.WaitMembers(3, 20*time.Second)
	b, err := addBackend(c, p4, 50)
	if err != nil {
		t.Fatalf("write after removing the leader: %v", err)
	}
	acked = append(acked, b.URL)

	leader = c.Leader(10 * time.Second)
	victim := followers(c, leader)[0]
	if _, err := c.Ctl(leader, "remove", "peer", victim.ID); err != nil {
		t.Fatalf("remove follower: %v", err)
	}
	victim.Stop()
	members := c.WaitMembers(2, 20*time.Second)
	for _, m := range members {
		if m.ID == victim.ID {
			t.Fatalf("removed peer %s still listed", victim.ID)
		}
	}
	b, err = addBackend(c, leader, 51)
	if err != nil {
		t.Fatalf("write after removing a follower: %v", err)
	}
	acked = append(acked, b.URL)
	for _, p := range c.Peers {
		if p.Running() {
			waitHasAll(t, c, p, acked, 10*time.Second)
		}
	}
	if _, err := c.Ctl(leader, "remove", "peer", "nosuchpeer"); err == nil {
		t.Fatal("removing an unknown peer succeeded")
	}
}
