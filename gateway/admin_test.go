package gateway

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
)

// do runs one request through the server's handler, from remote address ip.
func do(s *Server, ip, method, uri, token, body string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.SetBodyString(body)
		req.Header.SetContentType("application/json")
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}, nil)
	s.Handle(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	return resp
}

func TestAdminAuth(t *testing.T) {
	mc := NewMemCluster()
	open := New(Config{}, mc)
	if r := do(open, "127.0.0.1", "GET", "/api/v1/backends", "", ""); r.StatusCode() != 200 {
		t.Fatalf("loopback without secret: %d", r.StatusCode())
	}
	if r := do(open, "10.1.2.3", "GET", "/api/v1/backends", "", ""); r.StatusCode() != 403 {
		t.Fatalf("remote without secret: %d", r.StatusCode())
	}
	secured := New(Config{JWTSecret: "jwt-s3cret"}, mc)
	if r := do(secured, "127.0.0.1", "GET", "/api/v1/backends", "", ""); r.StatusCode() != 401 {
		t.Fatalf("no token: %d", r.StatusCode())
	}
	if r := do(secured, "127.0.0.1", "GET", "/api/v1/backends", "garbage", ""); r.StatusCode() != 401 {
		t.Fatalf("bad token: %d", r.StatusCode())
	}
	other, _ := auth.Mint("another-secret", "x", []string{auth.ScopeAdmin}, 0)
	if r := do(secured, "127.0.0.1", "GET", "/api/v1/backends", other, ""); r.StatusCode() != 401 {
		t.Fatalf("token of another secret: %d", r.StatusCode())
	}
	agent, _ := auth.Mint("jwt-s3cret", "node1.example.org:443", []string{auth.ScopeAgent}, 0)
	if r := do(secured, "10.0.0.1", "POST", "/api/v1/frontends", agent, `{"key":"k","secret":"s"}`); r.StatusCode() != 403 {
		t.Fatalf("agent adding a frontend: %d", r.StatusCode())
	}
	if r := do(secured, "10.0.0.1", "POST", "/api/v1/backends", agent, `{"url":"https://node2.example.org","secret":"s"}`); r.StatusCode() != 403 {
		t.Fatalf("agent registering another node: %d %s", r.StatusCode(), r.Body())
	}
	if r := do(secured, "10.0.0.1", "POST", "/api/v1/backends", agent, `{"url":"https://node1.example.org","secret":"s"}`); r.StatusCode() != 201 {
		t.Fatalf("agent registering its node: %d %s", r.StatusCode(), r.Body())
	}
	// Registering again is idempotent for an agent.
	if r := do(secured, "10.0.0.1", "POST", "/api/v1/backends", agent, `{"url":"https://node1.example.org","secret":"s"}`); r.StatusCode() != 201 {
		t.Fatalf("agent re-registering: %d %s", r.StatusCode(), r.Body())
	}
	admin, _ := auth.Mint("jwt-s3cret", "ops", []string{auth.ScopeAdmin}, 0)
	if r := do(secured, "10.0.0.1", "POST", "/api/v1/frontends", admin, `{"key":"k","secret":"s"}`); r.StatusCode() != 201 {
		t.Fatalf("admin adding a frontend: %d %s", r.StatusCode(), r.Body())
	}
}

func TestReverseProxyClientIP(t *testing.T) {
	s := New(Config{ReverseProxy: true}, NewMemCluster())
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("/api/v1/backends")
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 127.0.0.1")
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, nil)
	s.Handle(&ctx)
	if ctx.Response.StatusCode() != 403 {
		t.Fatalf("a proxied remote caller got in without a secret: %d", ctx.Response.StatusCode())
	}
}

