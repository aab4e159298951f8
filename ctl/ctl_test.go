package ctl

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/auth"
)

type recorded struct{ method, path, body, auth string }

// stub answers like the admin API and records what it was sent.
func stub(t *testing.T) (*httptest.Server, *[]recorded) {
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs = append(reqs, recorded{r.Method, r.URL.RequestURI(), string(b), r.Header.Get("Authorization")})
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/backends" && r.Method == "GET":
			io.WriteString(w, `[{"id":"b-1","url":"https://node22.bbb.example.org/bigbluebutton/api/","settings":{"tags":["bbb_25"]},
				"admin_state":"ready","node_state":"ready","meetings":4,"attendees":10,"latency_ns":92546636,"load_factor":1},
				{"id":"b-2","url":"https://node23.bbb.example.org/bigbluebutton/api/","settings":{},
				"admin_state":"stopped","node_state":"error","meetings":0,"attendees":0,"latency_ns":0,"load_factor":2.5,"last_error":"connection refused"}]`)
		case strings.HasPrefix(r.URL.Path, "/api/v1/backends/nosuch"):
			w.WriteHeader(404)
			io.WriteString(w, `{"error":"no backend nosuch","code":"not_found"}`)
		case r.URL.Path == "/api/v1/backends" && r.Method == "POST":
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"b-3","url":"https://n.example.org/bigbluebutton/api/","admin_state":"init"}`)
		case r.URL.Path == "/api/v1/meetings":
			io.WriteString(w, `[{"internal_id":"moodle~m1","frontend":"moodle","meeting_id":"m1","backend_id":"b-1","created_at":1}]`)
		case r.URL.Path == "/api/v1/peers" && r.Method == "GET":
			io.WriteString(w, `[{"id":"p1","raft_addr":"127.0.0.1:1","voter":true,"leader":true,"state":"Leader","reachable":true}]`)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewRootCommand("test")
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestShowBackendsBlockFormat(t *testing.T) {
	srv, _ := stub(t)
	out, err := run(t, "--api", srv.URL, "show", "backends")
	if err != nil {
		t.Fatal(err)
	}
	want := `b-1
  Host:        https://node22.bbb.example.org/bigbluebutton/api/
  Settings:    {"tags":["bbb_25"]}
  NodeState:   ready    AdminState:  ready
  MC/AC/R:     4/10/2.50
  LoadFactor:  1
  Latency:     92.546636ms

b-2
  Host:        https://node23.bbb.example.org/bigbluebutton/api/
  Settings:    {}
  NodeState:   error    AdminState:  stopped
  MC/AC/R:     0/0/0.00
  LoadFactor:  2.5
  Latency:     0s
  LastError:   connection refused
