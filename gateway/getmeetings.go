package gateway

import (
	"bytes"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
)

const noMeetingsAnswer = "<response><returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey><message>no meetings were found on this server</message></response>"

// getMeetings gathers the frontend's meetings from every backend that runs
// one, concurrently, each with its own timeout: a dead backend costs its
// meetings in the answer, never the whole call (Scalelite fails it). A
// backend whose answer is over the size limit is asked for the frontend's
// meetings one by one instead (counted and logged).
func (r *bbbRequest) getMeetings() string {
	mine := map[string]string{} // internal ID -> client's ID
	perBackend := map[string]bool{}
	onBackend := map[string][]string{} // backend -> the frontend's meetings there
	for _, m := range r.s.cluster.FSM().Meetings(r.frontend.Key) {
		mine[m.InternalID] = m.MeetingID
		perBackend[m.BackendID] = true
		onBackend[m.BackendID] = append(onBackend[m.BackendID], m.InternalID)
	}
	if len(mine) == 0 {
		writeXML(r.ctx, []byte(noMeetingsAnswer))
		return "success"
	}
	ids := sortedSet(perBackend)
	parts := make([][]byte, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		b, ok := r.s.cluster.FSM().Backend(id)
		if !ok {
			continue
		}
		wg.Add(1)
		go func(i int, b fsm.Backend) {
			defer wg.Done()
			answer, err := r.s.callBackend(&b, "getMeetings", nil, nil, "", getMeetingsTimeout)
			if err != nil {
				if isTooLarge(err) {
					// Not a dead node: one that outgrew the limit. Say so
					// every time (metric) and in the log (once a minute),
					// and ask for this frontend's meetings one by one.
					r.s.metrics.tooLarge.WithLabelValues(b.ID).Inc()
					if r.s.warnEvery("getMeetings-too-large:"+b.ID, time.Minute) {
						r.s.log.Error("getMeetings: backend's answer is over the size limit; its meetings are asked one by one (getMeetingInfo)",
							"backend", b.ID, "limit_bytes", maxBackendResponse, "meetings", len(onBackend[b.ID]))
					}
					parts[i] = hideRelayURLs(r.meetingsByInfo(&b, onBackend[b.ID], mine))
					return
				}
				r.s.log.Debug("getMeetings: backend skipped", "backend", b.ID, "err", err)
				return
			}
			parts[i] = hideRelayURLs(ownMeetings(answer, mine))
		}(i, b)
	}
	wg.Wait()
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	if total == 0 {
		writeXML(r.ctx, []byte(noMeetingsAnswer))
		return "success"
	}
	out := make([]byte, 0, total+96)
	out = append(out, "<response><returncode>SUCCESS</returncode><meetings>"...)
	for _, p := range parts {
		out = append(out, p...)
	}
	out = append(out, "</meetings></response>"...)
	writeXML(r.ctx, out)
	return "success"
}

// maxInfoFallback bounds the getMeetingInfo calls one getMeetings makes to
// a backend whose getMeetings answer is too large; infoConcurrency how many
// run at once.
const (
	maxInfoFallback = 500
	infoConcurrency = 8
)

// meetingsByInfo builds the <meeting> elements of the given meetings
// (internal IDs) on backend b from one getMeetingInfo each: getMeetingInfo
// answers a meeting's <meeting> element's children inside its <response>.
// Meetings the node does not know, or whose call fails, are left out.
func (r *bbbRequest) meetingsByInfo(b *fsm.Backend, internals []string, mine map[string]string) []byte {
	internals = sortStrings(internals)
	if len(internals) > maxInfoFallback {
		r.s.log.Warn("getMeetings: too many meetings to ask one by one; the rest are left out",
			"backend", b.ID, "meetings", len(internals), "asked", maxInfoFallback)
		internals = internals[:maxInfoFallback]
	}
	parts := make([][]byte, len(internals))
	slots := make(chan struct{}, infoConcurrency)
	var wg sync.WaitGroup
	for i, internal := range internals {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			args := fasthttp.AcquireArgs()
			defer fasthttp.ReleaseArgs(args)
			args.Set("meetingID", internal)
			answer, err := r.s.callBackend(b, "getMeetingInfo", args, nil, "", getMeetingsTimeout)
			if err != nil {
				return
			}
			parts[i] = meetingFromInfo(answer, internal, mine[internal])
		}()
	}
	wg.Wait()
	return bytes.Join(parts, nil)
}

// meetingFromInfo turns a getMeetingInfo answer for internal into the
// <meeting> element getMeetings would list, with the client's meeting ID.
func meetingFromInfo(doc []byte, internal, external string) []byte {
	els, err := scanXML(doc, "response", "returncode", "meetingID")
	if err != nil {
		return nil
	}
	var resp, rc *element
	ok := false
	for i := range els {
		e := &els[i]
		switch {
		case e.name == "response" && e.depth == 1:
			resp = e
		case e.name == "returncode" && e.depth == 2:
			rc = e
		case e.name == "meetingID" && e.depth == 2:
			ok = e.text == internal
		}
	}
	if resp == nil || rc == nil || rc.text != "SUCCESS" || !ok {
		return nil
	}
	var out []byte
	out = append(out, "<meeting>"...)
	out = append(out, doc[resp.contentStart:rc.start]...)
	out = append(out, doc[rc.end:resp.contentEnd]...)
	out = append(out, "</meeting>"...)
	return rewriteMeetingIDs(out, internal, external)
}

// ownMeetings cuts the <meeting> elements of one backend's getMeetings
// answer that belong to the frontend, with their meetingID shown as the
// client's own; the rest of each element is passed on byte for byte.
func ownMeetings(doc []byte, mine map[string]string) []byte {
	els, err := scanXML(doc, "meeting", "meetingID")
	if err != nil {
		return nil
	}
	var out bytes.Buffer
	for i, m := range els {
		if m.name != "meeting" || m.depth != 3 {
			continue
		}
		// Its own meetingID is a direct child scanned before it closed.
		for _, c := range els[:i] {
			if c.name != "meetingID" || c.depth != m.depth+1 || c.start < m.start || c.end > m.end {
				continue
			}
			ext, ok := mine[c.text]
			if !ok {
				break
			}
			out.Write(rewriteMeetingIDs(doc[m.start:m.end], c.text, ext))
			break
		}
	}
	return out.Bytes()
}

func sortedSet(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return sortStrings(keys)
}

// warnLimiter remembers when each rate-limited warning was last logged.
var warnLimiter sync.Map // key -> time.Time

// warnEvery reports whether a warning under key may be logged now: at
// most once per every.
func (s *Server) warnEvery(key string, every time.Duration) bool {
	now := time.Now()
	if last, ok := warnLimiter.Load(key); ok && now.Sub(last.(time.Time)) < every {
		return false
	}
	warnLimiter.Store(key, now)
	return true
}
