package bbbapi

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/nodeclient"
	"github.com/conclave-lb/conclave/raftnode"
)

// Raft work done for one BBB request must fit in these.
const (
	claimTimeout      = 5 * time.Second
	consistentTimeout = 3 * time.Second
	maxPlaceAttempts  = 3
)

const (
	msgUnavailable = "The cluster cannot commit the meeting now (no quorum reachable from this peer). Please retry."
	msgBackendDown = "The server running this meeting did not answer."
)

// create places a new meeting or sends a repeated create to the backend
// that already runs it. A claim is committed through Raft before the
// backend is asked, so concurrent creates on different peers agree.
func (r *bbbRequest) create() string {
	mid, res, ok := r.meetingParam()
	if !ok {
		return res
	}
	body, contentType, res, ok := r.createBody()
	if !ok {
		return res
	}
	r.applyFrontendSettings()
	r.clientBridge = r.args.Has("voiceBridge")
	internal := InternalMeetingID(r.frontend.Key, mid)
	r.args.Set("meetingID", internal)

	// Known and on a live backend: no Raft write needed. If that backend
	// does not answer, this replica may not know yet that it died: make it
	// consistent and go through a claim, which moves the meeting only if
	// the cluster has declared the node dead.
	if m, ok := r.s.cluster.FSM().Meeting(internal); ok {
		if b, ok := r.s.cluster.FSM().Backend(m.BackendID); ok && !backendDead(&b) {
			r.setVoiceBridge(&m)
			if res := r.createOn(&b, internal, mid, m.CreatedAt, body, contentType, false); res != "retry" {
				return res
			}
			ctx, cancel := context.WithTimeout(context.Background(), consistentTimeout)
			_ = r.s.cluster.ConsistentRead(ctx)
			cancel()
		}
	}
	tried := map[string]bool{}
	tags := control.ServerTagsOf(r.args) // after the frontend's default and override params
	for attempt := 0; attempt < maxPlaceAttempts; attempt++ {
		b, err := r.s.ctl.PlaceTagged(&r.frontend, tried, tags)
		if err != nil {
			r.s.metrics.PlaceFailures.WithLabelValues(placeFailureReason(err, attempt)).Inc()
			if e, ok := err.(control.ErrServerTagUnavailable); ok {
				return r.Fail(bbb.KeyServerTagUnavailable, e.Error())
			}
			if attempt > 0 {
				return r.Fail(bbb.KeyServerUnavailable, "No backend accepted the meeting: "+err.Error())
			}
			return r.Fail(bbb.KeyNoBackendAvailable, err.Error())
		}
		r.s.ctl.AddPending(b.ID, 1)
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		started := time.Now()
		claim, err := r.s.cluster.Commit(ctx, &fsm.ClaimMeeting{
			InternalID: internal, Frontend: r.frontend.Key, MeetingID: mid, BackendID: b.ID, Now: now(),
		})
		r.s.metrics.ApplyLatency.Observe(time.Since(started).Seconds())
		cancel()
		r.s.ctl.AddPending(b.ID, -1)
		if err != nil {
			r.s.metrics.PlaceFailures.WithLabelValues("no_quorum").Inc()
			r.s.log.Warn("claim not committed", "meeting", mid, "frontend", r.frontend.Key, "err", err)
			return r.Fail(bbb.KeyServerUnavailable, msgUnavailable)
		}
		if claim.Error != nil {
			tried[b.ID] = true // became unplaceable meanwhile: choose again
			continue
		}
		r.setVoiceBridge(claim.Meeting)
		target, ok := r.s.backendFor(claim.Meeting.BackendID)
		if !ok {
			tried[claim.Meeting.BackendID] = true
			continue
		}
		if !claim.Created { // another peer's create won the race, or the node is not declared dead
			if res := r.createOn(target, internal, mid, claim.Meeting.CreatedAt, body, contentType, false); res != "retry" {
				return res
			}
			return r.Fail(bbb.KeyServerUnavailable, msgBackendDown)
		}
		r.s.metrics.Placements.WithLabelValues(target.ID).Inc()
		if claim.PreviousBackend != "" {
			r.s.log.Info("meeting moved off a failed backend", "meeting", mid, "frontend", r.frontend.Key,
				"from", claim.PreviousBackend, "to", target.ID)
		}
		result := r.createOn(target, internal, mid, claim.Meeting.CreatedAt, body, contentType, true)
		if result != "retry" {
			return result
		}
		tried[target.ID] = true
	}
	return r.Fail(bbb.KeyServerUnavailable, "No backend accepted the meeting after several attempts.")
}