func TestAdminBackendLifecycleAndErrors(t *testing.T) {
	mc := NewMemCluster()
	s := New(Config{}, mc)
	lo := "127.0.0.1"
	r := do(s, lo, "POST", "/api/v1/backends", "", `{"url":"https://n1.example.org/bigbluebutton/api/","secret":"x","settings":{"tags":["a"]}}`)
	if r.StatusCode() != 201 {
		t.Fatalf("%d %s", r.StatusCode(), r.Body())
	}
	var b adminapi.Backend
	_ = json.Unmarshal(r.Body(), &b)
	if strings.Contains(string(r.Body()), `"x"`) {
		t.Fatal("backend secret shown by the admin API")
	}
	cases := []struct {
		method, uri, body string
		status            int
		code              string
	}{
		{"POST", "/api/v1/backends", `{"url":"https://n1.example.org","secret":"x"}`, 409, "exists"},
		{"POST", "/api/v1/backends", `{"url":"ftp://n2","secret":"x"}`, 400, "invalid"},
		{"POST", "/api/v1/backends", `{"url":"https://n2.example.org","secret":"x","bogus":1}`, 400, "invalid"},
		{"POST", "/api/v1/backends", `not json`, 400, "invalid"},
		{"PATCH", "/api/v1/backends/" + b.ID, `{"colour":"red"}`, 400, "invalid"},
		{"PATCH", "/api/v1/backends/nosuch", `{}`, 404, "not_found"},
		{"GET", "/api/v1/nothing", ``, 404, "not_found"},
	}
	for _, c := range cases {
		r := do(s, lo, c.method, c.uri, "", c.body)
		var e adminapi.Error
		if err := json.Unmarshal(r.Body(), &e); err != nil || r.StatusCode() != c.status || e.Code != c.code {
			t.Errorf("%s %s %s: %d %s", c.method, c.uri, c.body, r.StatusCode(), r.Body())
		}
	}
	for _, ref := range []string{b.ID, "n1.example.org", "https:%2F%2Fn1.example.org%2Fbigbluebutton%2Fapi%2F"} {
		if r := do(s, lo, "POST", "/api/v1/backends/"+ref+"/enable", "", ""); r.StatusCode() != 200 || !strings.Contains(string(r.Body()), `"admin_state":"ready"`) {
			t.Fatalf("enable by %s: %d %s", ref, r.StatusCode(), r.Body())
		}
	}
	if r := do(s, lo, "PATCH", "/api/v1/backends/"+b.ID, "", `{"load_factor":2.5,"tags":null}`); !strings.Contains(string(r.Body()), `"load_factor":2.5`) || strings.Contains(string(r.Body()), `"tags"`) {
		t.Fatalf("patch: %s", r.Body())
	}
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: b.ID, NodeState: fsm.NodeReady}}})
	mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: b.ID})
	r = do(s, lo, "DELETE", "/api/v1/backends/"+b.ID, "", "")
	if !strings.Contains(string(r.Body()), `"removed":false`) || !strings.Contains(string(r.Body()), "decommissioned") || !strings.Contains(string(r.Body()), `"bound_meetings":1`) {
		t.Fatalf("delete with a meeting: %s", r.Body())
	}
	r = do(s, lo, "DELETE", "/api/v1/backends/"+b.ID+"?force=true", "", "")
	if !strings.Contains(string(r.Body()), `"removed":true`) {
		t.Fatalf("delete --force: %s", r.Body())
	}
	if r := do(s, lo, "GET", "/api/v1/meetings", "", ""); string(r.Body()) != "[]" {
		t.Fatalf("meetings after force delete: %s", r.Body())
	}
	mc.MustApply(&fsm.PutRecordings{Recordings: []fsm.Recording{{RecordID: "r1", Frontend: "fe", MeetingID: "m", BackendID: b.ID, State: "published", XML: "<recording/>"}}})
	if r := do(s, lo, "GET", "/api/v1/recordings?frontend=fe", "", ""); !strings.Contains(string(r.Body()), `"record_id":"r1"`) ||
		!strings.Contains(string(r.Body()), `"backend_present":false`) || strings.Contains(string(r.Body()), "<recording") {
		t.Fatalf("recordings of a removed backend: %s", r.Body())
	}
}

// An admin listing through a follower shows a change committed through
// another peer: the follower's replica catches up before it answers. The
// peer's own status does not wait on the leader.
func TestAdminListingsReadWritesMadeElsewhere(t *testing.T) {
	lf := newLaggingFollower()
	s := New(Config{}, lf)
	if _, err := lf.Commit(context.Background(), &fsm.AddBackend{ID: "b9", URL: "http://node9.example.org/bigbluebutton/api/", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	reads := lf.reads.Load()
	if r := do(s, "127.0.0.1", "GET", "/api/v1/status", "", ""); r.StatusCode() != 200 || lf.reads.Load() != reads {
		t.Fatalf("status: %d, %d consistent reads", r.StatusCode(), lf.reads.Load()-reads)
	}
	if r := do(s, "127.0.0.1", "GET", "/api/v1/backends", "", ""); r.StatusCode() != 200 || !strings.Contains(string(r.Body()), `"b9"`) {
		t.Fatalf("backends through the follower: %d %s", r.StatusCode(), r.Body())
	}
}
