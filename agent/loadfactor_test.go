package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/testwait"
)

// With SetLoadFactor the agent writes its load factor into its own
// backend's settings once it is registered: a PATCH of the backend named
// by its API URL, with its token, and nothing more after the 200.
func TestAgentSetsLoadFactor(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusCreated, http.StatusOK)
	p := startPeer(t, "peer-1", admin.addr(), keyA)
	a := startAgent(t, Config{
		APIURL: fb.apiURL(), LoadFactor: 2.5, SetLoadFactor: true, Autoregister: true, APIToken: "tok.en.jwt",
		RegisterRetry: 100 * time.Millisecond, Gossip: discovery.Config{Join: []string{p.Addr()}, SecretKey: keyA},
	})
	eventually(t, 10*time.Second, "load factor set", a.LoadFactorSet)
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		if reqs := admin.requests(); len(reqs) != 2 || reqs[0].method != "POST" {
			return fmt.Errorf("requests: %+v (want the registration, then one PATCH)", reqs)
		}
		return nil
	})
	reqs := admin.requests()
	r := reqs[1]
	if r.method != "PATCH" || r.path != "/api/v1/backends/"+fb.apiURL() || r.auth != "Bearer tok.en.jwt" || r.ctype != "application/json" {
		t.Fatalf("PATCH: %+v", r)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil || fmt.Sprint(got) != "map[load_factor:2.5]" {
		t.Fatalf("PATCH body %s (%v)", r.body, err)
	}
}

// A backend the cluster does not know yet (404) is retried until it is
// added; without SetLoadFactor the agent never touches the settings.
func TestAgentLoadFactorWaitsForTheBackend(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusNotFound, http.StatusNotFound, http.StatusOK)
	p := startPeer(t, "peer-1", admin.addr(), nil)
	a := startAgent(t, Config{APIURL: fb.apiURL(), LoadFactor: 0.5, SetLoadFactor: true,
		RegisterRetry: 100 * time.Millisecond, Gossip: discovery.Config{Join: []string{p.Addr()}}})
	eventually(t, 10*time.Second, "load factor set", a.LoadFactorSet)
	if reqs := admin.requests(); len(reqs) != 3 || reqs[2].method != "PATCH" || reqs[2].auth != "" {
		t.Fatalf("requests: %+v", reqs)
	}

	admin2 := newAdminStub(t, http.StatusOK)
	p2 := startPeer(t, "peer-2", admin2.addr(), nil)
	b := startAgent(t, Config{APIURL: fb.apiURL(), LoadFactor: 3, Gossip: discovery.Config{Name: "agent-2", Join: []string{p2.Addr()}}})
	testwait.AssertUntil(t, 500*time.Millisecond, func() error {
		if n := len(admin2.requests()); n != 0 || b.LoadFactorSet() {
			return fmt.Errorf("an agent without SetLoadFactor sent %d requests", n)
		}
		return nil
	})
}

// The agent reads voiceParticipantCount and gossips it, signed.
func TestAgentGossipsVoice(t *testing.T) {
	fb := newFakeBBB(t)
	fb.set(false, [2]int{3, 1}, [2]int{4, 2})
	fb.mu.Lock()
	fb.voice = 2
	fb.mu.Unlock()
	peer := startPeer(t, "peer-1", "127.0.0.1:1", keyA)
	startAgent(t, Config{APIURL: fb.apiURL(), Gossip: discovery.Config{Join: []string{peer.Addr()}, SecretKey: keyA}})
	eventually(t, 5*time.Second, "peer sees voice participants", func() bool {
		m := peer.Loads()[fb.apiURL()].Meta
		return m.BBBUp && m.Videos == 3 && m.Voice == 4
	})
}
