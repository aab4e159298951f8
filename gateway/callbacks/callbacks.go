// Package callbacks relays BBB's callbacks (meeting ended, recording
// ready) from the nodes to the clients' own URLs: relay URLs signed under
// the cluster key are put into each create, verified when the node calls
// back, and delivered by a small queue of workers. It depends only on the
// Cluster interface it defines and the hooks of its Config.
package callbacks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
)

// BBB calls back the URLs a client puts in a meeting's metadata: a GET to
// meta_endCallbackUrl when it ends (with the meetingID the node knows), and
// a POST to meta_bbb-recording-ready-url with a JWT signed with the *node's*
// secret. The client knows neither the internal meeting ID nor the node's
// secret, so on create the gateway points both at itself and relays:
// IDs shown as the client's own, JWT re-signed with the frontend's secret.
//
// The relay URL names the frontend, the meeting (internal and client's
// ID), the backend and the client's URL, with an HMAC under the cluster
// key (fsm.SetClusterKey): a secret of the cluster no tenant knows, so no
// one but the gateway can make a relay URL, and one made for a meeting on
// one backend is refused for any other. A relay is queued and delivered
// by a few workers with retries; the backend gets the same answer ("ok")
// whatever the client's URL did, so the relay tells nothing about it.
// Relay URLs are shown to no client: answers carrying the metadata
// (getMeetingInfo, getMeetings, getRecordings) show the client's own URL.

const (
	Prefix            = "/conclave/callback/" // the relay's route on every peer
	metaEndCallback   = "meta_endcallbackurl"
	metaRecordingURL  = "meta_bbb-recording-ready-url"
	callbackTimeout   = 10 * time.Second
	Attempts          = 3 // deliveries tried per relay
	maxCallbackURLLen = 2048
	relayQueueLen     = 1024 // callbacks waiting for delivery
	relayWorkers      = 4
	relayDedupWindow  = 10 * time.Minute // a repeated end callback is delivered once
)

