package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
)

// An agent token names host AND port: a bare host name, or another port on
// the same host, may neither register nor change a backend, nor get its
// load key.
func TestAgentTokenNamesHostAndPort(t *testing.T) {
	mc := NewMemCluster()
	s := New(Config{JWTSecret: "jwt-s3cret"}, mc)
	mc.MustApply(&fsm.AddBackend{ID: "b-other", URL: "http://node1.example.org:8091/bigbluebutton/api/", Secret: "x"})
	bare, _ := auth.Mint("jwt-s3cret", "node1.example.org", []string{auth.ScopeAgent}, 0)
	mine, _ := auth.Mint("jwt-s3cret", "node1.example.org:8090", []string{auth.ScopeAgent}, 0)
	reg := `{"url":"http://node1.example.org:8090/bigbluebutton/api/","secret":"s"}`
	if r := do(s, "10.0.0.1", "POST", "/api/v1/backends", bare, reg); r.StatusCode() != 403 {
		t.Fatalf("bare-host token registered a backend: %d %s", r.StatusCode(), r.Body())
	}
	if r := do(s, "10.0.0.1", "PATCH", "/api/v1/backends/b-other", bare, `{"load_factor":0.01}`); r.StatusCode() != 403 {
		t.Fatalf("bare-host token changed another port's backend: %d %s", r.StatusCode(), r.Body())
	}
	if r := do(s, "10.0.0.1", "PATCH", "/api/v1/backends/b-other", mine, `{"load_factor":0.01}`); r.StatusCode() != 403 {
		t.Fatalf("host:8090 token changed host:8091's backend: %d %s", r.StatusCode(), r.Body())
	}
	if r := do(s, "10.0.0.1", "POST", "/api/v1/backends", mine, reg); r.StatusCode() != 201 {
		t.Fatalf("host:port token registering its node: %d %s", r.StatusCode(), r.Body())
	}
}

func TestLoadKeyOnlyForTheTokensBackend(t *testing.T) {
	s := New(Config{JWTSecret: "jwt-s3cret"}, NewMemCluster())
	mine, _ := auth.Mint("jwt-s3cret", "node1.example.org:8090", []string{auth.ScopeAgent}, 0)
	bare, _ := auth.Mint("jwt-s3cret", "node1.example.org", []string{auth.ScopeAgent}, 0)
	forged, _ := auth.Mint("another", "node1.example.org:8090", []string{auth.ScopeAgent}, 0)
	body := `{"url":"http://node1.example.org:8090/bigbluebutton/api/"}`
	r := do(s, "10.0.0.1", "POST", "/api/v1/agent/load-key", mine, body)
	if r.StatusCode() != 200 {
		t.Fatalf("load key for its own node: %d %s", r.StatusCode(), r.Body())
	}
	var ans adminapi.LoadKeyAnswer
	if err := json.Unmarshal(r.Body(), &ans); err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(ans.Key)
	if ans.HostPort != "node1.example.org:8090" || !bytes.Equal(key, auth.AgentLoadKey("jwt-s3cret", "node1.example.org:8090")) {
		t.Fatalf("answer %+v", ans)
	}
	for name, c := range map[string]struct {
		token, body string
		status      int
	}{
		"other port":   {mine, `{"url":"http://node1.example.org:8091/bigbluebutton/api/"}`, 403},
		"other host":   {mine, `{"url":"http://node2.example.org:8090/bigbluebutton/api/"}`, 403},
		"bare host":    {bare, body, 403},
		"other secret": {forged, body, 401},
		"no token":     {"", body, 401},
	} {
		if r := do(s, "10.0.0.1", "POST", "/api/v1/agent/load-key", c.token, c.body); r.StatusCode() != c.status {
			t.Errorf("%s: HTTP %d %s, want %d", name, r.StatusCode(), r.Body(), c.status)
		}
	}
	// No JWT secret: nothing to derive a key from; the agent is told so.
	open := New(Config{}, NewMemCluster())
	if r := do(open, "127.0.0.1", "POST", "/api/v1/agent/load-key", "", body); r.StatusCode() != 409 {
		t.Fatalf("no JWT secret: %d %s", r.StatusCode(), r.Body())
	}
}

// No token, admin or agent, registers a backend on a peer's own HTTP, Raft
// or gossip address.
func TestPeerAddressesCannotBeBackends(t *testing.T) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.SetPeer{ID: "p1", RaftAddr: "10.0.0.5:42354", HTTPAddr: "10.0.0.5:42353", GossipAddr: "10.0.0.5:42355"})
	mc.MustApply(&fsm.SetPeer{ID: "p2", RaftAddr: "127.0.0.1:42364", HTTPAddr: "127.0.0.1:42363"})
	s := New(Config{JWTSecret: "jwt-s3cret"}, mc)
	admin, _ := auth.Mint("jwt-s3cret", "ops", []string{auth.ScopeAdmin}, 0)
	for _, u := range []string{
		"http://10.0.0.5:42353/bigbluebutton/api/", "http://10.0.0.5:42354/", "https://10.0.0.5:42355/",
		"http://localhost:42363/bigbluebutton/api/", "http://127.0.0.1:42364/",
	} {
		if r := do(s, "10.0.0.1", "POST", "/api/v1/backends", admin, `{"url":"`+u+`","secret":"s"}`); r.StatusCode() != 400 {
			t.Errorf("%s registered: %d %s", u, r.StatusCode(), r.Body())
		}
		hp, _ := auth.HostPort(u)
		agent, _ := auth.Mint("jwt-s3cret", hp, []string{auth.ScopeAgent}, 0)
		if r := do(s, "10.0.0.1", "POST", "/api/v1/backends", agent, `{"url":"`+u+`","secret":"s"}`); r.StatusCode() != 400 {
			t.Errorf("%s registered by an agent: %d %s", u, r.StatusCode(), r.Body())
		}
	}
	if r := do(s, "10.0.0.1", "POST", "/api/v1/backends", admin, `{"url":"http://10.0.0.5:8090/","secret":"s"}`); r.StatusCode() != 201 {
		t.Fatalf("a BBB server on a peer's host, other port: %d %s", r.StatusCode(), r.Body())
	}
}
