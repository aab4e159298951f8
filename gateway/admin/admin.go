// Package admin is Conclave's admin REST API (/api/v1: status, peers,
// backends, frontends, meetings, recordings, snapshots, the agents' load
// key). It answers in the JSON shapes of package adminapi, and depends
// only on the small interfaces it defines: Cluster for the replicated core
// and Requests for the gateway's request plumbing (authorization, bodies
// read within their bound).
package admin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode"
)

// adminTimeout bounds an admin request (a write may wait for an election).
const adminTimeout = 15 * time.Second

// WriteJSON answers v as JSON with status.
func WriteJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(ctx, fasthttp.StatusInternalServerError, "internal", "encoding the answer failed")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// WriteError answers an adminapi.Error.
func WriteError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	b, _ := json.Marshal(adminapi.Error{Error: msg, Code: code})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// viewBackend is a backend as the admin API shows it: no secret.
func viewBackend(b fsm.Backend, bound int) adminapi.Backend {
	return adminapi.Backend{
		ID: b.ID, URL: b.URL, Settings: rawJSON(b.Settings), AdminState: string(b.AdminState), NodeState: string(b.NodeState),
		Meetings: b.Meetings, Attendees: b.Attendees, Videos: b.Videos, Voice: b.Voice, LatencyNs: b.LatencyNs, LoadFactor: b.LoadFactor(),
		LastError: b.LastError, CreatedAt: b.CreatedAt, StateChangedAt: b.StateChangedAt, BoundMeetings: bound,
	}
}

// rawJSON is v (settings) as the raw JSON the admin API's types carry.
func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// viewMeeting is a meeting without its kept create parameters (they carry
// passwords and relay URLs).
func viewMeeting(m fsm.Meeting) adminapi.Meeting {
	return adminapi.Meeting{InternalID: m.InternalID, Frontend: m.Frontend, MeetingID: m.MeetingID, BackendID: m.BackendID,
		CreatedAt: m.CreatedAt, VoiceBridge: m.VoiceBridge, Lost: m.Lost, LostAt: m.LostAt, Recreating: m.Recreating,
		RecreatedAt: m.RecreatedAt, Recreations: m.Recreations}
}

// Cluster is what the admin API needs of the replicated core.
// *raftnode.Node implements it.
type Cluster interface {
	// FSM is the local replica.
	FSM() *fsm.FSM
	// Apply commits a command (forwarded to the leader when needed) and
	// returns once the local replica has applied it too.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// ConsistentRead waits until the local replica holds every write
	// acknowledged before the call.
	ConsistentRead(ctx context.Context) error
	Join(ctx context.Context, req raftnode.JoinRequest) error
	Remove(ctx context.Context, id string) error
	Peers(ctx context.Context) ([]raftnode.PeerInfo, error)
	Status() raftnode.Status
	Snapshot() error
}

// Requests is the request plumbing the gateway lends the admin API.
type Requests interface {
	// Authorize checks the bearer token for scope, answering 401/403 itself.
	Authorize(ctx *fasthttp.RequestCtx, scope string) (*auth.Claims, bool)
	// HasBody reports whether the request declares a body (never reading it).
	HasBody(ctx *fasthttp.RequestCtx) bool
	// ReadBody reads the body within limit, holding a place in the
	// gateway's body gate until release; when it cannot, it answers the
	// refusal itself and ok is false.
	ReadBody(ctx *fasthttp.RequestCtx, limit int) (body []byte, release func(), ok bool)
	// RefuseUnread answers a caller refused before its body was read: the
	// body is drained, not kept, and the refusal counted.
	RefuseUnread(ctx *fasthttp.RequestCtx)
}

// Config configures the admin API.
type Config struct {
	// JWTSecret derives the agents' load keys ("" : none are handed out).
	JWTSecret string
	// DeleteCentral, when set, deletes recordings' central copies (the
	// frontend's, before the frontend goes: its index entries go with it,
	// and nothing would reach those files again).
	DeleteCentral func(ctx context.Context, recs []fsm.Recording) error
}