func placeFailureReason(err error, attempt int) string {
	switch {
	case attempt > 0:
		return "backends_failed"
	case err == control.ErrNoTaggedNode:
		return "no_tagged_backend"
	case errors.As(err, new(control.ErrServerTagUnavailable)):
		return "server_tag_unavailable"
	}
	return "no_backend"
}

// backendFor returns a backend from the local replica, waiting briefly
// for the replica to catch up when the claim named one it lacks.
func (s *API) backendFor(id string) (*fsm.Backend, bool) {
	if b, ok := s.cluster.FSM().Backend(id); ok {
		return &b, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), consistentTimeout)
	defer cancel()
	if s.cluster.ConsistentRead(ctx) != nil {
		return nil, false
	}
	b, ok := s.cluster.FSM().Backend(id)
	return &b, ok
}

// setVoiceBridge passes on the cluster's voice bridge unless the client
// chose one: BBB needs it unique per node, and only the state sees all the
// meetings on a node.
func (r *bbbRequest) setVoiceBridge(m *fsm.Meeting) {
	if m != nil && m.VoiceBridge != 0 && !r.clientBridge {
		r.args.Set("voiceBridge", strconv.Itoa(m.VoiceBridge))
	}
}

// createOn sends create to backend b. For a fresh claim, a backend that
// fails or refuses releases the claim: no meeting stays bound to a backend
// that does not run it. It returns "retry", having written no answer, when
// the backend did not answer (fresh: another backend should try).
// createdAt names the meeting's instance (its claim's time) in the
// callbacks' relay URLs.
func (r *bbbRequest) createOn(b *fsm.Backend, internal, mid string, createdAt int64, body []byte, contentType string, fresh bool) string {
	r.relayCallbacks(b, mid, createdAt)
	answer, err := r.s.node.Call(b, "create", r.args, body, contentType, nodeclient.CreateTimeout)
	if err != nil {
		r.s.log.Warn("backend create failed", "backend", b.ID, "err", err)
		if fresh {
			r.s.release(internal, b.ID)
		}
		return "retry"
	}
	env, els, perr := nodeclient.ParseAnswer(answer)
	if perr == nil && env.MessageKey == bbb.KeyNonUniqueVoiceBridge && !r.clientBridge && r.args.Has("voiceBridge") {
		// The node runs a meeting the cluster does not know (created on it
		// directly) on the bridge the state chose: let the node pick one.
		r.s.log.Info("voice bridge taken on the node by a meeting outside the cluster; the node picks one",
			"backend", b.ID, "voiceBridge", string(r.args.Peek("voiceBridge")))
		r.args.Del("voiceBridge")
		return r.createOn(b, internal, mid, createdAt, body, contentType, fresh)
	}
	if fresh && (perr != nil || (!env.OK() && env.MessageKey != bbb.KeyIDNotUnique)) {
		r.s.release(internal, b.ID)
		if perr != nil {
			return "retry"
		}
	}
	if env.OK() {
		r.keepParams(b, internal, answer, body, contentType, fresh)
	}
	writeXML(r.ctx, nodeclient.ShowMeetingIDs(answer, els, internal, mid))
	if env.OK() {
		return "success"
	}
	return env.MessageKey
}

// release forgets a claim on backend id (a failed create or an ended meeting).
func (s *API) release(internal, backendID string) { s.releaseInstance(internal, backendID, 0) }

// releaseInstance is release of the meeting's instance claimed at
// createdAt only (0: whichever is bound).
func (s *API) releaseInstance(internal, backendID string, createdAt int64) {
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	c := &fsm.ReleaseMeetings{Meetings: []fsm.MeetingRef{{InternalID: internal, BackendID: backendID}}}
	if createdAt != 0 {
		c.CreatedAt = []int64{createdAt}
	}
	if _, err := s.cluster.Commit(ctx, c); err != nil {
		s.log.Warn("could not release meeting", "backend", backendID, "err", err)
	}
}

// createBody returns the body to send with create: the client's slides
// (XML), or the frontend's default presentation, or none. A forced default
// presentation replaces the client's slides, as in b3scale.
func (r *bbbRequest) createBody() (body []byte, contentType string, res string, ok bool) {
	p := r.frontend.Settings.DefaultPresentation
	if len(r.body) > 0 { // read, within its bound, by serve
		ct := strings.ToLower(string(r.ctx.Request.Header.ContentType()))
		switch {
		case isXMLContent(r.ctx):
			if p != nil && p.Force && p.URL != "" {
				return defaultPresentationBody(p.URL), "application/xml", "", true
			}
			return r.body, ct, "", true
		case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
			// Form parameters count as parameters (not covered by the checksum, as in BBB).
			form := fasthttp.AcquireArgs()
			defer fasthttp.ReleaseArgs(form)
			form.ParseBytes(r.body)
			form.VisitAll(func(k, v []byte) {
				if !r.args.Has(string(k)) && string(k) != "checksum" {
					r.args.SetBytesKV(k, v)
				}
			})
			// Form parameters carry no slides: the default presentation applies.
		default:
			return nil, "", r.Fail(bbb.KeyUnsupportedContentType, "POST create takes an XML body or form parameters."), false
		}
	}
	if p != nil && p.URL != "" {
		return defaultPresentationBody(p.URL), "application/xml", "", true
	}
	return nil, "", "", true
}

