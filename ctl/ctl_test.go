package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/auth"
)

// cleanEnv makes sure the caller's environment does not leak into a test.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{EnvAPI, EnvToken, EnvJWTSecret} {
		t.Setenv(k, "")
	}
}

// run executes conclavectl with args and returns stdout, stderr, error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := NewRootCommand("v9.9.9-test")
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

// seed fills the fake with two backends, a frontend and a meeting.
func seed(f *fakeAPI) {
	lf := json.RawMessage(`{"tags":["bbb_25"]}`)
	f.backends = []*Backend{
		{ID: "b-1a2b", URL: "https://node22.bbb.example.org/bigbluebutton/api/", Settings: lf,
			AdminState: "ready", NodeState: "ready", Meetings: 4, Attendees: 10, LatencyNs: 92546636, LoadFactor: 1,
			CreatedAt: 1700000000000000000, StateChangedAt: 1700000001000000000},
		{ID: "b-3c4d", URL: "https://node23.bbb.example.org/bigbluebutton/api/", Settings: json.RawMessage(`{"tags":["bbb_30","gpu"],"load_factor":2.5}`),
			AdminState: "stopped", NodeState: "error", Meetings: 0, Attendees: 0, LatencyNs: 0, LoadFactor: 2.5,
			LastError: "dial tcp 10.0.0.23:443: connection refused"},
	}
	f.frontends = []*Frontend{{Key: "moodle", Secret: "moodle-secret", Settings: json.RawMessage(`{"required_tags":["bbb_25"]}`), Meetings: 1}}
	f.meetings = []Meeting{{InternalID: "moodle~m1", Frontend: "moodle", MeetingID: "m1", BackendID: "b-1a2b", CreatedAt: 1700000000000000000}}
	f.peers = []Peer{
		{ID: "p1", RaftAddr: "10.0.0.1:42354", HTTPAddr: "10.0.0.1:42353", Voter: true, Leader: true, State: "Leader", LastContact: "0s", AppliedIndex: 42, Reachable: true},
		{ID: "p2", RaftAddr: "10.0.0.2:42354", HTTPAddr: "10.0.0.2:42353", Voter: true, State: "Follower", LastContact: "12ms", AppliedIndex: 41, Reachable: true},
		{ID: "p3", RaftAddr: "10.0.0.3:42354", Voter: true, Reachable: false, Error: "connection refused"},
	}
}

const goldenBackends = `b-1a2b
  Host:        https://node22.bbb.example.org/bigbluebutton/api/
  Settings:    {"tags":["bbb_25"]}
  NodeState:   ready    AdminState:  ready
  MC/AC/R:     4/10/2.50
  LoadFactor:  1
  Latency:     92.546636ms

b-3c4d
  Host:        https://node23.bbb.example.org/bigbluebutton/api/
  Settings:    {"tags":["bbb_30","gpu"],"load_factor":2.5}
  NodeState:   error    AdminState:  stopped
  MC/AC/R:     0/0/0.00
  LoadFactor:  2.5
  Latency:     0s
  LastError:   dial tcp 10.0.0.23:443: connection refused
`

func TestShowBackendsBlockFormat(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	out, _, err := run(t, "--api", f.URL(), "show", "backends")
	if err != nil {
		t.Fatal(err)
	}
	if out != goldenBackends {
		t.Fatalf("got:\n%s\nwant:\n%s", out, goldenBackends)
	}
	f.backends[0].Meetings, f.backends[0].Attendees, f.backends[0].LatencyNs = 0, 0, 1500*time.Microsecond.Nanoseconds()
	out, _, err = run(t, "--api", f.URL(), "show", "backend", "node22.bbb.example.org")
	want := `b-1a2b
  Host:        https://node22.bbb.example.org/bigbluebutton/api/
  Settings:    {"tags":["bbb_25"]}
  NodeState:   ready    AdminState:  ready
  MC/AC/R:     0/0/0.00
  LoadFactor:  1
  Latency:     1.5ms
`
	if err != nil || out != want {
		t.Fatalf("show backend: %v\ngot:\n%s\nwant:\n%s", err, out, want)
	}
	if r := f.Requests(); len(r) != 2 || r[1].Method != "GET" || r[1].URI != "/api/v1/backends/node22.bbb.example.org" {
		t.Fatalf("requests: %+v", r)
	}

	f.backends = nil
	out, _, err = run(t, "--api", f.URL(), "show", "backends")
	if err != nil || !strings.HasPrefix(out, "no backends") {
		t.Fatalf("empty: %v %q", err, out)
	}
	out, _, err = run(t, "--api", f.URL(), "show", "backends", "-o", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty -o json: %v %q", err, out)
	}
}