// Handler serves the admin API.
type Handler struct {
	cfg     Config
	cluster Cluster
	req     Requests
}

// New makes the admin API over a cluster.
func New(cfg Config, cluster Cluster, req Requests) *Handler {
	return &Handler{cfg: cfg, cluster: cluster, req: req}
}

// MaxBody bounds an admin API body (JSON: a backend, a frontend with its
// settings, a peer).
const MaxBody = 64 << 10

// Serve routes /api/v1/... (except the internal peer calls).
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	// The raw path: a backend named by its URL arrives path-escaped, and
	// fasthttp's Path() would already have turned its %2F into separators.
	raw, _, _ := strings.Cut(string(ctx.URI().PathOriginal()), "?")
	rest := strings.TrimPrefix(raw, "/api/v1/")
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	method := string(ctx.Method())
	// Agents may register a backend and change their own; all else is admin.
	scope := auth.ScopeAdmin
	if parts[0] == "backends" && (method == "POST" && len(parts) == 1 || method == "PATCH" && len(parts) == 2) ||
		isLoadKeyRoute(parts, method) {
		scope = auth.ScopeAgent
	}
	claims, ok := h.req.Authorize(ctx, scope)
	if !ok {
		if h.req.HasBody(ctx) {
			h.req.RefuseUnread(ctx) // the body of a refused caller is never read
		}
		return
	}
	// The body is read only now, within MaxBody, and at most a few at once
	// per caller (the gateway's gate).
	var body []byte
	if h.req.HasBody(ctx) && method != "GET" && method != "HEAD" {
		var release func()
		if body, release, ok = h.req.ReadBody(ctx, MaxBody); !ok {
			return
		}
		defer release()
	}
	rctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	a := &adminRequest{h: h, ctx: ctx, rctx: rctx, claims: claims, method: method, parts: parts, body: body}
	a.route()
}

type adminRequest struct {
	h      *Handler
	ctx    *fasthttp.RequestCtx
	rctx   context.Context
	claims *auth.Claims
	method string
	parts  []string
	body   []byte // read within maxAdminBody by serveAdmin
}

// consistentWait bounds the consistent read before an admin listing: a
// leaderless cluster still answers, from this replica, after it.
const consistentWait = 2 * time.Second

func (a *adminRequest) route() {
	p, m := a.parts, a.method
	n := len(p)
	if m == "GET" && p[0] != "status" {
		// Read-your-writes across peers: a change made through one peer is
		// listed by the next, whichever peer round-robin DNS picks.
		cctx, cancel := context.WithTimeout(a.rctx, consistentWait)
		_ = a.h.cluster.ConsistentRead(cctx)
		cancel()
	}
	switch {
	case p[0] == "status" && n == 1 && m == "GET":
		WriteJSON(a.ctx, 200, a.h.cluster.Status()) // raftnode.Status is adminapi.Status
	case p[0] == "peers" && n == 1 && m == "GET":
		a.listPeers()
	case p[0] == "peers" && n == 1 && m == "POST":
		a.joinPeer()
	case p[0] == "peers" && n == 2 && m == "DELETE":
		a.removePeer(p[1])
	case isLoadKeyRoute(p, m):
		a.agentLoadKey()
	case p[0] == "backends" && n == 1 && m == "GET":
		a.listBackends()
	case p[0] == "backends" && n == 1 && m == "POST":
		a.addBackend()
	case p[0] == "backends" && n == 2 && m == "GET":
		a.withBackend(p[1], func(b fsm.Backend) { WriteJSON(a.ctx, 200, viewBackend(b, a.h.cluster.FSM().MeetingCount(b.ID))) })
	case p[0] == "backends" && n == 2 && m == "PATCH":
		a.withBackend(p[1], a.patchBackend)
	case p[0] == "backends" && n == 2 && m == "DELETE":
		a.withBackend(p[1], a.deleteBackend)
	case p[0] == "backends" && n == 3 && m == "POST" && (p[2] == "enable" || p[2] == "disable"):
		state := fsm.AdminReady
		if p[2] == "disable" {
			state = fsm.AdminStopped
		}
		a.withBackend(p[1], func(b fsm.Backend) {
			a.applyBackend(&fsm.SetBackendAdminState{ID: b.ID, State: state, Now: now()}, 200)
		})
	case p[0] == "frontends" && n == 1 && m == "GET":
		a.listFrontends()
	case p[0] == "frontends" && n == 1 && m == "POST":
		a.addFrontend()
	case p[0] == "frontends" && n == 2 && m == "GET":
		a.getFrontend(p[1])
	case p[0] == "frontends" && n == 2 && m == "PATCH":
		a.patchFrontend(p[1])
	case p[0] == "frontends" && n == 2 && m == "DELETE":
		a.deleteFrontend(p[1])
	case p[0] == "recordings" && n == 1 && m == "GET":
		a.listRecordings(string(a.ctx.QueryArgs().Peek("frontend")))
	case p[0] == "meetings" && n == 1 && m == "GET":
		ms := a.h.cluster.FSM().Meetings(string(a.ctx.QueryArgs().Peek("frontend")))
		out := make([]adminapi.Meeting, len(ms))
		for i := range ms {
			out[i] = viewMeeting(ms[i])
		}
		WriteJSON(a.ctx, 200, out)
	case p[0] == "snapshot" && n == 1 && m == "POST":
		if err := a.h.cluster.Snapshot(); err != nil {
			WriteError(a.ctx, 500, "internal", "snapshot: "+err.Error())
			return
		}
		WriteJSON(a.ctx, 200, map[string]bool{"ok": true})
	default:
		WriteError(a.ctx, fasthttp.StatusNotFound, "not_found", "no route "+m+" /api/v1/"+strings.Join(p, "/"))
	}
}

