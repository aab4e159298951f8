package bbbapi

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
)

// bbbRequest is one BBB API call on its way through the gateway.
type bbbRequest struct {
	s        *API
	ctx      *fasthttp.RequestCtx
	call     string
	frontend fsm.Frontend
	// args are the verified query parameters, decoded; checksum removed.
	args *fasthttp.Args
	// clientBridge: the client chose its own voiceBridge (create).
	clientBridge bool
	// Storage reused across requests (bbbRequest is pooled): the meeting
	// and backend a lookup found, and the join redirect's URL.
	meeting fsm.Meeting
	backend fsm.Backend
	buf     []byte
	// The client's meeting ID and the scoped one, for findMeeting.
	midBuf, idBuf []byte
	// body is the request body, read (bounded) once the checksum passed;
	// hold is its place in the server's body gate.
	body []byte
	hold guard.Hold
}

var bbbRequestPool = sync.Pool{New: func() any { return new(bbbRequest) }}

// apiCalls are the BBB calls the gateway answers (metrics label any other
// "unsupported").
var apiCalls = []string{"create", "join", "end", "isMeetingRunning", "getMeetingInfo", "getMeetings",
	"insertDocument", "sendChatMessage", "getRecordings", "publishRecordings",
	"deleteRecordings", "updateRecordings", "getRecordingTextTracks", "putRecordingTextTrack"}

// knownCall returns call as one of apiCalls' strings when it is one, so
// naming the call allocates nothing; other calls are copied.
func knownCall(call []byte) string {
	for _, c := range apiCalls {
		if string(call) == c {
			return c
		}
	}
	return string(call)
}

// Limits on what a client may send, beyond the body size.
const (
	maxQueryLen      = 64 << 10
	minMeetingIDLen  = 2
	maxMeetingIDLen  = 256
	apiVersionAnswer = "<response><returncode>SUCCESS</returncode><version>2.0</version><apiVersion>2.0</apiVersion><bbbVersion/></response>"
)

// ServeBBB answers the BBB API for a frontend named by key, or, when key is
// empty, the frontend whose secret validates the checksum. rest is the path
// after /bigbluebutton/api.
func (s *API) ServeBBB(ctx *fasthttp.RequestCtx, key string, rest []byte) {
	start := time.Now()
	call := knownCall(bytes.Trim(rest, "/"))
	r := bbbRequestPool.Get().(*bbbRequest)
	r.s, r.ctx, r.call = s, ctx, call
	// After a panic (recovered by Handle) the body's place in the gate is
	// still given back; r is then not reused.
	returned := false
	defer func() {
		if !returned {
			s.guard.Release(&r.hold)
		}
	}()
	result := r.serve(key)
	s.guard.Release(&r.hold)
	if r.args != nil {
		fasthttp.ReleaseArgs(r.args) // everything built from it has been copied by now
	}
	took := time.Since(start)
	s.metrics.observeBBB(metricCall(call), r.frontend.Key, result, took)
	// One line per request at debug. The query is never logged: it carries
	// the checksum and meeting passwords.
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("bbb request", "call", metricCall(call), "frontend", r.frontend.Key,
			"meeting", string(ctx.QueryArgs().Peek("meetingID")), "result", result, "took", took)
	}
	returned = true
	*r = bbbRequest{buf: r.buf[:0], midBuf: r.midBuf[:0], idBuf: r.idBuf[:0]}
	if cap(r.buf)+cap(r.midBuf)+cap(r.idBuf) <= 8<<10 {
		bbbRequestPool.Put(r)
	}
}