func TestJSONOutput(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	var bs []Backend
	out, _, err := run(t, "--api", f.URL(), "-o", "json", "show", "backends")
	if err != nil || json.Unmarshal([]byte(out), &bs) != nil {
		t.Fatalf("show backends -o json: %v\n%s", err, out)
	}
	want, _ := json.Marshal([]Backend{f.view(f.backends[0]), f.view(f.backends[1])})
	if !jsonEqual(out, string(want)) {
		t.Fatalf("got %s\nwant %s", out, want)
	}
	if !strings.Contains(out, "\n  {\n    \"id\": \"b-1a2b\",") {
		t.Fatalf("not pretty-printed:\n%s", out)
	}
	// Every field of the API shape is there.
	var raw []map[string]any
	_ = json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"id", "url", "settings", "admin_state", "node_state", "meetings", "attendees", "latency_ns", "load_factor", "created_at", "state_changed_at", "bound_meetings"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("show backends -o json lacks %q", k)
		}
	}

	for _, c := range []struct {
		args []string
		into any
	}{
		{[]string{"show", "backend", "b-1a2b"}, &Backend{}},
		{[]string{"show", "frontends"}, &[]Frontend{}},
		{[]string{"show", "meetings"}, &[]Meeting{}},
		{[]string{"show", "peers"}, &[]Peer{}},
		{[]string{"add", "backend", "https://node24.bbb.example.org", "--secret", "s"}, &Backend{}},
		{[]string{"set", "backend", "-j", `{"tags":["x"]}`, "b-1a2b"}, &Backend{}},
		{[]string{"enable", "backend", "b-3c4d"}, &Backend{}},
		{[]string{"delete", "backend", "b-1a2b"}, &BackendRemoval{}},
		{[]string{"add", "frontend", "ilias", "--secret", "s"}, &Frontend{}},
		{[]string{"join", "peer", "p4", "10.0.0.4:42354"}, &map[string]bool{}},
	} {
		out, _, err := run(t, append([]string{"--api", f.URL(), "--output", "json"}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.into); err != nil {
			t.Fatalf("%v -o json: %v\n%s", c.args, err, out)
		}
	}
	var peers []Peer
	out, _, _ = run(t, "--api", f.URL(), "-o", "json", "show", "peers")
	if json.Unmarshal([]byte(out), &peers); len(peers) != 4 || !peers[0].Leader || peers[2].Reachable || peers[3].ID != "p4" {
		t.Fatalf("peers: %+v", peers)
	}
}

