package bbbapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/gateway/nodeclient"
)

// Transparent failover. Every create's parameters are kept with the
// meeting in the replicated state (keepParams). When the node under a
// meeting is dead (NodeState error, or the backend is gone) or has lost it
// (restarted empty: the prober marks it lost), the next join re-creates it
// with the same parameters on a live node and redirects the user there.
// Joins racing on several peers each propose a FailoverMeeting claim; the
// log lets the first move the binding, and only that peer creates the
// meeting. The others wait (recreateWait at most) for its MeetingRecreated
// marker, then redirect to the new node. A winner that dies leaves the
// claim unconfirmed; after fsm.RecreateStale a later join takes it over.

const (
	// recreateWait bounds how long a join waits for another peer's
	// re-creation of its meeting, and how long a re-creation may take.
	recreateWait = 5 * time.Second
)

const (
	msgInvalidMeetingID = "The meeting ID that you supplied did not match any existing meetings"
	msgInvalidPassword  = "You either did not supply a password or the password supplied is neither the attendee or moderator password for this conference."
	msgMissingFullName  = "You must specify a name for the attendee who will be joining the meeting."
	msgNotRecreatable   = "The server running this meeting is down, and the meeting cannot be created again (its parameters are not known). Please create it again."
)

// backendDead reports whether a meeting bound to b cannot run there: the
// backend is gone, or the cluster declared its node dead. A node held in
// error only because its meeting list is too large to read still runs its
// meetings.
func backendDead(b *fsm.Backend) bool { return control.BackendDead(b) }

// meetingDown reports whether a meeting is not running where it is bound.
func meetingDown(m *fsm.Meeting, b *fsm.Backend) bool {
	return backendDead(b) || m.Down()
}

// keepParams records, after a successful create on b, what is needed to
// create the meeting again: the query as b got it, the slides when they
// fit, and the passwords and createTime b answered. It is committed in the
// background (the client's answer does not wait for it); a repeated create
// of a meeting whose parameters are known commits nothing.
func (r *bbbRequest) keepParams(b *fsm.Backend, internal string, answer, body []byte, contentType string, fresh bool) {
	if !fresh {
		if m, ok := r.s.cluster.FSM().Meeting(internal); ok && m.Create != nil && !m.Lost {
			return
		}
	}
	a := fasthttp.AcquireArgs()
	r.args.CopyTo(a)
	if !r.clientBridge {
		a.Del("voiceBridge") // the state's, chosen per node
	}
	callbacks.UnrelayArgs(a)
	p := fsm.CreateParams{Query: string(a.QueryString()), ClientBridge: r.clientBridge}
	fasthttp.ReleaseArgs(a)
	if len(p.Query) > fsm.MaxCreateQuery {
		r.s.log.Warn("create parameters too large to keep: this meeting cannot fail over", "frontend", r.frontend.Key,
			"meeting", internal, "bytes", len(p.Query), "limit", fsm.MaxCreateQuery)
		return
	}
	if len(body) > 0 {
		if len(body) <= fsm.MaxCreateSlides && len(contentType) <= 128 {
			p.Slides, p.SlidesType = string(body), contentType
		} else {
			p.SlidesLost = true
			r.s.log.Warn("slides too large to keep: a re-created meeting will not have them", "frontend", r.frontend.Key,
				"meeting", internal, "bytes", len(body), "limit", fsm.MaxCreateSlides)
		}
	}
	if els, err := xmlscan.Scan(answer, "attendeePW", "moderatorPW", "createTime"); err == nil {
		for _, e := range els {
			if e.Depth != 2 {
				continue
			}
			switch e.Name {
			case "attendeePW":
				p.AttendeePW = e.Text
			case "moderatorPW":
				p.ModeratorPW = e.Text
			case "createTime":
				p.CreateTime, _ = strconv.ParseInt(e.Text, 10, 64)
			}
		}
	}
	cmd := &fsm.SetMeetingParams{InternalID: strings.Clone(internal), BackendID: b.ID, Params: p}
	s := r.s // r goes back to its pool when the request ends
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		defer cancel()
		if _, err := s.cluster.Commit(ctx, cmd); err != nil {
			s.log.Warn("could not keep a meeting's create parameters", "meeting", cmd.InternalID, "err", err)
		}
	}()
}