// defaultPresentationBody is the slides document naming one presentation.
func defaultPresentationBody(url string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?><modules><module name="presentation"><document url="` +
		escapeAttr(url) + `"/></module></modules>`)
}

func escapeAttr(s string) string {
	return strings.NewReplacer("&", "&amp;", `"`, "&quot;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// applyFrontendSettings fills in the frontend's default create parameters
// and enforces its overrides.
func (r *bbbRequest) applyFrontendSettings() {
	st := r.frontend.Settings
	for k, v := range st.CreateDefaultParams {
		if !r.args.Has(k) {
			r.args.Set(k, v)
		}
	}
	for k, v := range st.CreateOverrideParams {
		r.args.Set(k, v)
	}
}

// lookup finds a meeting and its backend in the local replica. It makes
// the replica consistent first (read-your-writes) when the answer could be
// stale: on a miss (a create just answered by another peer must be found
// here), and when the bound backend is in error or gone (the meeting may
// have just been moved to a live backend by a create elsewhere).
func (r *bbbRequest) lookup(internal string) (*fsm.Meeting, *fsm.Backend, error) {
	st := r.s.cluster.FSM()
	m, b, found := r.bound(st, internal)
	if found && !backendDead(b) {
		return m, b, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), consistentTimeout)
	err := r.s.cluster.ConsistentRead(ctx)
	cancel()
	if errors.Is(err, raftnode.ErrBehind) && r.AnswerFromLeader() {
		return nil, nil, errAnsweredByLeader
	}
	if err != nil {
		return nil, nil, err
	}
	if m, b, found = r.bound(st, internal); !found || b == nil {
		return nil, nil, nil
	}
	return m, b, nil
}

// bound reads a meeting and its backend (nil if the backend is gone) into
// the request's own storage: a join allocates nothing for them.
func (r *bbbRequest) bound(st *fsm.FSM, internal string) (*fsm.Meeting, *fsm.Backend, bool) {
	m, ok := st.Meeting(internal)
	if !ok {
		return nil, nil, false
	}
	r.meeting = m
	b, ok := st.Backend(m.BackendID)
	if !ok {
		return &r.meeting, nil, true
	}
	r.backend = b
	return &r.meeting, &r.backend, true
}

// findMeeting validates meetingID and finds where the meeting runs, with
// the backend's view of the ID set in the arguments. A non-empty res means
// an error answer was written; m == nil means no such meeting (the caller
// chooses the answer).
//
// mid and internal are views of the request's own buffers, not copies (a
// join allocates nothing for them): they are valid until the request ends,
// when the pooled bbbRequest is reused, and nothing may keep them longer.
func (r *bbbRequest) findMeeting() (mid, internal string, m *fsm.Meeting, b *fsm.Backend, res string) {
	id, res, ok := r.meetingParamBytes()
	if !ok {
		return "", "", nil, nil, res
	}
	r.midBuf = append(r.midBuf[:0], id...)
	r.idBuf = appendInternalMeetingID(r.idBuf[:0], r.frontend.Key, r.midBuf)
	mid = unsafe.String(unsafe.SliceData(r.midBuf), len(r.midBuf))
	internal = unsafe.String(unsafe.SliceData(r.idBuf), len(r.idBuf))
	m, b, err := r.lookup(internal)
	if err == errAnsweredByLeader {
		return "", "", nil, nil, "leader"
	}
	if err != nil {
		return "", "", nil, nil, r.Fail(bbb.KeyServerUnavailable, "The cluster cannot confirm the meeting now. Please retry.")
	}
	r.args.Set("meetingID", internal)
	return mid, internal, m, b, ""
}

// join redirects the browser to the backend's own join URL, signed with
// the backend's secret: bbb-web binds the session to a cookie on its own
// domain, so the gateway never calls join itself. redirect=false is the
// exception: the caller wants BBB's XML answer.
//
// It answers bbb-web's own errors (fullName, meeting ID, unknown meeting,
// password or role) itself, and brings a meeting whose node is down back
// on a live node first (failover.go).
func (r *bbbRequest) join() string {
	if len(bytes.TrimSpace(r.args.Peek("fullName"))) == 0 {
		return r.Fail(bbb.KeyMissingParamFullName, msgMissingFullName)
	}
	mid, internal, m, b, res := r.findMeeting()
	if res != "" {
		return res
	}
	if m == nil {
		return r.Fail(bbb.KeyInvalidMeetingID, msgInvalidMeetingID)
	}
	if !r.joinRoleOK(m) {
		return r.Fail(bbb.KeyMissingParamPassword, msgInvalidPassword)
	}
	if meetingDown(m, b) {
		if m, b, res = r.recreate(mid, internal, m); res != "" {
			return res
		}
	}
	if m.RecreatedAt != 0 && r.args.Has("createTime") {
		// The client's createTime is the first node's: the meeting runs
		// elsewhere now, under another.
		r.args.Del("createTime")
	}
	if strings.EqualFold(string(r.args.Peek("redirect")), "false") {
		answer, err := r.s.node.Call(b, "join", r.args, nil, "", nodeclient.DefaultTimeout)
		if err != nil {
			return r.Fail(bbb.KeyServerUnavailable, msgBackendDown)
		}
		writeXML(r.ctx, nodeclient.RewriteMeetingIDs(answer, internal, mid))
		return "success"
	}
	r.buf = bbb.AppendSignedURL(r.buf[:0], b.URL, "join", r.args.QueryString(), b.Secret)
	r.ctx.Response.Header.SetBytesV("Location", r.buf)
	r.ctx.SetStatusCode(fasthttp.StatusFound)
	return "redirect"
}

type notFoundMode int

const (
	notFoundIsError notFoundMode = iota
	notFoundIsNotRunning
)

const notRunningAnswer = "<response><returncode>SUCCESS</returncode><running>false</running></response>"

// forwardMeetingCall sends a meeting's call to the backend that runs it and
// shows the client its own meeting ID in the answer.
func (r *bbbRequest) forwardMeetingCall(mode notFoundMode, after func(m *fsm.Meeting, b *fsm.Backend, env bbb.Envelope)) string {
	mid, internal, m, b, res := r.findMeeting()
	if res != "" {
		return res
	}
	if m != nil && meetingDown(m, b) {
		// Its node is dead or lost it: not running, as BBB answers for a
		// meeting it does not run, until a join creates it again. An end
		// forgets it.
		if r.call == "end" {
			r.s.release(m.InternalID, m.BackendID)
		}
		m = nil
	}
	if m == nil {
		if mode == notFoundIsNotRunning {
			writeXML(r.ctx, []byte(notRunningAnswer))
			return "success"
		}
		return r.Fail(bbb.KeyNotFound, bbb.MsgNotFound)
	}
	var body []byte
	var ct string
	if len(r.body) > 0 {
		body, ct = r.body, string(r.ctx.Request.Header.ContentType())
	}
	answer, err := r.s.node.Call(b, r.call, r.args, body, ct, nodeclient.DefaultTimeout)
	if err != nil {
		return r.Fail(bbb.KeyServerUnavailable, msgBackendDown)
	}
	env, els, _ := nodeclient.ParseAnswer(answer)
	if after != nil {
		after(m, b, env)
	}
	writeXML(r.ctx, callbacks.HideRelayURLs(nodeclient.ShowMeetingIDs(answer, els, internal, mid)))
	if env.OK() || env.ReturnCode == "" {
		return "success"
	}
	return env.MessageKey
}

// afterEnd forgets an ended meeting (decommissioned backends go with their last).
func (r *bbbRequest) afterEnd(m *fsm.Meeting, b *fsm.Backend, env bbb.Envelope) {
	if env.OK() {
		r.s.release(m.InternalID, b.ID)
	}
}

// afterMeetingInfo forgets a meeting its backend no longer knows (it ended
// on its own, e.g. when the last attendee left).
// A meeting whose parameters are kept is marked lost instead (its node may
// have restarted empty): a join creates it again.
func (r *bbbRequest) afterMeetingInfo(m *fsm.Meeting, b *fsm.Backend, env bbb.Envelope) {
	if !env.OK() && env.MessageKey == bbb.KeyNotFound {
		if m.Create != nil {
			go control.MarkLost(context.Background(), r.s.cluster.Commit, r.s.log, []fsm.MeetingRef{{InternalID: m.InternalID, BackendID: b.ID}})
			return
		}
		go r.s.release(m.InternalID, b.ID)
	}
}

// relayCallbacks rewrites the callback metadata of a create bound for
// backend b (the client's meeting ID mid); see relayArgs.
func (r *bbbRequest) relayCallbacks(b *fsm.Backend, mid string, createdAt int64) {
	r.s.relay.RelayArgs(r.args, &r.frontend, b, mid, createdAt)
}