// TestRequestsSent runs every command against the fake API and checks the
// method, path and body of the request each one sends, and what it prints.
func TestRequestsSent(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	full := "https://node22.bbb.example.org/bigbluebutton/api/"
	cases := []struct {
		args              []string
		method, uri, body string
		out               string // a substring of stdout
	}{
		{[]string{"add", "backend", "https://node24.bbb.example.org/bigbluebutton/api/", "--secret", "s3cret", "-j", `{"tags":["bbb_30"],"load_factor":1.5}`},
			"POST", "/api/v1/backends", `{"url":"https://node24.bbb.example.org/bigbluebutton/api/","secret":"s3cret","settings":{"tags":["bbb_30"],"load_factor":1.5}}`,
			"backend b-1 added (AdminState init): https://node24.bbb.example.org/bigbluebutton/api/"},
		{[]string{"add", "backend", "https://node25.bbb.example.org", "--secret", "s"},
			"POST", "/api/v1/backends", `{"url":"https://node25.bbb.example.org","secret":"s"}`, "backend b-2 added (AdminState init)"},
		{[]string{"set", "backend", "-j", `{"load_factor":null,"tags":["a"]}`, full},
			"PATCH", "/api/v1/backends/https:%2F%2Fnode22.bbb.example.org%2Fbigbluebutton%2Fapi%2F", `{"load_factor":null,"tags":["a"]}`,
			`backend b-1a2b settings: {"tags":["a"]}`},
		{[]string{"show", "backend", full}, "GET", "/api/v1/backends/https:%2F%2Fnode22.bbb.example.org%2Fbigbluebutton%2Fapi%2F", "", "Host:        " + full},
		{[]string{"enable", "backend", "node24.bbb.example.org"}, "POST", "/api/v1/backends/node24.bbb.example.org/enable", "", "backend b-1 enabled (AdminState ready"},
		{[]string{"disable", "backend", "b-1"}, "POST", "/api/v1/backends/b-1/disable", "", "backend b-1 disabled (AdminState stopped"},
		{[]string{"delete", "backend", "b-1a2b"}, "DELETE", "/api/v1/backends/b-1a2b", "", "backend b-1a2b decommissioned: no new meetings; removed when its 1 meeting(s) end"},
		{[]string{"delete", "backend", "b-1a2b", "--force"}, "DELETE", "/api/v1/backends/b-1a2b?force=true", "", "backend b-1a2b removed"},
		{[]string{"delete", "backend", "b-2"}, "DELETE", "/api/v1/backends/b-2", "", "backend b-2 removed"},
		{[]string{"add", "frontend", "ilias", "--secret", "fs", "-j", `{"required_tags":["x"]}`},
			"POST", "/api/v1/frontends", `{"key":"ilias","secret":"fs","settings":{"required_tags":["x"]}}`, "frontend ilias added"},
		{[]string{"add", "frontend", "greenlight", "--secret", "gs"}, "POST", "/api/v1/frontends", `{"key":"greenlight","secret":"gs"}`, "/bbb/greenlight/bigbluebutton/api/"},
		{[]string{"set", "frontend", "-j", `{"default_presentation":{"url":"https://x/y.pdf"}}`, "ilias"},
			"PATCH", "/api/v1/frontends/ilias", `{"default_presentation":{"url":"https://x/y.pdf"}}`,
			`frontend ilias settings: {"default_presentation":{"url":"https://x/y.pdf"},"required_tags":["x"]}`},
		{[]string{"show", "frontends"}, "GET", "/api/v1/frontends", "", "moodle\n  Secret:      moodle-secret\n  Settings:    {\"required_tags\":[\"bbb_25\"]}\n  Meetings:    1\n"},
		{[]string{"delete", "frontend", "greenlight"}, "DELETE", "/api/v1/frontends/greenlight", "", "frontend greenlight deleted"},
		{[]string{"show", "meetings"}, "GET", "/api/v1/meetings", "", "moodle    m1          b-1a2b   2023-11-14T22:13:20Z  moodle~m1"},
		{[]string{"show", "meetings", "--frontend", "a b&c"}, "GET", "/api/v1/meetings?frontend=a+b%26c", "", "FRONTEND"},
		{[]string{"join", "peer", "p4", "10.0.0.4:42354"}, "POST", "/api/v1/peers", `{"id":"p4","raft_addr":"10.0.0.4:42354"}`, "peer p4 (10.0.0.4:42354) added as a voter"},
		{[]string{"join", "peer", "p5", "10.0.0.5:42354", "--http-addr", "10.0.0.5:42353"}, "POST", "/api/v1/peers", `{"id":"p5","raft_addr":"10.0.0.5:42354","http_addr":"10.0.0.5:42353"}`, "peer p5"},
		{[]string{"remove", "peer", "p2"}, "DELETE", "/api/v1/peers/p2", "", "peer p2 removed"},
		{[]string{"show", "peers"}, "GET", "/api/v1/peers", "", "p1  10.0.0.1:42354  10.0.0.1:42353  true   true    Leader       0s            42"},
		{[]string{"show", "backends"}, "GET", "/api/v1/backends", "", "b-1\n  Host:        https://node24.bbb.example.org/bigbluebutton/api/\n  Settings:    {\"tags\":[\"bbb_30\"],\"load_factor\":1.5}\n  NodeState:   init     AdminState:  stopped\n"},
	}
	for _, c := range cases {
		f.Requests()
		out, _, err := run(t, append([]string{"--api", f.URL()}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		reqs := f.Requests()
		if len(reqs) != 1 {
			t.Fatalf("%v: %d requests: %+v", c.args, len(reqs), reqs)
		}
		r := reqs[0]
		if r.Method != c.method || r.URI != c.uri || !jsonEqual(r.Body, c.body) {
			t.Errorf("%v sent %s %s %s\nwant %s %s %s", c.args, r.Method, r.URI, r.Body, c.method, c.uri, c.body)
		}
		if r.Auth != "" {
			t.Errorf("%v sent Authorization %q with no token configured", c.args, r.Auth)
		}
		if !strings.Contains(out, c.out) {
			t.Errorf("%v printed:\n%s\nwant it to contain:\n%s", c.args, out, c.out)
		}
	}
	// show peers: the unreachable peer and its error.
	out, _, _ := run(t, "--api", f.URL(), "show", "peers")
	if !strings.Contains(out, "p3  10.0.0.3:42354  -               true   false   unreachable") ||
		!strings.Contains(out, "p3: connection refused") ||
		!strings.HasPrefix(out, "ID  RAFT ADDRESS    HTTP ADDRESS    VOTER  LEADER  STATE        LAST CONTACT  APPLIED INDEX\n") {
		t.Errorf("show peers:\n%s", out)
	}
}

func jsonEqual(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestAPIErrors(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"show", "backend", "nosuch"}, "no backend nosuch (name it by ID, URL or host) (HTTP 404)"},
		{[]string{"enable", "backend", "nosuch"}, "no backend nosuch (name it by ID, URL or host) (HTTP 404)"},
		{[]string{"add", "backend", "https://node22.bbb.example.org", "--secret", "s"}, "backend https://node22.bbb.example.org/bigbluebutton/api/ exists (HTTP 409)"},
		{[]string{"add", "frontend", "moodle", "--secret", "s"}, "frontend moodle exists (HTTP 409)"},
		{[]string{"remove", "peer", "p9"}, "p9 is not a member (HTTP 404)"},
		{[]string{"delete", "frontend", "nosuch"}, "no frontend nosuch (HTTP 404)"},
	} {
		out, _, err := run(t, append([]string{"--api", f.URL()}, c.args...)...)
		if err == nil || err.Error() != c.msg {
			t.Errorf("%v: got error %v, want %q", c.args, err, c.msg)
		}
		if out != "" {
			t.Errorf("%v printed %q on error", c.args, out)
		}
	}
	_, _, err := run(t, "--api", f.URL(), "show", "backend", "nosuch")
	if ErrorCode(err) != "not_found" {
		t.Fatalf("code of %v: %q", err, ErrorCode(err))
	}
	// A non-JSON error body is shown as is.
	_, _, err = run(t, "--api", f.URL()+"/elsewhere", "show", "peers")
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("non-API 404: %v", err)
	}
	_, _, err = run(t, "--api", "http://127.0.0.1:1", "show", "peers")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the admin API at http://127.0.0.1:1") {
		t.Fatalf("unreachable API: %v", err)
	}
}