`
	if out != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
	out, err = run(t, "--api", srv.URL, "show", "backends", "-o", "json")
	var bs []Backend
	if err != nil || json.Unmarshal([]byte(out), &bs) != nil || len(bs) != 2 || bs[1].LastError != "connection refused" {
		t.Fatalf("-o json: %v %s", err, out)
	}
}

func TestRequestsSent(t *testing.T) {
	srv, reqs := stub(t)
	cases := []struct {
		args               []string
		method, path, body string
	}{
		{[]string{"add", "backend", "https://n.example.org", "--secret", "s", "-j", `{"tags":["a"]}`}, "POST", "/api/v1/backends", `{"secret":"s","settings":{"tags":["a"]},"url":"https://n.example.org"}`},
		{[]string{"set", "backend", "-j", `{"load_factor":null}`, "https://n.example.org/bigbluebutton/api/"}, "PATCH", "/api/v1/backends/https:%2F%2Fn.example.org%2Fbigbluebutton%2Fapi%2F", `{"load_factor":null}`},
		{[]string{"enable", "backend", "n.example.org"}, "POST", "/api/v1/backends/n.example.org/enable", ""},
		{[]string{"disable", "backend", "b-1"}, "POST", "/api/v1/backends/b-1/disable", ""},
		{[]string{"delete", "backend", "b-1", "--force"}, "DELETE", "/api/v1/backends/b-1?force=true", ""},
		{[]string{"add", "frontend", "moodle", "--secret", "fs"}, "POST", "/api/v1/frontends", `{"key":"moodle","secret":"fs","settings":{}}`},
		{[]string{"set", "frontend", "-j", `{"required_tags":["x"]}`, "moodle"}, "PATCH", "/api/v1/frontends/moodle", `{"required_tags":["x"]}`},
		{[]string{"delete", "frontend", "moodle"}, "DELETE", "/api/v1/frontends/moodle", ""},
		{[]string{"show", "meetings", "--frontend", "moodle"}, "GET", "/api/v1/meetings?frontend=moodle", ""},
		{[]string{"join", "peer", "p4", "10.0.0.4:42354"}, "POST", "/api/v1/peers", `{"id":"p4","raft_addr":"10.0.0.4:42354"}`},
		{[]string{"remove", "peer", "p2"}, "DELETE", "/api/v1/peers/p2", ""},
	}
	for _, c := range cases {
		*reqs = nil
		if _, err := run(t, append([]string{"--api", srv.URL}, c.args...)...); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if len(*reqs) != 1 {
			t.Fatalf("%v: %d requests", c.args, len(*reqs))
		}
		r := (*reqs)[0]
		if r.method != c.method || r.path != c.path || !jsonEqual(r.body, c.body) {
			t.Errorf("%v sent %s %s %s", c.args, r.method, r.path, r.body)
		}
	}
}

func jsonEqual(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	json.Unmarshal([]byte(a), &x)
	json.Unmarshal([]byte(b), &y)
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestErrorsAndLocalValidation(t *testing.T) {
	srv, reqs := stub(t)
	_, err := run(t, "--api", srv.URL, "show", "backend", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "no backend nosuch") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404 answer: %v", err)
	}
	*reqs = nil
	for _, args := range [][]string{
		{"set", "backend", "-j", "{not json", "b-1"},
		{"set", "backend", "-j", "[1,2]", "b-1"},
		{"add", "backend", "https://x", "--secret", "s", "-j", "nope"},
		{"add", "backend", "https://x"},
		{"show", "backends", "-o", "yaml"},
	} {
		if _, err := run(t, append([]string{"--api", srv.URL}, args...)...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
	if len(*reqs) != 0 {
		t.Fatalf("invalid input reached the API: %v", *reqs)
	}
	if _, err := run(t, "--api", "http://127.0.0.1:1", "show", "peers"); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("unreachable API: %v", err)
	}
}

func TestTokensAndEnvironment(t *testing.T) {
	srv, reqs := stub(t)
	t.Setenv("CONCLAVE_API_JWT_SECRET", "jwt-secret")
	out, err := run(t, "token", "--scope", auth.ScopeAgent, "--subject", "node1.example.org", "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.Verify("jwt-secret", strings.TrimSpace(out))
	if err != nil || !c.HasScope(auth.ScopeAgent) || c.HasScope(auth.ScopeAdmin) || c.Subject != "node1.example.org" {
		t.Fatalf("agent token: %+v %v", c, err)
	}
	// Commands mint an admin token from the secret when none is given.
	t.Setenv("CONCLAVE_API", "http://127.0.0.1:1") // the flag must win over this
	if _, err := run(t, "--api", srv.URL, "show", "peers"); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimPrefix((*reqs)[0].auth, "Bearer ")
	if c, err := auth.Verify("jwt-secret", tok); err != nil || !c.HasScope(auth.ScopeAdmin) {
		t.Fatalf("minted token: %v", err)
	}
	t.Setenv("CONCLAVE_API_TOKEN", "given-token")
	run(t, "--api", srv.URL, "show", "peers")
	if (*reqs)[1].auth != "Bearer given-token" {
		t.Fatalf("CONCLAVE_API_TOKEN not used: %q", (*reqs)[1].auth)
	}
	t.Setenv("CONCLAVE_API_JWT_SECRET", "")
	if _, err := run(t, "token"); err == nil {
		t.Fatal("token minted without a secret")
	}
}
