package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
	callbackPrefix    = "/conclave/callback/"
	metaEndCallback   = "meta_endcallbackurl"
	metaRecordingURL  = "meta_bbb-recording-ready-url"
	callbackTimeout   = 10 * time.Second
	callbackAttempts  = 3
	maxCallbackURLLen = 2048
	relayQueueLen     = 1024 // callbacks waiting for delivery
	relayWorkers      = 4
	relayDedupWindow  = 10 * time.Minute // a repeated end callback is delivered once
)

// callbackClient delivers relays. It does not follow redirects: a target
// could otherwise send the peer anywhere.
var callbackClient = &http.Client{
	Timeout:       callbackTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// callbackSig is the relay URL's HMAC under the cluster key. Every field is
// length-prefixed, so no two field lists sign alike.
func callbackSig(key []byte, kind, frontend, internal, meetingID, backend, target string) string {
	m := hmac.New(sha256.New, key)
	var b []byte
	b = append(b, "conclave-callback-v2"...)
	for _, f := range []string{kind, frontend, internal, meetingID, backend, target} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// clusterKey returns the cluster key, committing a new random one when the
// state has none yet (the first committed wins on every peer).
func (s *Server) clusterKey(ctx context.Context) []byte {
	return control.DrawClusterKey(ctx, s.cluster.FSM(), s.cluster.Apply, s.log)
}

// relayTarget returns the client's URL carried by a relay URL (ours or
// another peer's), and whether s is one.
func relayTarget(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, callbackPrefix) {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false
	}
	kind, ok := strings.CutPrefix(u.Path, callbackPrefix)
	if !ok || (kind != "end" && kind != "recording-ready") {
		return "", false
	}
	q := u.Query()
	if q.Get("sig") == "" {
		return "", false
	}
	return q.Get("url"), true
}

// hideRelayURLs shows the client's own callback URL wherever an answer
// (meeting metadata, a recording's metadata) carries a relay URL, and drops
// the element when the client gave none (the gateway asked for it alone).
func hideRelayURLs(doc []byte) []byte {
	if !bytes.Contains(doc, []byte(callbackPrefix)) {
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
func (s *Server) validTarget(target string) (*url.URL, bool) {
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
	for _, p := range s.cluster.FSM().Peers() {
		for _, addr := range []string{p.HTTPAddr, p.RaftAddr, p.GossipAddr} {
			if addr != "" && auth.SameHostPort(hp, addr) {
				return nil, false
			}
		}
	}
	return u, true
}

// relayCallbacks rewrites the callback metadata of a create bound for
// backend b (the client's meeting ID mid); see relayArgs.
func (r *bbbRequest) relayCallbacks(b *fsm.Backend, mid string) {
	r.s.relayArgs(r.args, &r.frontend, b, mid)
}

// relayArgs points a create's end and recording-ready callbacks at this
// peer's relay, signed for backend b. Both are always set, so the state
// learns at once that the meeting ended or that a recording is ready; the
// relay passes them on to the client's own URLs only when it gave some.
// Without a public base URL configured it leaves them alone. A client URL
// that cannot be relayed to (not http(s), a peer's own address) is dropped;
// a relay URL (a retry on another backend, or a re-creation) is signed anew.
func (s *Server) relayArgs(args *fasthttp.Args, fe *fsm.Frontend, b *fsm.Backend, mid string) {
	if s.cfg.CallbackBase == "" {
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
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	key := s.clusterKey(ctx)
	if key == nil {
		s.log.Warn("callback URLs dropped: no cluster key yet to sign their relays", "frontend", fe.Key)
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
			if _, ok := s.validTarget(target); !ok {
				target = "" // still ask for the callback, relay it nowhere
			}
		}
		kind := "end"
		if strings.ToLower(string(k)) == metaRecordingURL {
			kind = "recording-ready"
		}
		q := url.Values{"fe": {fe.Key}, "m": {internal}, "mid": {mid}, "be": {b.ID}, "url": {target},
			"sig": {callbackSig(key, kind, fe.Key, internal, mid, b.ID, target)}}
		args.SetBytesK(k, s.cfg.CallbackBase+callbackPrefix+kind+"?"+q.Encode())
	}
}

// relayJob is one callback to deliver to a client.
type relayJob struct {
	kind, frontend string
	build          func() (*http.Request, error)
}

// callbackRelay is the delivery queue and its workers (started on first use).
type callbackRelay struct {
	once   sync.Once
	jobs   chan relayJob
	queued atomic.Int64 // relays accepted for delivery (tests, fuzzing)

	mu   sync.Mutex
	seen map[string]time.Time // end callbacks delivered, for relayDedupWindow
}

var relays sync.Map // *Server -> *callbackRelay

func (s *Server) relay() *callbackRelay {
	v, _ := relays.LoadOrStore(s, &callbackRelay{})
	return v.(*callbackRelay)
}

// enqueue hands a relay to the workers; false when the queue is full.
func (s *Server) enqueue(j relayJob) bool {
	rl := s.relay()
	rl.once.Do(func() {
		rl.jobs = make(chan relayJob, relayQueueLen)
		for range relayWorkers {
			go func() {
				for j := range rl.jobs {
					s.deliver(j)
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
func (rl *callbackRelay) firstTime(key string, now time.Time) bool {
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

// serveCallback relays one callback from a backend to the frontend. A
// relay URL that does not verify, or names a meeting the state binds to
// another backend, is refused (403) before anything goes out; a valid one
// is queued and answered "ok", whatever the client's URL will answer.
func (s *Server) serveCallback(ctx *fasthttp.RequestCtx, kind string) {
	if kind != "end" && kind != "recording-ready" {
		ctx.Error("unknown callback", fasthttp.StatusNotFound)
		return
	}
	args := ctx.QueryArgs()
	feKey, internal, mid := string(args.Peek("fe")), string(args.Peek("m")), string(args.Peek("mid"))
	beID, target, sig := string(args.Peek("be")), string(args.Peek("url")), string(args.Peek("sig"))
	st := s.cluster.FSM()
	key := st.ClusterKey()
	if key == nil || len(target) > maxCallbackURLLen ||
		!hmac.Equal([]byte(sig), []byte(callbackSig(key, kind, feKey, internal, mid, beID, target))) {
		s.refuseCallback(ctx, kind)
		return
	}
	fe, ok := st.Frontend(feKey)
	b, okB := st.Backend(beID)
	if !ok || !okB || !ownedBy(internal, feKey) {
		s.refuseCallback(ctx, kind)
		return
	}
	// The meeting must be on that backend. BBB's end callback may come
	// after the meeting was released (an end through the API), so an
	// unbound meeting passes; one bound elsewhere (moved) does not.
	if m, ok := st.Meeting(internal); ok && m.BackendID != beID {
		s.refuseCallback(ctx, kind)
		return
	}
	var u *url.URL
	if target != "" { // "": the client gave no URL; only the state learns
		if u, ok = s.validTarget(target); !ok {
			s.refuseCallback(ctx, kind)
			return
		}
	}
	var job relayJob
	switch kind {
	case "end":
		if got := args.Peek("meetingID"); len(got) > 0 && string(got) != internal {
			s.refuseCallback(ctx, kind)
			return
		}
		if !s.relay().firstTime(beID+"\x00"+internal, time.Now()) {
			s.metrics.callbacks.WithLabelValues(kind, "duplicate").Inc()
			ctx.SetContentType("text/plain")
			ctx.SetBodyString("ok")
			return
		}
		go s.release(internal, beID)
		if u == nil {
			s.answerUnrelayed(ctx, kind)
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
			s.refuseCallback(ctx, kind)
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
			if err := s.syncRecordings(&b, []string{claims.RecordID}, false); err != nil {
				s.log.Warn("indexing a ready recording failed", "backend", b.ID, "err", err)
			}
		}()
		if u == nil {
			s.answerUnrelayed(ctx, kind)
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
	if !s.enqueue(job) {
		// Our queue, not the client's URL: BBB may try again later.
		s.log.Warn("callback relay queue full; refusing", "kind", kind, "frontend", fe.Key)
		s.metrics.callbacks.WithLabelValues(kind, "queue_full").Inc()
		ctx.Error("busy", fasthttp.StatusServiceUnavailable)
		return
	}
	s.metrics.callbacks.WithLabelValues(kind, "queued").Inc()
	ctx.SetContentType("text/plain")
	ctx.SetBodyString("ok")
}

// answerUnrelayed answers a callback the client gave no URL for: the state
// has learnt what it says; nothing goes out.
func (s *Server) answerUnrelayed(ctx *fasthttp.RequestCtx, kind string) {
	s.metrics.callbacks.WithLabelValues(kind, "no_target").Inc()
	ctx.SetContentType("text/plain")
	ctx.SetBodyString("ok")
}

// refuseCallback answers a relay request that does not verify: always the
// same 403, before anything goes out.
func (s *Server) refuseCallback(ctx *fasthttp.RequestCtx, kind string) {
	s.metrics.callbacks.WithLabelValues(kind, "refused").Inc()
	ctx.Error("bad callback", fasthttp.StatusForbidden)
}

// deliver sends a callback to the frontend, retrying a failure a few
// times. Errors are logged without the URL (the client's may carry a token).
func (s *Server) deliver(j relayJob) {
	for attempt := 0; attempt < callbackAttempts; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		req, err := j.build()
		if err != nil {
			s.metrics.callbacks.WithLabelValues(j.kind, "failed").Inc()
			return
		}
		c, cancel := context.WithTimeout(context.Background(), callbackTimeout)
		resp, err := callbackClient.Do(req.WithContext(c))
		status := 0
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		cancel()
		if err == nil && status < 500 {
			s.metrics.callbacks.WithLabelValues(j.kind, "delivered").Inc()
			return
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		s.log.Warn("callback to frontend failed", "kind", j.kind, "frontend", j.frontend, "status", status, "err", err, "attempt", attempt+1)
	}
	s.metrics.callbacks.WithLabelValues(j.kind, "failed").Inc()
}

// maxCallbackBody bounds the body of a BBB callback relayed by the peer.
const maxCallbackBody = 64 << 10