func TestLocalValidation(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"set", "backend", "-j", "{not json", "b-1a2b"}, "-j must be a JSON object"},
		{[]string{"set", "backend", "-j", "[1,2]", "b-1a2b"}, "-j must be a JSON object"},
		{[]string{"set", "backend", "-j", "null", "b-1a2b"}, "-j must be a JSON object"},
		{[]string{"set", "backend", "-j", `"str"`, "b-1a2b"}, "-j must be a JSON object"},
		{[]string{"set", "backend", "-j", "", "b-1a2b"}, "-j must be a JSON object"},
		{[]string{"set", "backend", "b-1a2b"}, "-j JSON is required"},
		{[]string{"set", "frontend", "-j", "{", "moodle"}, "-j must be a JSON object"},
		{[]string{"set", "frontend", "moodle"}, "-j JSON is required"},
		{[]string{"add", "backend", "https://x", "--secret", "s", "-j", "nope"}, "-j must be a JSON object"},
		{[]string{"add", "frontend", "k", "--secret", "s", "-j", "[]"}, "-j must be a JSON object"},
		{[]string{"add", "backend", "https://x"}, "--secret is required"},
		{[]string{"add", "frontend", "k"}, "--secret is required"},
		{[]string{"show", "backend"}, "takes 1 argument(s), got 0"},
		{[]string{"show", "backends", "extra"}, "takes 0 argument(s), got 1"},
		{[]string{"join", "peer", "p4"}, "usage: conclavectl join peer ID RAFT_ADDR"},
		{[]string{"show", "backends", "-o", "yaml"}, "-o must be text or json"},
		{[]string{"show", "nodes"}, `unknown command "nodes" for "conclavectl show" (one of: backend, backends, frontends, meetings, peers, recordings)`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"show", "backends", "--bogus"}, "unknown flag: --bogus"},
	} {
		_, _, err := run(t, append([]string{"--api", f.URL()}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.msg)
		}
	}
	if r := f.Requests(); len(r) != 0 {
		t.Fatalf("invalid input reached the API: %+v", r)
	}
	// A group word alone prints its help.
	out, _, err := run(t, "show")
	if err != nil || !strings.Contains(out, "backends") {
		t.Fatalf("show alone: %v\n%s", err, out)
	}
}

