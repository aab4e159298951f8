package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/testwait"
)

const testJWT = "jwt-secret-for-agent-tests"

func keyFor(apiURL string) []byte {
	hp, err := auth.HostPort(apiURL)
	if err != nil {
		return nil
	}
	return auth.AgentLoadKey(testJWT, hp)
}

// startVerifyingPeer is a peer that takes only signed load reports.
func startVerifyingPeer(t *testing.T, name, httpAddr string) *discovery.Node {
	t.Helper()
	n, err := discovery.Start(discovery.Config{Name: name, BindAddr: "127.0.0.1:0", Fast: true, LoadKey: keyFor,
		Meta: discovery.Meta{Role: discovery.RolePeer, HTTPAddr: httpAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

// An agent with a token fetches its load key from a peer's admin API (its
// token and URL in the request) and signs its load with it: a verifying
// peer takes it. The key is never logged nor gossiped.
func TestAgentSignsLoadWithKeyFromPeer(t *testing.T) {
	fb := newFakeBBB(t)
	fb.set(false, [2]int{3, 1})
	admin := newAdminStub(t, http.StatusCreated)
	admin.keyStatus, admin.key = http.StatusOK, keyFor(fb.apiURL())
	peer := startVerifyingPeer(t, "peer-1", admin.addr())
	logger, logs := testLogger()
	a := startAgent(t, Config{APIURL: fb.apiURL(), APIToken: "tok.en.jwt", Logger: logger, RegisterRetry: 100 * time.Millisecond,
		Gossip: discovery.Config{Join: []string{peer.Addr()}}})
	eventually(t, 10*time.Second, "the peer takes the signed load", func() bool {
		l, ok := peer.Loads()[fb.apiURL()]
		return ok && l.Meta.Attendees == 3 && l.Meta.BBBUp && a.Signing()
	})
	admin.mu.Lock()
	reqs := admin.keyReqs
	admin.mu.Unlock()
	if len(reqs) == 0 || reqs[0].method != "POST" || reqs[0].auth != "Bearer tok.en.jwt" {
		t.Fatalf("load-key requests: %+v", reqs)
	}
	var body map[string]string
	if json.Unmarshal(reqs[0].body, &body) != nil || body["url"] != fb.apiURL() {
		t.Fatalf("load-key request body %s", reqs[0].body)
	}
	fb.set(false, [2]int{5, 0})
	eventually(t, 5*time.Second, "the peer takes the next signed load", func() bool {
		return peer.Loads()[fb.apiURL()].Meta.Attendees == 5
	})
	for r, n := range peer.RejectedReports() {
		if r != discovery.RejectUnsigned && n != 0 { // unsigned: the reports before the key came
			t.Errorf("%d reports rejected as %s", n, r)
		}
	}
	out := logs.String()
	enc := strings.TrimSuffix(strings.TrimSuffix(jsonString(admin.key), `"`), `"`)
	if strings.Contains(out, enc) || strings.Contains(out, "tok.en.jwt") {
		t.Fatal("load key or token in the logs")
	}
	for _, m := range peer.Members() {
		if b, _ := json.Marshal(m); strings.Contains(string(b), enc) {
			t.Fatal("load key gossiped")
		}
	}
}

func jsonString(b []byte) string { s, _ := json.Marshal(b); return string(s) }

// Without a token (or with a key for another host:port) a verifying peer
// drops the agent's load and counts it.
func TestUnsignedOrWronglySignedAgentIgnored(t *testing.T) {
	fb := newFakeBBB(t)
	fb.set(false, [2]int{3, 1})
	admin := newAdminStub(t, http.StatusCreated)
	admin.keyStatus, admin.key = http.StatusOK, keyFor("http://elsewhere.example.org:8090/bigbluebutton/api/")
	peer := startVerifyingPeer(t, "peer-1", admin.addr())
	logger, logs := testLogger()
	startAgent(t, Config{APIURL: fb.apiURL(), Logger: logger, Gossip: discovery.Config{Name: "no-token", Join: []string{peer.Addr()}}})
	startAgent(t, Config{APIURL: fb.apiURL(), APIToken: "tok", RegisterRetry: 100 * time.Millisecond,
		Gossip: discovery.Config{Name: "wrong-key", Join: []string{peer.Addr()}}})
	eventually(t, 10*time.Second, "both counted", func() bool {
		r := peer.RejectedReports()
		return r[discovery.RejectUnsigned] > 0 && r[discovery.RejectSignature] > 0
	})
	if l, ok := peer.Loads()[fb.apiURL()]; ok {
		t.Fatalf("the peer took an unauthenticated load: %+v", l)
	}
	if !strings.Contains(logs.String(), "no CONCLAVE_API_TOKEN") {
		t.Fatalf("no warning about the missing token:\n%s", logs.String())
	}
}

// A member holding the gossip key that claims to be a peer, at an address
// the operator did not name in --join, gets neither the agent's token nor
// its BBB secret; the peer the agent was told to join gets both.
func TestUntrustedPeerGetsNoTokenNorSecret(t *testing.T) {
	fb := newFakeBBB(t)
	fb.set(false)
	good := newAdminStub(t, http.StatusCreated)
	evil := newAdminStub(t, http.StatusCreated)
	p := startPeer(t, "peer-1", good.addr(), keyA)
	impostor := startPeer(t, "peer-evil", evil.addr(), keyA)
	if _, err := impostor.Join(p.Addr()); err != nil {
		t.Fatal(err)
	}
	logger, logs := testLogger()
	a := startAgent(t, Config{APIURL: fb.apiURL(), Autoregister: true, APIToken: "tok.en.jwt", Logger: logger,
		RegisterRetry: 50 * time.Millisecond, Gossip: discovery.Config{Join: []string{p.Addr()}, SecretKey: keyA}})
	eventually(t, 10*time.Second, "registered through the --join peer", a.Registered)
	eventually(t, 5*time.Second, "the agent sees the impostor", func() bool { return len(a.Node().PeerHTTPAddrs()) == 2 })
	testwait.AssertUntil(t, 500*time.Millisecond, func() error {
		evil.mu.Lock()
		n := len(evil.reqs) + len(evil.keyReqs)
		evil.mu.Unlock()
		if n != 0 {
			return fmt.Errorf("the impostor got %d requests carrying the token (and the BBB secret)", n)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "not in --join") {
		t.Fatalf("the impostor was not logged:\n%s", logs.String())
	}
}
