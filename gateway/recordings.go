package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
)

// Recordings are answered by asking every backend and keeping only the
// caller's: a recording belongs to the frontend whose key prefixes its
// internal meeting ID. Calls that change a recording first find it, so a
// frontend can never publish, update or delete another's, even knowing its
// recordID (b3scale lets publish and update through).

const noRecordingsAnswer = "<response><returncode>SUCCESS</returncode><messageKey>noRecordings</messageKey><message>No recordings found</message><recordings/></response>"

// recordingEl is one <recording> of a backend's answer.
type recordingEl struct {
	backend  string
	recordID string
	internal string // meetingID as the backend knows it
	raw      []byte // the element as the backend wrote it, meetingID patched
}

// clientMeetingID shows the client its own meeting ID for an internal one.
func (s *Server) clientMeetingID(frontend, internal string) string {
	if m, ok := s.cluster.FSM().Meeting(internal); ok && m.Frontend == frontend {
		return m.MeetingID
	}
	return strings.TrimPrefix(internal, frontend+"~")
}

// gatherRecordings calls getRecordings with args on every backend
// concurrently and returns the frontend's recordings, in backend order.
func (r *bbbRequest) gatherRecordings(args *fasthttp.Args) []recordingEl {
	backends := r.s.cluster.FSM().Backends()
	parts := make([][]recordingEl, len(backends))
	var wg sync.WaitGroup
	for i := range backends {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := &backends[i]
			answer, err := r.s.callBackend(b, "getRecordings", args, nil, "", getMeetingsTimeout)
			if err != nil {
				r.s.log.Debug("getRecordings: backend skipped", "backend", b.ID, "err", err)
				return
			}
			parts[i] = r.ownRecordings(b.ID, answer)
		}(i)
	}
	wg.Wait()
	var out []recordingEl
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (r *bbbRequest) ownRecordings(backend string, doc []byte) []recordingEl {
	els, err := scanXML(doc, "recording", "recordID", "meetingID")
	if err != nil {
		return nil
	}
	var out []recordingEl
	for i, rec := range els {
		if rec.name != "recording" || rec.depth != 3 {
			continue
		}
		var id, mid *element
		for j := range els[:i] {
			c := &els[j]
			if c.depth == rec.depth+1 && c.start >= rec.start && c.end <= rec.end {
				switch c.name {
				case "recordID":
					id = c
				case "meetingID":
					mid = c
				}
			}
		}
		if id == nil || mid == nil || !ownedBy(mid.text, r.frontend.Key) {
			continue
		}
		raw := rewriteMeetingIDs(doc[rec.start:rec.end], mid.text, r.s.clientMeetingID(r.frontend.Key, mid.text))
		out = append(out, recordingEl{backend: backend, recordID: id.text, internal: mid.text, raw: raw})
	}
	return out
}

// internalMeetingList maps a client's comma list of meeting IDs.
func (r *bbbRequest) internalMeetingList(list string) string {
	var ids []string
	for _, id := range strings.Split(list, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, internalMeetingID(r.frontend.Key, id))
		}
	}
	return strings.Join(ids, ",")
}

// getRecordings: meetingID and recordID lists, state, meta_* filters are
// applied by the backends; offset/limit paging over the merged answer.
func (r *bbbRequest) getRecordings() string {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	r.args.CopyTo(args)
	if mids := string(args.Peek("meetingID")); mids != "" {
		args.Set("meetingID", r.internalMeetingList(mids))
	}
	paged := args.Has("offset") || args.Has("limit")
	offset, _ := strconv.Atoi(string(args.Peek("offset")))
	limit, err := strconv.Atoi(string(args.Peek("limit")))
	if err != nil || limit > 100 {
		limit = 100
	}
	offset, limit = max(offset, 0), max(limit, 1)
	args.Del("offset")
	args.Del("limit")

	recs := r.gatherRecordings(args)
	total := len(recs)
	page := recs[min(offset, total):min(offset+limit, total)]
	if !paged {
		page = recs
	}
	if len(page) == 0 && !paged {
		writeXML(r.ctx, []byte(noRecordingsAnswer))
		return "success"
	}
	var out bytes.Buffer
	out.WriteString("<response><returncode>SUCCESS</returncode><recordings>")
	for _, rec := range page {
		out.Write(rec.raw)
	}
	out.WriteString("</recordings>")
	if paged {
		pages := (total + limit - 1) / limit
		fmt.Fprintf(&out, "<pagination><pageable><sort><unsorted>true</unsorted><sorted>false</sorted><empty>true</empty></sort>"+
			"<offset>%d</offset><pageSize>%d</pageSize><pageNumber>%d</pageNumber><paged>true</paged><unpaged>false</unpaged></pageable>"+
			"<totalElements>%d</totalElements><last>%t</last><totalPages>%d</totalPages><first>%t</first><empty>%t</empty></pagination>",
			offset, limit, offset/limit, total, offset+len(page) >= total, pages, offset == 0, len(page) == 0)
	}
	out.WriteString("</response>")
	writeXML(r.ctx, out.Bytes())
	return "success"
}