// serve returns a short result label for metrics.
func (r *bbbRequest) serve(key string) string {
	ctx := r.ctx
	if r.call == "" {
		writeXML(ctx, []byte(apiVersionAnswer))
		return "success"
	}
	if !ctx.IsGet() && !ctx.IsPost() && !ctx.IsHead() {
		return r.Fail(bbb.KeyUnsupportedRequest, "Only GET and POST are supported.")
	}
	raw := ctx.URI().QueryString()
	if len(raw) > maxQueryLen {
		return r.Fail(bbb.KeyValidationError, "The query string is too long.")
	}
	// The query as a string without a copy: the checksum check only reads
	// it, and nothing derived from it outlives this request.
	rawQuery := unsafe.String(unsafe.SliceData(raw), len(raw))
	fe, ok := r.s.resolveFrontend(key, r.call, rawQuery)
	if !ok {
		// The replica may lag (a peer that just started has not received
		// the frontends yet): an LMS must not be told its secret is wrong
		// because of that. Confirm with a consistent read, at most once a
		// second, so wrong checksums cannot make every request a leader
		// round trip.
		switch r.s.confirmReplica() {
		case replicaCurrent:
		case replicaRefreshed:
			fe, ok = r.s.resolveFrontend(key, r.call, rawQuery)
		case replicaUnknown:
			return r.Fail(bbb.KeyServerUnavailable, "This server cannot confirm its configuration now. Please retry.")
		}
		if !ok {
			if guard.HasBody(ctx) {
				// Not a byte of the body is read for an unsigned request; the
				// connection closes after the answer.
				r.s.guard.Refuse(ctx, guard.ReasonUnsigned)
			}
			return r.Fail(bbb.KeyChecksumError, bbb.MsgChecksumError)
		}
	}
	r.frontend = fe
	r.args = fasthttp.AcquireArgs()
	r.args.ParseBytes(raw)
	r.args.Del("checksum")
	if key, dup := duplicatedIDParam(r.args); dup {
		// bbb-web would take the first value; the gateway scopes IDs per
		// tenant, so an ambiguous one is refused rather than half scoped.
		return r.Fail(bbb.KeyValidationError, "Duplicate "+key+" parameter: give it once.")
	}
	if ctx.IsPost() && guard.HasBody(ctx) {
		if res, ok := r.readBody(); !ok {
			return res
		}
	}

	switch r.call {
	case "create":
		return r.create()
	case "join":
		return r.join()
	case "end":
		return r.forwardMeetingCall(notFoundIsError, r.afterEnd)
	case "isMeetingRunning":
		return r.forwardMeetingCall(notFoundIsNotRunning, nil)
	case "getMeetingInfo":
		return r.forwardMeetingCall(notFoundIsError, r.afterMeetingInfo)
	case "insertDocument":
		if !isXMLContent(ctx) {
			return r.Fail(bbb.KeyUnsupportedContentType, "insertDocument takes an XML body (application/xml or text/xml).")
		}
		return r.forwardMeetingCall(notFoundIsError, nil)
	case "sendChatMessage":
		return r.forwardMeetingCall(notFoundIsError, nil)
	case "getMeetings":
		return r.s.meetings.Serve(r)
	case "getRecordings":
		return r.s.recordings.Get(r)
	case "publishRecordings", "updateRecordings", "deleteRecordings":
		return r.s.recordings.Change(r)
	case "getRecordingTextTracks", "putRecordingTextTrack":
		return r.s.recordings.TextTrack(r)
	}
	return r.Fail(bbb.KeyUnsupportedRequest, bbb.MsgUnsupportedRequest)
}

type replicaCheck int

const (
	replicaCurrent   replicaCheck = iota // confirmed within the last second: nothing new
	replicaRefreshed                     // just made consistent
	replicaUnknown                       // no leader reachable
)

// confirmReplica makes the local replica consistent, unless that was done
// less than a second ago.
func (s *API) confirmReplica() replicaCheck {
	last := s.lastConfirmed.Load()
	if last != 0 && time.Since(time.Unix(0, last)) < time.Second {
		return replicaCurrent
	}
	ctx, cancel := context.WithTimeout(context.Background(), consistentTimeout)
	defer cancel()
	if err := s.cluster.ConsistentRead(ctx); err != nil {
		return replicaUnknown
	}
	s.lastConfirmed.Store(time.Now().UnixNano())
	return replicaRefreshed
}

// resolveFrontend finds the frontend and checks the checksum against its
// secret. Without a key every frontend's secret is tried (single-tenant
// setups have one); the query is split only once.
func (s *API) resolveFrontend(key, call, raw string) (fsm.Frontend, bool) {
	rest, sum, found := bbb.SplitChecksum(raw)
	if !found {
		return fsm.Frontend{}, false
	}
	if key != "" {
		fe, ok := s.cluster.FSM().Frontend(key)
		if !ok || !bbb.VerifySplit(call, rest, sum, fe.Secret) {
			return fsm.Frontend{}, false
		}
		return fe, true
	}
	for _, fe := range s.cluster.FSM().Frontends() {
		if bbb.VerifySplit(call, rest, sum, fe.Secret) {
			return fe, true
		}
	}
	return fsm.Frontend{}, false
}

// Fail answers BBB's FAILED envelope; BBB uses HTTP 200 for these too.
func (r *bbbRequest) Fail(key, msg string) string {
	writeXML(r.ctx, bbb.FailedXML(key, msg))
	return key
}

// The request as the calls answered in other packages see it
// (recordings.Request, getmeetings.Request; AnswerFromLeader is in
// leaderproxy.go).