func now() int64 { return time.Now().UnixNano() }

// decodeBody strictly decodes a JSON body, answering 400 itself on error.
func (a *adminRequest) decodeBody(v any) bool {
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(a.ctx, 400, "invalid", "bad JSON body: "+err.Error())
		return false
	}
	return true
}

// fail maps an error from Apply or the cluster onto an HTTP answer.
func (a *adminRequest) fail(err error) {
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		status := map[string]int{fsm.CodeInvalid: 400, fsm.CodeNotFound: 404, fsm.CodeExists: 409, fsm.CodeConflict: 409}[fe.Code]
		if status == 0 {
			status = 400
		}
		WriteError(a.ctx, status, fe.Code, fe.Msg)
	case raftnode.IsNotFound(err):
		WriteError(a.ctx, 404, "not_found", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, raftnode.ErrNoLeader):
		WriteError(a.ctx, 503, "unavailable", "the cluster did not commit in time (no quorum?): "+err.Error())
	default:
		WriteError(a.ctx, 500, "internal", err.Error())
	}
}

// apply commits c and returns the FSM's result, answering errors itself.
func (a *adminRequest) apply(c fsm.Command) (*fsm.Result, bool) {
	res, err := a.h.cluster.Apply(a.rctx, c)
	if err == nil {
		err = raftnode.ResultError(res)
	}
	if err != nil {
		a.fail(err)
		return nil, false
	}
	return res, true
}

func (a *adminRequest) listPeers() {
	peers, err := a.h.cluster.Peers(a.rctx)
	if err != nil {
		a.fail(err)
		return
	}
	WriteJSON(a.ctx, 200, peers) // raftnode.PeerInfo is adminapi.Peer
}

func (a *adminRequest) joinPeer() {
	var body adminapi.JoinPeerRequest
	if !a.decodeBody(&body) {
		return
	}
	if body.ID == "" || body.RaftAddr == "" {
		WriteError(a.ctx, 400, "invalid", "id and raft_addr are required")
		return
	}
	req := raftnode.JoinRequest{ID: body.ID, RaftAddr: body.RaftAddr, HTTPAddr: body.HTTPAddr, GossipAddr: body.GossipAddr}
	if err := a.h.cluster.Join(a.rctx, req); err != nil {
		a.fail(err)
		return
	}
	WriteJSON(a.ctx, 200, map[string]bool{"ok": true})
}