// Client delivers relays. It does not follow redirects: a target
// could otherwise send the peer anywhere.
var Client = &http.Client{
	Timeout:       callbackTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Sign is the relay URL's HMAC under the cluster key. Every field is
// length-prefixed, so no two field lists sign alike.
//
// instance, when not empty, is the meeting's claim time (Meeting.CreatedAt)
// and is signed too; relay URLs made before it existed carry none and
// verify as they did.
func Sign(key []byte, kind, frontend, internal, meetingID, backend, target, instance string) string {
	m := hmac.New(sha256.New, key)
	var b []byte
	b = append(b, "conclave-callback-v2"...)
	fields := []string{kind, frontend, internal, meetingID, backend, target}
	if instance != "" {
		fields = append(fields, instance)
	}
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// ClusterKey returns the cluster key, committing a new random one when the
// state has none yet (the first committed wins on every peer).
func (rl *Relay) ClusterKey(ctx context.Context) []byte {
	return control.DrawClusterKey(ctx, rl.cluster.FSM(), rl.cluster.Apply, rl.log)
}

// relayTarget returns the client's URL carried by a relay URL (ours or
// another peer's), and whether s is one.
func relayTarget(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, Prefix) {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false
	}
	kind, ok := strings.CutPrefix(u.Path, Prefix)
	if !ok || (kind != "end" && kind != "recording-ready") {
		return "", false
	}
	q := u.Query()
	if q.Get("sig") == "" {
		return "", false
	}
	return q.Get("url"), true
}

// UnrelayArgs puts back the client's own callback URLs where args carry
// relay URLs, and drops the callbacks the gateway asked for alone: what a
// meeting's kept create parameters need (RelayArgs signs relays anew for
// whichever node re-creates it), without two signed URLs per meeting in
// the replicated state.
func UnrelayArgs(args *fasthttp.Args) {
	var keys [][]byte
	args.VisitAll(func(k, _ []byte) {
		switch strings.ToLower(string(k)) {
		case metaEndCallback, metaRecordingURL:
			keys = append(keys, append([]byte(nil), k...))
		}
	})
	for _, k := range keys {
		t, ok := relayTarget(string(args.PeekBytes(k)))
		switch {
		case !ok:
		case t == "":
			args.DelBytes(k)
		default:
			args.SetBytesK(k, t)
		}
	}
}

// HideRelayURLs shows the client's own callback URL wherever an answer
// (meeting metadata, a recording's metadata) carries a relay URL, and drops
// the element when the client gave none (the gateway asked for it alone).
func HideRelayURLs(doc []byte) []byte {
	if !bytes.Contains(doc, []byte(Prefix)) {
		return doc
	}
	els, err := xmlscan.Scan(doc)
	if err != nil {
		return doc
	}
	var out []byte
	last := 0
	for _, e := range els {
		// els are in closing order; a relay URL is a leaf's text, so an
		// element before last holds one already patched: left alone.
		if e.Start < last {
			continue
		}
		target, ok := relayTarget(e.Text)
		if !ok {
			continue
		}
		if target == "" {
			out = append(out, doc[last:e.Start]...)
			last = e.End
			continue
		}
		out = append(out, doc[last:e.ContentStart]...)
		out = append(out, xmlscan.EscapeText(target)...)
		last = e.ContentEnd
	}
	if out == nil {
		return doc
	}
	return append(out, doc[last:]...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validTarget reports whether a client's callback URL may be relayed to:
// http(s), not too long, and not one of the peers' own addresses.
func (rl *Relay) validTarget(target string) (*url.URL, bool) {
	if len(target) > maxCallbackURLLen {
		return nil, false
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, false
	}
	hp, err := auth.HostPort(target)
	if err != nil {
		return nil, false
	}
	for _, p := range rl.cluster.FSM().Peers() {
		for _, addr := range []string{p.HTTPAddr, p.RaftAddr, p.GossipAddr} {
			if addr != "" && auth.SameHostPort(hp, addr) {
				return nil, false
			}
		}
	}
	return u, true
}

// RelayArgs points a create's end and recording-ready callbacks at this
// peer's relay, signed for backend b. Both are always set, so the state
// learns at once that the meeting ended or that a recording is ready; the
// relay passes them on to the client's own URLs only when it gave some.
// Without a public base URL configured it leaves them alone. A client URL
// that cannot be relayed to (not http(s), a peer's own address) is dropped;
// a relay URL (a retry on another backend, or a re-creation) is signed anew.
func (rl *Relay) RelayArgs(args *fasthttp.Args, fe *fsm.Frontend, b *fsm.Backend, mid string, createdAt int64) {
	if rl.cfg.Base == "" {
		return
	}
	var keys [][]byte
	hasEnd, hasReady := false, false
	args.VisitAll(func(k, _ []byte) {
		switch strings.ToLower(string(k)) {
		case metaEndCallback:
			hasEnd = true
			keys = append(keys, append([]byte(nil), k...))
		case metaRecordingURL:
			hasReady = true
			keys = append(keys, append([]byte(nil), k...))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	key := rl.ClusterKey(ctx)
	if key == nil {
		rl.log.Warn("callback URLs dropped: no cluster key yet to sign their relays", "frontend", fe.Key)
		for _, k := range keys {
			args.DelBytes(k)
		}
		return
	}
	if !hasEnd {
		keys = append(keys, []byte("meta_endCallbackUrl"))
	}
	if !hasReady {
		keys = append(keys, []byte("meta_bbb-recording-ready-url"))
	}
	internal := string(args.Peek("meetingID"))
	for _, k := range keys {
		target := string(args.PeekBytes(k))
		if t, ok := relayTarget(target); ok {
			target = t
		}
		if target != "" {
			if _, ok := rl.validTarget(target); !ok {
				target = "" // still ask for the callback, relay it nowhere
			}
		}
		kind := "end"
		if strings.ToLower(string(k)) == metaRecordingURL {
			kind = "recording-ready"
		}
		at := strconv.FormatInt(createdAt, 10)
		q := url.Values{"fe": {fe.Key}, "m": {internal}, "mid": {mid}, "be": {b.ID}, "url": {target}, "at": {at},
			"sig": {Sign(key, kind, fe.Key, internal, mid, b.ID, target, at)}}
		args.SetBytesK(k, rl.cfg.Base+Prefix+kind+"?"+q.Encode())
	}
}

// relayJob is one callback to deliver to a client.
type relayJob struct {
	kind, frontend string
	build          func() (*http.Request, error)
}

// Cluster is what the relay needs of the replicated core.
type Cluster interface {
	// FSM is the local replica.
	FSM() *fsm.FSM
	// Apply commits a command (the cluster key, drawn once).
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
}

// Config configures the relay.
type Config struct {
	// Base is this peer's URL as backends reach it (e.g.
	// http://peer1:42353); empty leaves clients' callback URLs alone.
	Base   string
	Logger *slog.Logger
	// Counter counts relays by kind and result (conclave_callback_relays_total).
	Counter *prometheus.CounterVec
	// Release forgets a meeting its node says has ended, if it is still
	// the instance claimed at createdAt (0: whichever).
	Release func(internalID, backendID string, createdAt int64)
	// SyncRecordings refreshes the index entries of recordings ids on b.
	SyncRecordings func(b *fsm.Backend, ids []string) error
}

// Relay is one peer's callback relay: the delivery queue and its workers
// (started on first use).
type Relay struct {
	cfg     Config
	cluster Cluster
	log     *slog.Logger

	once   sync.Once
	jobs   chan relayJob
	queued atomic.Int64 // relays accepted for delivery (tests, fuzzing)

	mu   sync.Mutex
	seen map[string]time.Time // end callbacks delivered, for relayDedupWindow
}

// New makes the relay of a peer.
func New(cfg Config, cluster Cluster) *Relay {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Relay{cfg: cfg, cluster: cluster, log: cfg.Logger}
}

// Queued counts the relays accepted for delivery (tests, fuzzing).
func (rl *Relay) Queued() int64 { return rl.queued.Load() }

// enqueue hands a relay to the workers; false when the queue is full.
func (rl *Relay) enqueue(j relayJob) bool {
	rl.once.Do(func() {
		rl.jobs = make(chan relayJob, relayQueueLen)
		for range relayWorkers {
			go func() {
				for j := range rl.jobs {
					rl.deliver(j)
				}
			}()
		}
	})
	select {
	case rl.jobs <- j:
		rl.queued.Add(1)
		return true
	default:
		return false
	}
}

// firstTime records an end callback and reports whether it is new.
func (rl *Relay) firstTime(key string, now time.Time) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.seen == nil {
		rl.seen = map[string]time.Time{}
	}
	if t, ok := rl.seen[key]; ok && now.Sub(t) < relayDedupWindow {
		return false
	}
	if len(rl.seen) > 10_000 {
		for k, t := range rl.seen {
			if now.Sub(t) >= relayDedupWindow {
				delete(rl.seen, k)
			}
		}
	}
	rl.seen[key] = now
	return true
}

// Serve relays one callback from a backend to the frontend. A
// relay URL that does not verify, or names a meeting the state binds to
// another backend, is refused (403) before anything goes out; a valid one
// is queued and answered "ok", whatever the client's URL will answer.
func (rl *Relay) Serve(ctx *fasthttp.RequestCtx, kind string) {
	if kind != "end" && kind != "recording-ready" {
		ctx.Error("unknown callback", fasthttp.StatusNotFound)
		return
	}
	args := ctx.QueryArgs()
	feKey, internal, mid := string(args.Peek("fe")), string(args.Peek("m")), string(args.Peek("mid"))
	beID, target, sig := string(args.Peek("be")), string(args.Peek("url")), string(args.Peek("sig"))
	at := string(args.Peek("at")) // the meeting instance (absent from older relay URLs)
	createdAt, err := strconv.ParseInt(at, 10, 64)
	st := rl.cluster.FSM()
	key := st.ClusterKey()
	if key == nil || len(target) > maxCallbackURLLen || (at != "" && err != nil) ||
		!hmac.Equal([]byte(sig), []byte(Sign(key, kind, feKey, internal, mid, beID, target, at))) {
		rl.refuseCallback(ctx, kind)
		return
	}
	fe, ok := st.Frontend(feKey)
	b, okB := st.Backend(beID)
	if !ok || !okB || !ownedBy(internal, feKey) {
		rl.refuseCallback(ctx, kind)
		return
	}
	// The meeting must be on that backend. BBB's end callback may come
	// after the meeting was released (an end through the API), so an
	// unbound meeting passes; one bound elsewhere (moved) does not.
	if m, ok := st.Meeting(internal); ok && m.BackendID != beID {
		rl.refuseCallback(ctx, kind)
		return
	}
	var u *url.URL
	if target != "" { // "": the client gave no URL; only the state learns
		if u, ok = rl.validTarget(target); !ok {
			rl.refuseCallback(ctx, kind)
			return
		}
	}
	var job relayJob
	switch kind {
	case "end":
		if got := args.Peek("meetingID"); len(got) > 0 && string(got) != internal {
			rl.refuseCallback(ctx, kind)
			return
		}
		if !rl.firstTime(beID+"\x00"+internal+"\x00"+at, time.Now()) { // each instance ends once
			rl.cfg.Counter.WithLabelValues(kind, "duplicate").Inc()
			ctx.SetContentType("text/plain")
			ctx.SetBodyString("ok")
			return
		}
		go rl.cfg.Release(internal, beID, createdAt)
		if u == nil {
			rl.answerUnrelayed(ctx, kind)
			return
		}
		q := u.Query()
		q.Set("recordingmarks", string(args.Peek("recordingmarks")))
		q.Set("meetingID", mid)
		u.RawQuery = q.Encode()
		target := u.String()
		job = relayJob{kind: kind, frontend: fe.Key, build: func() (*http.Request, error) {
			return http.NewRequest(http.MethodGet, target, nil)
		}}
	case "recording-ready":
		var claims struct {
			MeetingID string `json:"meeting_id"`
			RecordID  string `json:"record_id"`
			jwt.RegisteredClaims
		}
		_, err := jwt.ParseWithClaims(string(ctx.PostArgs().Peek("signed_parameters")), &claims,
			func(*jwt.Token) (any, error) { return []byte(b.Secret), nil }, jwt.WithValidMethods([]string{"HS256"}))
		if err != nil || claims.MeetingID != internal {
			rl.refuseCallback(ctx, kind)
			return
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"meeting_id": mid, "record_id": claims.RecordID,
		}).SignedString([]byte(fe.Secret))
		if err != nil {
			ctx.Error("signing failed", fasthttp.StatusInternalServerError)
			return
		}
		// Index the new recording now rather than at the next sync.
		go func() {
			if err := rl.cfg.SyncRecordings(&b, []string{claims.RecordID}); err != nil {
				rl.log.Warn("indexing a ready recording failed", "backend", b.ID, "err", err)
			}
		}()
		if u == nil {
			rl.answerUnrelayed(ctx, kind)
			return
		}
		form := url.Values{"signed_parameters": {tok}}.Encode()
		target := u.String()
		job = relayJob{kind: kind, frontend: fe.Key, build: func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form))
			if req != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			return req, err
		}}
	}
	if !rl.enqueue(job) {
		// Our queue, not the client's URL: BBB may try again later.
		rl.log.Warn("callback relay queue full; refusing", "kind", kind, "frontend", fe.Key)
		rl.cfg.Counter.WithLabelValues(kind, "queue_full").Inc()
		ctx.Error("busy", fasthttp.StatusServiceUnavailable)
		return
	}
	rl.cfg.Counter.WithLabelValues(kind, "queued").Inc()
	ctx.SetContentType("text/plain")
	ctx.SetBodyString("ok")
}

// answerUnrelayed answers a callback the client gave no URL for: the state
// has learnt what it says; nothing goes out.
func (rl *Relay) answerUnrelayed(ctx *fasthttp.RequestCtx, kind string) {
	rl.cfg.Counter.WithLabelValues(kind, "no_target").Inc()
	ctx.SetContentType("text/plain")
	ctx.SetBodyString("ok")
}

// refuseCallback answers a relay request that does not verify: always the
// same 403, before anything goes out.
func (rl *Relay) refuseCallback(ctx *fasthttp.RequestCtx, kind string) {
	rl.cfg.Counter.WithLabelValues(kind, "refused").Inc()
	ctx.Error("bad callback", fasthttp.StatusForbidden)
}

// deliver sends a callback to the frontend, retrying a failure a few
// times. Errors are logged without the URL (the client's may carry a token).
func (rl *Relay) deliver(j relayJob) {
	for attempt := 0; attempt < Attempts; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		req, err := j.build()
		if err != nil {
			rl.cfg.Counter.WithLabelValues(j.kind, "failed").Inc()
			return
		}
		c, cancel := context.WithTimeout(context.Background(), callbackTimeout)
		resp, err := Client.Do(req.WithContext(c))
		status := 0
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		cancel()
		if err == nil && status < 500 {
			rl.cfg.Counter.WithLabelValues(j.kind, "delivered").Inc()
			return
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		rl.log.Warn("callback to frontend failed", "kind", j.kind, "frontend", j.frontend, "status", status, "err", err, "attempt", attempt+1)
	}
	rl.cfg.Counter.WithLabelValues(j.kind, "failed").Inc()
}

// MaxBody bounds the body of a BBB callback relayed by the peer.
const MaxBody = 64 << 10

// commitTimeout bounds the commit of the cluster key.
const commitTimeout = 5 * time.Second

// ownedBy reports whether an internal meeting ID belongs to frontend (as
// the gateway scopes them: <frontend>~<meetingID>).
func ownedBy(internalID, frontend string) bool {
	return strings.HasPrefix(internalID, frontend+"~")
}