func (r *bbbRequest) Ctx() *fasthttp.RequestCtx { return r.ctx }
func (r *bbbRequest) Call() string              { return r.call }
func (r *bbbRequest) Frontend() *fsm.Frontend   { return &r.frontend }
func (r *bbbRequest) Args() *fasthttp.Args      { return r.args }
func (r *bbbRequest) Body() []byte              { return r.body }
func (r *bbbRequest) WriteXML(body []byte)      { writeXML(r.ctx, body) }

// WriteOwnedXML is WriteXML for a body the caller gives up: not copied.
func (r *bbbRequest) WriteOwnedXML(body []byte) {
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType("text/xml; charset=utf-8")
	r.ctx.Response.SetBodyRaw(body)
}

func writeXML(ctx *fasthttp.RequestCtx, body []byte) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/xml; charset=utf-8")
	ctx.SetBody(body)
}

func isXMLContent(ctx *fasthttp.RequestCtx) bool {
	ct := strings.ToLower(string(ctx.Request.Header.ContentType()))
	return strings.HasPrefix(ct, "application/xml") || strings.HasPrefix(ct, "text/xml")
}

// readBody reads the request body within the server's bound, once the
// checksum has passed; refusals are answered in BBB's envelope (HTTP 200,
// as bbb-web answers its errors).
func (r *bbbRequest) readBody() (string, bool) {
	limit := r.s.cfg.MaxBodySize
	body, hold, res := r.s.guard.ReadBody(r.ctx, limit, true)
	switch res {
	case guard.BodyOK:
		r.body, r.hold = body, hold
		return "", true
	case guard.BodyTooLarge:
		return r.Fail(bbb.KeyValidationError, "The request body is larger than this server accepts ("+strconv.Itoa(limit)+" bytes)."), false
	case guard.BodyBusy:
		r.ctx.Response.Header.Set("Retry-After", guard.RetryAfter)
		return r.Fail(bbb.KeyServerUnavailable, "Too many requests with a body in progress from your address. Please retry in a few seconds."), false
	}
	return r.Fail(bbb.KeyValidationError, "The request body could not be read."), false
}

// idParams are the parameters that name what a call acts on; each must
// appear at most once.
var idParams = [...]string{"meetingID", "recordID"}

// duplicatedIDParam reports an ID parameter given more than once.
func duplicatedIDParam(a *fasthttp.Args) (string, bool) {
	var seen [len(idParams)]int
	a.VisitAll(func(k, _ []byte) {
		for i, p := range idParams {
			if string(k) == p {
				seen[i]++
			}
		}
	})
	for i, n := range seen {
		if n > 1 {
			return idParams[i], true
		}
	}
	return "", false
}

// metricCall keeps the call label bounded: unknown calls share one label.
func metricCall(call string) string {
	switch {
	case call == "":
		return "index"
	case slices.Contains(apiCalls, call):
		return call
	}
	return "unsupported"
}

// hasControlChar reports a C0 or C1 control character (Unicode Cc: U+0000
// to U+001F, U+007F to U+009F) in UTF-8 text.
func hasControlChar(b []byte) bool {
	for i, c := range b {
		if c < 0x20 || c == 0x7f || (c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f) {
			return true
		}
	}
	return false
}

// meetingParam validates the meetingID parameter.
func (r *bbbRequest) meetingParam() (string, string, bool) {
	id, res, ok := r.meetingParamBytes()
	return string(id), res, ok
}

// meetingParamBytes is meetingParam without a copy: the bytes are the
// arguments' own, valid until they change.
func (r *bbbRequest) meetingParamBytes() ([]byte, string, bool) {
	id := r.args.Peek("meetingID")
	switch {
	case len(id) == 0:
		return nil, r.Fail(bbb.KeyMissingParamMeetingID, bbb.MsgMissingMeetingID), false
	case len(id) < minMeetingIDLen || len(id) > maxMeetingIDLen:
		return nil, r.Fail(bbb.KeyValidationError, "Meeting ID must be between 2 and 256 characters."), false
	case bytes.IndexByte(id, ',') >= 0:
		return nil, r.Fail(bbb.KeyValidationError, "Meeting ID cannot contain ','."), false
	case hasControlChar(id):
		// bbb-web strips control characters (\p{Cc}) from parameters, so the
		// node would run a meeting under another ID than the one the state
		// binds: refused.
		return nil, r.Fail(bbb.KeyValidationError, "Meeting ID cannot contain control characters."), false
	}
	return id, "", true
}