// locateRecordings finds which backend holds each of the frontend's
// recordIDs; IDs of other frontends or unknown ones are simply absent.
func (r *bbbRequest) locateRecordings(ids []string) map[string]recordingEl {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.Set("recordID", strings.Join(ids, ","))
	args.Set("state", "any")
	found := map[string]recordingEl{}
	for _, rec := range r.gatherRecordings(args) {
		found[rec.recordID] = rec
	}
	return found
}

func splitIDs(s string) []string {
	var out []string
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// changeRecordings forwards publish/update/delete to the backends holding
// the recordings, after checking every one belongs to the caller.
func (r *bbbRequest) changeRecordings() string {
	ids := splitIDs(string(r.args.Peek("recordID")))
	if len(ids) == 0 {
		return r.fail(bbb.KeyMissingParamRecordID, "You must specify a recordID.")
	}
	if r.call == "publishRecordings" && !r.args.Has("publish") {
		return r.fail(bbb.KeyMissingParamPublish, "You must specify a publish value true or false.")
	}
	found := r.locateRecordings(ids)
	perBackend := map[string][]string{}
	for _, id := range ids {
		rec, ok := found[id]
		if !ok {
			return r.fail(bbb.KeyNotFound, "We could not find recordings")
		}
		perBackend[rec.backend] = append(perBackend[rec.backend], id)
	}
	var answer []byte
	for _, bid := range sortedSet(keysOf(perBackend)) {
		b, ok := r.s.cluster.FSM().Backend(bid)
		if !ok {
			return r.fail(bbb.KeyNotFound, "We could not find recordings")
		}
		r.args.Set("recordID", strings.Join(perBackend[bid], ","))
		a, err := r.s.callBackend(&b, r.call, r.args, nil, "", backendCallTimeout)
		if err != nil {
			return r.fail(bbb.KeyServerUnavailable, "The server holding the recording did not answer.")
		}
		if env, _ := bbb.ParseEnvelope(a); !env.OK() {
			writeXML(r.ctx, a)
			return env.MessageKey
		}
		answer = a
	}
	writeXML(r.ctx, answer)
	return "success"
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// textTrackCall forwards getRecordingTextTracks / putRecordingTextTrack
// (JSON answers) to the backend holding the caller's recording.
func (r *bbbRequest) textTrackCall() string {
	id := strings.TrimSpace(string(r.args.Peek("recordID")))
	if id == "" {
		return r.failJSON("missingParamRecordID", "You must specify a recordID.")
	}
	rec, ok := r.locateRecordings([]string{id})[id]
	if !ok {
		return r.failJSON("noRecordings", "No recording found for "+id)
	}
	b, ok := r.s.cluster.FSM().Backend(rec.backend)
	if !ok {
		return r.failJSON("noRecordings", "No recording found for "+id)
	}
	var body []byte
	var ct string
	if r.ctx.IsPost() {
		body, ct = append([]byte(nil), r.ctx.PostBody()...), string(r.ctx.Request.Header.ContentType())
	}
	a, err := r.s.callBackend(&b, r.call, r.args, body, ct, backendCreateTimeout)
	if err != nil {
		return r.failJSON("serverUnavailable", "The server holding the recording did not answer.")
	}
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType("application/json")
	r.ctx.SetBody(a)
	return "success"
}

func (r *bbbRequest) failJSON(key, msg string) string {
	var v struct {
		Response struct {
			ReturnCode string `json:"returncode"`
			MessageKey string `json:"messageKey"`
			Message    string `json:"message"`
		} `json:"response"`
	}
	v.Response.ReturnCode, v.Response.MessageKey, v.Response.Message = "FAILED", key, msg
	b, _ := json.Marshal(v)
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType("application/json")
	r.ctx.SetBody(b)
	return key
}