// joinRoleOK mirrors bbb-web's role choice: role=moderator|viewer (BBB
// 2.6+) wins; otherwise the password must be one of the meeting's. When
// the state does not know them (a meeting created before they were kept),
// the node decides.
func (r *bbbRequest) joinRoleOK(m *fsm.Meeting) bool {
	role := r.args.Peek("role")
	if asciiEqualFold(role, "moderator") || asciiEqualFold(role, "viewer") {
		return true
	}
	if m.Create == nil || (m.Create.AttendeePW == "" && m.Create.ModeratorPW == "") {
		return true
	}
	pw := r.args.Peek("password")
	return len(pw) > 0 && (string(pw) == m.Create.ModeratorPW || string(pw) == m.Create.AttendeePW)
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recreate brings a down meeting back on a live node (or waits for the
// peer doing it) and returns where it now runs. A non-empty res means an
// answer was written.
func (r *bbbRequest) recreate(mid, internal string, m *fsm.Meeting) (*fsm.Meeting, *fsm.Backend, string) {
	internal = strings.Clone(internal)
	st := r.s.cluster.FSM()
	deadline := time.Now().Add(recreateWait)
	token := newToken()
	tried := map[string]bool{}
	cur := *m
	for attempt := 0; ; attempt++ {
		b, ok := st.Backend(cur.BackendID)
		var bp *fsm.Backend
		if ok {
			bp = &b
		}
		switch {
		case !meetingDown(&cur, bp):
			return &cur, bp, "" // up again (another peer re-created it)
		case cur.Recreating != 0 && cur.RecreateToken != token && !backendDead(bp) && now()-cur.Recreating < fsm.RecreateStale:
			// Another peer is re-creating it: wait for its marker.
			if got, ok := r.s.waitRecreated(internal, deadline); ok {
				return r.bindingOf(got)
			}
			r.s.metrics.PlaceFailures.WithLabelValues("recreate_wait_timeout").Inc()
			return &cur, bp, "" // bounded wait over: send the user there anyway
		case cur.Create == nil:
			return nil, nil, r.Fail(bbb.KeyServerUnavailable, msgNotRecreatable)
		case time.Now().After(deadline) || attempt > 2*maxPlaceAttempts:
			return nil, nil, r.Fail(bbb.KeyServerUnavailable, "The meeting's server is down and no other server could take the meeting now. Please retry.")
		}
		var target *fsm.Backend
		if cur.Lost && ok && b.Placeable() && !tried[b.ID] {
			target = bp // restarted empty: back on the same node
		} else {
			exclude := map[string]bool{cur.BackendID: cur.Lost || backendDead(bp)}
			for k := range tried {
				exclude[k] = true
			}
			// The placement rules of a create, meta_server-tag included.
			t, err := r.s.ctl.PlaceTagged(&r.frontend, exclude, control.ServerTagsInQuery(cur.Create.Query))
			if err != nil {
				return nil, nil, r.Fail(bbb.KeyServerUnavailable, "The meeting's server is down and no other server is available: "+err.Error())
			}
			target = t
		}
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		res, err := r.s.cluster.Commit(ctx, &fsm.FailoverMeeting{InternalID: internal, FromBackend: cur.BackendID,
			ToBackend: target.ID, Token: token, Now: now()})
		cancel()
		if err != nil {
			return nil, nil, r.Fail(bbb.KeyServerUnavailable, msgUnavailable)
		}
		if res.Error != nil || res.Meeting == nil {
			tried[target.ID] = true
			if got, ok := st.Meeting(internal); ok {
				cur = got
				continue
			}
			return nil, nil, r.Fail(bbb.KeyInvalidMeetingID, msgInvalidMeetingID)
		}
		cur = *res.Meeting
		if !res.Created {
			continue // another claim won: wait for it
		}
		r.s.log.Info("re-creating a meeting whose node is down", "meeting", mid, "frontend", r.frontend.Key,
			"from", res.PreviousBackend, "to", target.ID, "lost", m.Lost)
		if r.s.createAgain(&r.frontend, target, &cur, mid) {
			ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
			done, err := r.s.cluster.Commit(ctx, &fsm.MeetingRecreated{InternalID: internal, BackendID: target.ID, Token: token, Now: now()})
			cancel()
			if err != nil || done.Meeting == nil {
				r.s.log.Warn("re-created meeting not confirmed", "meeting", mid, "err", err)
			} else {
				cur = *done.Meeting
			}
			r.s.metrics.Placements.WithLabelValues(target.ID).Inc()
			r.s.metrics.Recreations.Inc()
			return &cur, target, ""
		}
		tried[target.ID] = true
	}
}

// bindingOf returns a meeting and its backend from the local replica.
func (r *bbbRequest) bindingOf(m fsm.Meeting) (*fsm.Meeting, *fsm.Backend, string) {
	b, ok := r.s.cluster.FSM().Backend(m.BackendID)
	if !ok {
		return nil, nil, r.Fail(bbb.KeyServerUnavailable, msgBackendDown)
	}
	return &m, &b, ""
}

// waitRecreated waits, until deadline, for the local replica to hold the
// meeting up on a live backend (the re-creation confirmed). A replica that
// has not applied the failover claim yet still shows the old binding, on
// the dead backend: that is not an answer.
func (s *API) waitRecreated(internal string, deadline time.Time) (fsm.Meeting, bool) {
	st := s.cluster.FSM()
	for {
		m, ok := st.Meeting(internal)
		if !ok {
			return m, false
		}
		if !m.Down() {
			if b, ok := st.Backend(m.BackendID); ok && !backendDead(&b) {
				return m, true
			}
		}
		if time.Now().After(deadline) {
			return m, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createAgain creates a meeting on b from its kept parameters: same ID,
// passwords, metadata and slides; the state's voice bridge for b; callback
// relays signed anew for b.
func (s *API) createAgain(fe *fsm.Frontend, b *fsm.Backend, m *fsm.Meeting, mid string) bool {
	p := m.Create
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.Parse(p.Query)
	args.Set("meetingID", m.InternalID)
	if p.AttendeePW != "" {
		args.Set("attendeePW", p.AttendeePW)
	}
	if p.ModeratorPW != "" {
		args.Set("moderatorPW", p.ModeratorPW)
	}
	if !p.ClientBridge {
		args.Del("voiceBridge")
		if m.VoiceBridge != 0 {
			args.Set("voiceBridge", strconv.Itoa(m.VoiceBridge))
		}
	}
	s.relay.RelayArgs(args, fe, b, mid, m.CreatedAt)
	var body []byte
	if p.Slides != "" {
		body = []byte(p.Slides)
	}
	for try := 0; try < 2; try++ {
		answer, err := s.node.Call(b, "create", args, body, p.SlidesType, recreateWait)
		if err != nil {
			s.log.Warn("re-create failed", "backend", b.ID, "meeting", mid, "err", err)
			return false
		}
		env, _, perr := nodeclient.ParseAnswer(answer)
		switch {
		case perr != nil:
			return false
		case env.OK(): // duplicateWarning too: a create through the API got there first
			if p.SlidesLost {
				s.log.Warn("meeting re-created without its slides (they were too large to keep)", "backend", b.ID, "meeting", mid)
			}
			return true
		case env.MessageKey == bbb.KeyNonUniqueVoiceBridge && !p.ClientBridge && args.Has("voiceBridge"):
			args.Del("voiceBridge") // taken by a meeting outside the cluster: the node picks one
			continue
		}
		s.log.Warn("re-create refused", "backend", b.ID, "meeting", mid, "key", env.MessageKey, "message", env.Message)
		return false
	}
	return false
}