func (a *adminRequest) removePeer(id string) {
	if err := a.h.cluster.Remove(a.rctx, id); err != nil {
		a.fail(err)
		return
	}
	WriteJSON(a.ctx, 200, map[string]bool{"ok": true})
}

func (a *adminRequest) listBackends() {
	counts := a.h.cluster.FSM().MeetingCounts()
	bs := a.h.cluster.FSM().Backends()
	out := make([]adminapi.Backend, len(bs))
	for i, b := range bs {
		out[i] = viewBackend(b, counts[b.ID])
	}
	WriteJSON(a.ctx, 200, out)
}

// withBackend resolves ref (ID, URL or host), answering 404 itself. A miss
// is confirmed with a consistent read: the backend may have been added a
// moment ago through another peer.
func (a *adminRequest) withBackend(ref string, fn func(fsm.Backend)) {
	b, ok := a.h.cluster.FSM().FindBackend(ref)
	if !ok && a.h.cluster.ConsistentRead(a.rctx) == nil {
		b, ok = a.h.cluster.FSM().FindBackend(ref)
	}
	if !ok {
		WriteError(a.ctx, 404, "not_found", "no backend "+ref+" (name it by ID, URL or host)")
		return
	}
	fn(b)
}

// ownedURL normalises a backend URL from a request and checks that the
// caller's token may act on it, answering 400 or 403 (with denied) itself.
func (a *adminRequest) ownedURL(raw, denied string) (string, bool) {
	norm, err := fsm.NormalizeBackendURL(raw)
	if err != nil {
		a.fail(err)
		return "", false
	}
	if !a.agentOwns(norm) {
		WriteError(a.ctx, 403, "forbidden", denied)
		return "", false
	}
	return norm, true
}

// agentOwns reports whether an agent token may change backend b: its
// subject must be the backend URL's host:port (a bare host is refused).
// Admin tokens may change any.
func (a *adminRequest) agentOwns(backendURL string) bool {
	if a.claims.HasScope(auth.ScopeAdmin) {
		return true
	}
	return auth.AgentMayChange(a.claims.Subject, backendURL)
}

func (a *adminRequest) addBackend() {
	var req adminapi.AddBackendRequest
	if !a.decodeBody(&req) {
		return
	}
	norm, ok := a.ownedURL(req.URL, "an agent token may only register its own node (subject host:port = the URL's)")
	if !ok {
		return
	}
	if a.isPeerAddress(norm) {
		return
	}
	if !a.checked(fsm.CheckBackendSettings(fsm.BackendSettings{}, req.Settings)) {
		return
	}
	isAgent := !a.claims.HasScope(auth.ScopeAdmin)
	res, ok := a.apply(&fsm.AddBackend{ID: newID("b-"), URL: norm, Secret: req.Secret, Settings: req.Settings, Now: now(), IfAbsent: isAgent})
	if !ok {
		return
	}
	WriteJSON(a.ctx, 201, viewBackend(*res.Backend, a.h.cluster.FSM().MeetingCount(res.Backend.ID)))
}

func (a *adminRequest) patchBackend(b fsm.Backend) {
	if !a.agentOwns(b.URL) {
		WriteError(a.ctx, 403, "forbidden", "an agent token may only change its own node")
		return
	}
	if !json.Valid(a.body) {
		WriteError(a.ctx, 400, "invalid", "settings patch is not valid JSON")
		return
	}
	if !a.checked(fsm.CheckBackendSettings(b.Settings, a.body)) {
		return
	}
	a.applyBackend(&fsm.SetBackendSettings{ID: b.ID, Patch: a.body}, 200)
}

func (a *adminRequest) applyBackend(c fsm.Command, status int) {
	res, ok := a.apply(c)
	if !ok {
		return
	}
	WriteJSON(a.ctx, status, viewBackend(*res.Backend, a.h.cluster.FSM().MeetingCount(res.Backend.ID)))
}