func TestTokenCommand(t *testing.T) {
	cleanEnv(t)
	if _, _, err := run(t, "token"); err == nil || !strings.Contains(err.Error(), EnvJWTSecret+" is not set") {
		t.Fatalf("token without a secret: %v", err)
	}
	t.Setenv(EnvJWTSecret, "jwt-secret")

	out, _, err := run(t, "token")
	if err != nil {
		t.Fatal(err)
	}
	c, err := auth.Verify("jwt-secret", strings.TrimSpace(out))
	if err != nil || c.Scope != auth.ScopeAdmin || c.Subject != "conclavectl" {
		t.Fatalf("default token: %+v %v", c, err)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("default ttl: expires in %v", d)
	}
	if _, err := auth.Verify("other-secret", strings.TrimSpace(out)); err == nil {
		t.Fatal("verified with the wrong secret")
	}

	out, _, err = run(t, "token", "--scope", auth.ScopeAgent, "--subject", "Node1.example.org:443", "--ttl", "10m")
	if err != nil {
		t.Fatal(err)
	}
	c, err = auth.Verify("jwt-secret", strings.TrimSpace(out))
	if err != nil || !c.HasScope(auth.ScopeAgent) || c.HasScope(auth.ScopeAdmin) || c.Subject != "node1.example.org:443" {
		t.Fatalf("agent token: %+v %v", c, err)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("ttl 10m: expires in %v", d)
	}

	out, _, err = run(t, "token", "--ttl", "0")
	if c, _ := auth.Verify("jwt-secret", strings.TrimSpace(out)); err != nil || c == nil || c.ExpiresAt != nil {
		t.Fatalf("ttl 0 should not expire: %v %+v", err, c)
	}
	for _, args := range [][]string{
		{"token", "--scope", "conclave:root"},
		{"token", "--scope", auth.ScopeAgent},                                   // no --subject
		{"token", "--scope", auth.ScopeAgent, "--subject", "node1.example.org"}, // no port
		{"token", "--ttl", "-1h"},
		{"token", "--ttl", "soon"},
	} {
		if _, _, err := run(t, args...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}

func TestAuthAndEnvironment(t *testing.T) {
	cleanEnv(t)
	f := newFakeAPI(t)
	seed(f)
	f.secret = "jwt-secret"

	// No token: the API's 401 becomes the error.
	_, _, err := run(t, "--api", f.URL(), "show", "peers")
	if err == nil || err.Error() != "a bearer token is required (HTTP 401)" || ErrorCode(err) != "unauthorized" {
		t.Fatalf("no token: %v", err)
	}

	// CONCLAVE_API_JWT_SECRET: an admin token is minted for the call.
	t.Setenv(EnvJWTSecret, "jwt-secret")
	f.Requests()
	if _, _, err := run(t, "--api", f.URL(), "show", "peers"); err != nil {
		t.Fatal(err)
	}
	tok, ok := strings.CutPrefix(f.Requests()[0].Auth, "Bearer ")
	c, err := auth.Verify("jwt-secret", tok)
	if !ok || err != nil || !c.HasScope(auth.ScopeAdmin) || c.Subject != "conclavectl" {
		t.Fatalf("minted token: %q %v", tok, err)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("minted token expires in %v, want 1h", d)
	}

	// CONCLAVE_API_TOKEN wins over minting; --token wins over it.
	t.Setenv(EnvToken, "env-token")
	run(t, "--api", f.URL(), "show", "peers")
	if a := f.Requests()[0].Auth; a != "Bearer env-token" {
		t.Fatalf("%s not used: %q", EnvToken, a)
	}
	run(t, "--api", f.URL(), "--token", "flag-token", "show", "peers")
	if a := f.Requests()[0].Auth; a != "Bearer flag-token" {
		t.Fatalf("--token not used: %q", a)
	}

	// CONCLAVE_API is used without --api; --api wins over it.
	other := newFakeAPI(t)
	seed(other)
	t.Setenv(EnvToken, "")
	t.Setenv(EnvAPI, other.URL())
	if _, _, err := run(t, "show", "backends"); err != nil {
		t.Fatal(err)
	}
	if len(other.Requests()) != 1 || len(f.Requests()) != 0 {
		t.Fatalf("%s not used", EnvAPI)
	}
	if _, _, err := run(t, "--api", f.URL(), "show", "backends"); err != nil {
		t.Fatal(err)
	}
	if len(other.Requests()) != 0 || len(f.Requests()) != 1 {
		t.Fatal("--api did not win over " + EnvAPI)
	}
}

func TestDefaultsAndVersion(t *testing.T) {
	cleanEnv(t)
	cmd := NewRootCommand("v1.2.3")
	if d := cmd.PersistentFlags().Lookup("api").DefValue; d != "http://127.0.0.1:42353" {
		t.Fatalf("--api default %q", d)
	}
	if d := cmd.PersistentFlags().Lookup("output").DefValue; d != "text" {
		t.Fatalf("-o default %q", d)
	}
	out, _, err := run(t, "--version")
	if err != nil || out != "conclavectl v9.9.9-test\n" {
		t.Fatalf("--version: %v %q", err, out)
	}
	c := NewClient("10.0.0.1:42353/", "")
	if c.API != "http://10.0.0.1:42353" || c.HTTP.Timeout != 30*time.Second {
		t.Fatalf("client %+v", c)
	}
}

// TestClient uses the typed client directly, as an agent would.
// TestClient calls the client directly, which reads no environment, so
// unlike the CLI tests it needs no cleanEnv and runs in parallel.
func TestClient(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	c := NewClient(f.URL(), "")
	ctx := context.Background()
	b, err := c.AddBackend(ctx, "https://n1.example.org/bigbluebutton/api/", "s", json.RawMessage(`{"tags":["a"]}`))
	if err != nil || b.ID != "b-1" || b.AdminState != "init" {
		t.Fatalf("add: %+v %v", b, err)
	}
	if _, err := c.AddBackend(ctx, "https://n1.example.org/bigbluebutton/api/", "s", nil); ErrorCode(err) != "exists" {
		t.Fatalf("add twice: %v", err)
	}
	if b, err = c.SetBackend(ctx, "n1.example.org", json.RawMessage(`{"load_factor":3}`)); err != nil || compact(b.Settings) != `{"load_factor":3,"tags":["a"]}` {
		t.Fatalf("set: %+v %v", b, err)
	}
	if b, err = c.EnableBackend(ctx, b.URL); err != nil || b.AdminState != "ready" {
		t.Fatalf("enable: %+v %v", b, err)
	}
	if b, err = c.DisableBackend(ctx, "b-1"); err != nil || b.AdminState != "stopped" {
		t.Fatalf("disable: %+v %v", b, err)
	}
	if bs, err := c.Backends(ctx); err != nil || len(bs) != 1 {
		t.Fatalf("list: %+v %v", bs, err)
	}
	if b, err := c.Backend(ctx, "nosuch"); ErrorCode(err) != "not_found" || b != nil {
		t.Fatalf("get nosuch: %+v %v", b, err)
	}
	if r, err := c.DeleteBackend(ctx, "b-1", false); err != nil || !r.Removed || r.Backend.ID != "b-1" {
		t.Fatalf("delete: %+v %v", r, err)
	}
	if _, err := c.AddFrontend(ctx, "k", "s", nil); err != nil {
		t.Fatal(err)
	}
	if fe, err := c.SetFrontend(ctx, "k", json.RawMessage(`{"required_tags":["a"]}`)); err != nil || compact(fe.Settings) != `{"required_tags":["a"]}` {
		t.Fatalf("set frontend: %+v %v", fe, err)
	}
	if fe, err := c.Frontend(ctx, "k"); err != nil || fe.Key != "k" {
		t.Fatalf("frontend: %+v %v", fe, err)
	}
	if fs, err := c.Frontends(ctx); err != nil || len(fs) != 1 || fs[0].Secret != "s" {
		t.Fatalf("frontends: %+v %v", fs, err)
	}
	if err := c.DeleteFrontend(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if ms, err := c.Meetings(ctx, ""); err != nil || ms == nil {
		t.Fatalf("meetings: %v %v", ms, err)
	}
	if err := c.JoinPeer(ctx, "p1", "127.0.0.1:1", ""); err != nil {
		t.Fatal(err)
	}
	if ps, err := c.Peers(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("peers: %+v %v", ps, err)
	}
	if err := c.RemovePeer(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
}

func TestCompact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":     "{}",
		"null": "{}",
		"{}":   "{}",
		"{ \"tags\" : [ \"a\" ] ,\n \"load_factor\": 2 }": `{"tags":["a"],"load_factor":2}`,
	} {
		if got := compact(json.RawMessage(in)); got != want {
			t.Errorf("compact(%q) = %q, want %q", in, got, want)
		}
	}
}
