package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
)

// BBB calls back the URLs a client puts in a meeting's metadata: a GET to
// meta_endCallbackUrl when it ends (with the meetingID the node knows), and
// a POST to meta_bbb-recording-ready-url with a JWT signed with the *node's*
// secret. The client knows neither the internal meeting ID nor the node's
// secret, so on create the gateway points both at itself and relays:
// IDs shown as the client's own, JWT re-signed with the frontend's secret.
//
// The relay URL carries frontend, backend and the original URL, with an
// HMAC under the frontend's secret: nobody can make the gateway call an
// arbitrary URL through it.

const (
	callbackPrefix    = "/conclave/callback/"
	metaEndCallback   = "meta_endcallbackurl"
	metaRecordingURL  = "meta_bbb-recording-ready-url"
	callbackTimeout   = 10 * time.Second
	callbackAttempts  = 3
	maxCallbackURLLen = 2048
)

var callbackClient = &http.Client{Timeout: callbackTimeout}

func callbackSig(secret, kind, frontend, backend, target string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(kind + "\x00" + frontend + "\x00" + backend + "\x00" + target))
	return hex.EncodeToString(m.Sum(nil))
}

// relayCallbacks rewrites the callback metadata of a create bound for
// backend b. Without a public base URL configured it leaves them alone.
func (r *bbbRequest) relayCallbacks(b *fsm.Backend) {
	if r.s.cfg.CallbackBase == "" {
		return
	}
	var keys [][]byte
	r.args.VisitAll(func(k, _ []byte) {
		switch strings.ToLower(string(k)) {
		case metaEndCallback, metaRecordingURL:
			keys = append(keys, append([]byte(nil), k...))
		}
	})
	for _, k := range keys {
		target := string(r.args.PeekBytes(k))
		if strings.HasPrefix(target, r.s.cfg.CallbackBase+callbackPrefix) {
			continue // already ours (a retried attempt)
		}
		kind := "end"
		if strings.ToLower(string(k)) == metaRecordingURL {
			kind = "recording-ready"
		}
		q := url.Values{"fe": {r.frontend.Key}, "be": {b.ID}, "url": {target},
			"sig": {callbackSig(r.frontend.Secret, kind, r.frontend.Key, b.ID, target)}}
		r.args.SetBytesK(k, r.s.cfg.CallbackBase+callbackPrefix+kind+"?"+q.Encode())
	}
}

// serveCallback relays one callback from a backend to the frontend.
func (s *Server) serveCallback(ctx *fasthttp.RequestCtx, kind string) {
	args := ctx.QueryArgs()
	feKey, beID, target, sig := string(args.Peek("fe")), string(args.Peek("be")), string(args.Peek("url")), string(args.Peek("sig"))
	fe, ok := s.cluster.FSM().Frontend(feKey)
	if !ok || len(target) > maxCallbackURLLen ||
		!hmac.Equal([]byte(sig), []byte(callbackSig(fe.Secret, kind, feKey, beID, target))) {
		ctx.Error("bad callback", fasthttp.StatusForbidden)
		return
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		ctx.Error("bad callback target", fasthttp.StatusBadRequest)
		return
	}
	switch kind {
	case "end":
		s.relayEnd(ctx, fe, beID, u)
	case "recording-ready":
		s.relayRecordingReady(ctx, fe, beID, u)
	default:
		ctx.Error("unknown callback", fasthttp.StatusNotFound)
	}
}

// relayEnd forwards BBB's meeting-ended GET with the client's meeting ID,
// and forgets the meeting: it has ended.
func (s *Server) relayEnd(ctx *fasthttp.RequestCtx, fe fsm.Frontend, beID string, u *url.URL) {
	internal := string(ctx.QueryArgs().Peek("meetingID"))
	if !ownedBy(internal, fe.Key) {
		ctx.Error("meeting of another frontend", fasthttp.StatusForbidden)
		return
	}
	q := u.Query()
	q.Set("recordingmarks", string(ctx.QueryArgs().Peek("recordingmarks")))
	q.Set("meetingID", s.clientMeetingID(fe.Key, internal))
	u.RawQuery = q.Encode()
	go s.release(internal, beID)
	status := s.deliver(func() (*http.Request, error) { return http.NewRequest(http.MethodGet, u.String(), nil) })
	ctx.SetStatusCode(status)
}

// relayRecordingReady verifies the node's JWT and posts one signed with
// the frontend's secret, naming the client's meeting ID.
func (s *Server) relayRecordingReady(ctx *fasthttp.RequestCtx, fe fsm.Frontend, beID string, u *url.URL) {
	b, ok := s.cluster.FSM().Backend(beID)
	if !ok {
		ctx.Error("unknown backend", fasthttp.StatusForbidden)
		return
	}
	var claims struct {
		MeetingID string `json:"meeting_id"`
		RecordID  string `json:"record_id"`
		jwt.RegisteredClaims
	}
	_, err := jwt.ParseWithClaims(string(ctx.PostArgs().Peek("signed_parameters")), &claims,
		func(*jwt.Token) (any, error) { return []byte(b.Secret), nil }, jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !ownedBy(claims.MeetingID, fe.Key) {
		ctx.Error("signed_parameters do not verify", fasthttp.StatusForbidden)
		return
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"meeting_id": s.clientMeetingID(fe.Key, claims.MeetingID), "record_id": claims.RecordID,
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
	form := url.Values{"signed_parameters": {tok}}.Encode()
	status := s.deliver(func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(form))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	})
	ctx.SetStatusCode(status)
}

// deliver sends a callback to the frontend, retrying a failure a few times;
// it answers the backend with the frontend's last status (BBB retries too).
func (s *Server) deliver(build func() (*http.Request, error)) int {
	status := fasthttp.StatusBadGateway
	for attempt := 0; attempt < callbackAttempts; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		req, err := build()
		if err != nil {
			return fasthttp.StatusBadRequest
		}
		c, cancel := context.WithTimeout(context.Background(), callbackTimeout)
		resp, err := callbackClient.Do(req.WithContext(c))
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
		cancel()
		if err == nil && status < 500 {
			return status
		}
		s.log.Warn("callback to frontend failed", "status", status, "err", err, "attempt", attempt+1)
	}
	return status
}
