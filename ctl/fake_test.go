package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/conclave-lb/conclave/auth"
)

// request is one call the fake API received.
type request struct {
	Method, URI, Body, Auth string
}

// fakeAPI implements the admin API routes over in-memory maps, the way
// docs/API.md describes them, and records every request.
type fakeAPI struct {
	t      *testing.T
	srv    *httptest.Server
	secret string // when set, a bearer token with scope conclave:admin is required

	mu        sync.Mutex
	reqs      []request
	nextID    int
	backends  []*Backend // in creation order
	secrets   map[string]string
	frontends []*Frontend
	meetings  []Meeting
	peers     []Peer
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, secrets: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) URL() string { return f.srv.URL }

// Requests returns what was received since the last call, and forgets it.
func (f *fakeAPI) Requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, format string, a ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, a...), "code": code})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, request{r.Method, r.URL.RequestURI(), string(body), r.Header.Get("Authorization")})

	if f.secret != "" {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeErr(w, 401, "unauthorized", "a bearer token is required")
			return
		}
		c, err := auth.Verify(f.secret, tok)
		if err != nil {
			writeErr(w, 401, "unauthorized", "invalid token")
			return
		}
		if !c.HasScope(auth.ScopeAdmin) {
			writeErr(w, 403, "forbidden", "token lacks scope %s", auth.ScopeAdmin)
			return
		}
	}

	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v1/")
	if !ok {
		writeErr(w, 404, "not_found", "no route")
		return
	}
	p := strings.Split(rest, "/")
	for i := range p {
		p[i], _ = url.PathUnescape(p[i])
	}
	n, m := len(p), r.Method
	switch {
	case p[0] == "peers" && n == 1 && m == "GET":
		writeJSON(w, 200, nonNil(f.peers))
	case p[0] == "peers" && n == 1 && m == "POST":
		var req JoinPeerRequest
		if !decodeStrict(w, body, &req) {
			return
		}
		if req.ID == "" || req.RaftAddr == "" {
			writeErr(w, 400, "invalid", "id and raft_addr are required")
			return
		}
		f.peers = append(f.peers, Peer{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Voter: true, State: "Follower", Reachable: true})
		writeJSON(w, 200, map[string]bool{"ok": true})
	case p[0] == "peers" && n == 2 && m == "DELETE":
		for i, pe := range f.peers {
			if pe.ID == p[1] {
				f.peers = append(f.peers[:i], f.peers[i+1:]...)
				writeJSON(w, 200, map[string]bool{"ok": true})
				return
			}
		}
		writeErr(w, 404, "not_found", "%s is not a member", p[1])

	case p[0] == "backends" && n == 1 && m == "GET":
		out := []Backend{}
		for _, b := range f.backends {
			out = append(out, f.view(b))
		}
		writeJSON(w, 200, out)
	case p[0] == "backends" && n == 1 && m == "POST":
		var req AddBackendRequest
		if !decodeStrict(w, body, &req) {
			return
		}
		u := req.URL
		if !strings.HasSuffix(u, "/bigbluebutton/api/") {
			u = strings.TrimRight(u, "/") + "/bigbluebutton/api/"
		}
		if _, ok := f.find(u); ok {
			writeErr(w, 409, "exists", "backend %s exists", u)
			return
		}
		settings := json.RawMessage("{}")
		if len(req.Settings) > 0 {
			settings = req.Settings
		}
		f.nextID++
		b := &Backend{ID: fmt.Sprintf("b-%d", f.nextID), URL: u, Settings: settings, AdminState: "init", NodeState: "init", LoadFactor: 1}
		f.backends = append(f.backends, b)
		f.secrets[b.ID] = req.Secret
		writeJSON(w, 201, f.view(b))
	case p[0] == "backends" && n >= 2:
		b, ok := f.find(p[1])
		if !ok {
			writeErr(w, 404, "not_found", "no backend %s (name it by ID, URL or host)", p[1])
			return
		}
		switch {
		case n == 2 && m == "GET":
			writeJSON(w, 200, f.view(b))
		case n == 2 && m == "PATCH":
			merged, err := mergePatch(b.Settings, body)
			if err != nil {
				writeErr(w, 400, "invalid", "%v", err)
				return
			}
			b.Settings = merged
			writeJSON(w, 200, f.view(b))
		case n == 3 && m == "POST" && (p[2] == "enable" || p[2] == "disable"):
			b.AdminState = map[string]string{"enable": "ready", "disable": "stopped"}[p[2]]
			writeJSON(w, 200, f.view(b))
		case n == 2 && m == "DELETE":
			v := f.view(b)
			if v.BoundMeetings > 0 && r.URL.Query().Get("force") != "true" {
				b.AdminState = "decommissioned"
				writeJSON(w, 200, BackendRemoval{Removed: false, Backend: f.view(b)})
				return
			}
			for i := range f.backends {
				if f.backends[i] == b {
					f.backends = append(f.backends[:i], f.backends[i+1:]...)
					break
				}
			}
			writeJSON(w, 200, BackendRemoval{Removed: true, Backend: v})
		default:
			writeErr(w, 404, "not_found", "no route %s %s", m, r.URL.Path)
		}

	case p[0] == "frontends" && n == 1 && m == "GET":
		out := []Frontend{}
		for _, fe := range f.frontends {
			out = append(out, *fe)
		}
		writeJSON(w, 200, out)
	case p[0] == "frontends" && n == 1 && m == "POST":
		var req AddFrontendRequest
		if !decodeStrict(w, body, &req) {
			return
		}
		for _, fe := range f.frontends {
			if fe.Key == req.Key {
				writeErr(w, 409, "exists", "frontend %s exists", req.Key)
				return
			}
		}
		settings := json.RawMessage("{}")
		if len(req.Settings) > 0 {
			settings = req.Settings
		}
		fe := &Frontend{Key: req.Key, Secret: req.Secret, Settings: settings, CreatedAt: 1700000000000000000}
		f.frontends = append(f.frontends, fe)
		writeJSON(w, 201, fe)
	case p[0] == "frontends" && n == 2 && (m == "GET" || m == "PATCH" || m == "DELETE"):
		for i, fe := range f.frontends {
			if fe.Key != p[1] {
				continue
			}
			if m == "GET" {
				writeJSON(w, 200, fe)
				return
			}
			if m == "DELETE" {
				f.frontends = append(f.frontends[:i], f.frontends[i+1:]...)
				writeJSON(w, 200, map[string]bool{"removed": true})
				return
			}
			merged, err := mergePatch(fe.Settings, body)
			if err != nil {
				writeErr(w, 400, "invalid", "%v", err)
				return
			}
			fe.Settings = merged
			writeJSON(w, 200, fe)
			return
		}
		writeErr(w, 404, "not_found", "no frontend %s", p[1])

	case p[0] == "meetings" && n == 1 && m == "GET":
		out := []Meeting{}
		for _, mt := range f.meetings {
			if k := r.URL.Query().Get("frontend"); k == "" || k == mt.Frontend {
				out = append(out, mt)
			}
		}
		writeJSON(w, 200, out)
	default:
		writeErr(w, 404, "not_found", "no route %s %s", m, r.URL.Path)
	}
}

// find resolves a backend by ID, full URL or host.
func (f *fakeAPI) find(ref string) (*Backend, bool) {
	for _, b := range f.backends {
		u, _ := url.Parse(b.URL)
		if b.ID == ref || b.URL == ref || u.Host == ref || u.Hostname() == ref {
			return b, true
		}
	}
	return nil, false
}

func (f *fakeAPI) view(b *Backend) Backend {
	v := *b
	v.BoundMeetings = 0
	for _, m := range f.meetings {
		if m.BackendID == b.ID {
			v.BoundMeetings++
		}
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func decodeStrict(w http.ResponseWriter, body []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, 400, "invalid", "bad JSON body: %v", err)
		return false
	}
	return true
}

// mergePatch applies a top-level JSON merge patch (null unsets a key).
func mergePatch(cur json.RawMessage, patch []byte) (json.RawMessage, error) {
	var c, p map[string]any
	if len(cur) > 0 {
		if err := json.Unmarshal(cur, &c); err != nil {
			return nil, err
		}
	}
	if err := json.Unmarshal(patch, &p); err != nil || p == nil {
		return nil, fmt.Errorf("settings must be a JSON object")
	}
	if c == nil {
		c = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return json.Marshal(c)
}