func (a *adminRequest) deleteBackend(b fsm.Backend) {
	force := string(a.ctx.QueryArgs().Peek("force")) == "true"
	res, ok := a.apply(&fsm.RemoveBackend{ID: b.ID, Force: force, Now: now()})
	if !ok {
		return
	}
	bound := 0
	if !res.Removed {
		bound = a.h.cluster.FSM().MeetingCount(res.Backend.ID)
	}
	WriteJSON(a.ctx, 200, adminapi.BackendRemoval{Removed: res.Removed, Backend: viewBackend(*res.Backend, bound)})
}

func (a *adminRequest) viewFrontend(f fsm.Frontend) adminapi.Frontend {
	n := len(a.h.cluster.FSM().Meetings(f.Key))
	return adminapi.Frontend{Key: f.Key, Secret: f.Secret, Settings: rawJSON(f.Settings), CreatedAt: f.CreatedAt, Meetings: n}
}

func (a *adminRequest) listFrontends() {
	fs := a.h.cluster.FSM().Frontends()
	out := make([]adminapi.Frontend, len(fs))
	for i, f := range fs {
		out[i] = a.viewFrontend(f)
	}
	WriteJSON(a.ctx, 200, out)
}

func (a *adminRequest) getFrontend(key string) {
	f, ok := a.h.cluster.FSM().Frontend(key)
	if !ok {
		WriteError(a.ctx, 404, "not_found", "no frontend "+key)
		return
	}
	WriteJSON(a.ctx, 200, a.viewFrontend(f))
}

func (a *adminRequest) addFrontend() {
	var req adminapi.AddFrontendRequest
	if !a.decodeBody(&req) {
		return
	}
	if !a.checked(fsm.CheckFrontendSettings(fsm.FrontendSettings{}, req.Settings)) {
		return
	}
	a.applyFrontend(&fsm.AddFrontend{Key: req.Key, Secret: req.Secret, Settings: req.Settings, Now: now()}, 201)
}

// patchFrontend changes a frontend's settings (a JSON merge patch).
func (a *adminRequest) patchFrontend(key string) {
	if f, ok := a.h.cluster.FSM().Frontend(key); ok && !a.checked(fsm.CheckFrontendSettings(f.Settings, a.body)) {
		return
	}
	a.applyFrontend(&fsm.SetFrontendSettings{Key: key, Patch: a.body}, 200)
}

// checked answers err (a 400 naming the limit or the mistake) unless it is
// nil: settings are checked before they are proposed, so nothing the state
// would refuse reaches the Raft log.
func (a *adminRequest) checked(err error) bool {
	if err != nil {
		a.fail(err)
		return false
	}
	return true
}

func (a *adminRequest) applyFrontend(c fsm.Command, status int) {
	res, ok := a.apply(c)
	if !ok {
		return
	}
	WriteJSON(a.ctx, status, a.viewFrontend(*res.Frontend))
}

func (a *adminRequest) deleteFrontend(key string) {
	if del := a.h.cfg.DeleteCentral; del != nil {
		recs := a.h.cluster.FSM().RecordingsOf(key, func(r *fsm.Recording) bool { return len(r.Central) > 0 })
		if err := del(a.rctx, recs); err != nil {
			WriteError(a.ctx, 503, "unavailable", "the frontend's central recordings could not be deleted (nothing was removed; retry): "+err.Error())
			return
		}
	}
	if _, ok := a.apply(&fsm.RemoveFrontend{Key: key}); !ok {
		return
	}
	WriteJSON(a.ctx, 200, map[string]bool{"removed": true})
}

// newID makes a short random ID for a new backend.
func newID(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (a *adminRequest) listRecordings(frontend string) {
	st := a.h.cluster.FSM()
	out := []adminapi.Recording{}
	for _, r := range st.RecordingsOf(frontend, nil) {
		_, present := st.Backend(r.BackendID)
		out = append(out, adminapi.Recording{RecordID: r.RecordID, Frontend: r.Frontend, MeetingID: r.MeetingID, BackendID: r.BackendID,
			BackendPresent: present, State: r.State, StartTime: r.StartTime, Meta: r.Meta})
	}
	WriteJSON(a.ctx, 200, out)
}
