// Package recordings answers the BBB API's recording calls and keeps the
// recordings index. Recordings live in a replicated index (fsm.Recording),
// fed by BBB's recording-ready callbacks and by the leader's periodic sync
// of every backend's getRecordings. A recording belongs to the frontend whose key
// prefixes its internal meeting ID; getRecordings is answered from the
// index, and calls that change a recording check its owner there first, so
// a frontend can never publish, update or delete another's, even knowing
// its recordID (b3scale lets publish and update through). A recording
// format copied to central storage (package central) plays from every
// peer: getRecordings shows its URLs on the cluster's own name, and
// publish/unpublish/delete act on the central copy, also with its node
// gone. Other formats keep their node's URLs, listed while the node is
// gone with their last known ones.
package recordings

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/central"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/gateway/nodeclient"
)

// Request is one BBB API call whose checksum has passed (bbbapi's pooled
// request).
type Request interface {
	Ctx() *fasthttp.RequestCtx
	// Call is the BBB call's name, e.g. "publishRecordings".
	Call() string
	Frontend() *fsm.Frontend
	// Args are the verified query parameters, checksum removed.
	Args() *fasthttp.Args
	// Body is the request body, read within its bound (nil without one).
	Body() []byte
	// WriteXML answers body as BBB's XML.
	WriteXML(body []byte)
	// Fail answers BBB's FAILED envelope and returns key.
	Fail(key, msg string) string
}

// Cluster is what the recordings need of the replicated core.
type Cluster interface {
	// FSM is the local replica, for reads.
	FSM() *fsm.FSM
	// Apply returns once the local replica holds the write.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// Commit returns on the leader's answer alone.
	Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error)
}

// commitTimeout bounds each write of a sync round.
const commitTimeout = 5 * time.Second

// Recordings answers the recording calls from the index and keeps it in
// line with the nodes.
type Recordings struct {
	cluster Cluster
	node    *nodeclient.Client
	log     *slog.Logger
	central *central.Central
	// publicBase is the scheme://host the client reached the cluster by.
	publicBase func(*fasthttp.RequestCtx) (string, bool)
}

// New builds the recordings' calls over cluster, calling nodes through
// node; central copies (c, which may be disabled) play on publicBase.
func New(cluster Cluster, node *nodeclient.Client, log *slog.Logger, c *central.Central,
	publicBase func(*fasthttp.RequestCtx) (string, bool)) *Recordings {
	return &Recordings{cluster: cluster, node: node, log: log, central: c, publicBase: publicBase}
}

const noRecordingsAnswer = "<response><returncode>SUCCESS</returncode><messageKey>noRecordings</messageKey><message>No recordings found</message><recordings/></response>"

// clientMeetingID shows the client its own meeting ID for an internal one.
func (x *Recordings) clientMeetingID(frontend, internal string) string {
	if m, ok := x.cluster.FSM().Meeting(internal); ok && m.Frontend == frontend {
		return m.MeetingID
	}
	return strings.TrimPrefix(internal, frontend+"~")
}

// parseRecordings reads a backend's getRecordings answer into index
// entries: only recordings of known frontends, each element kept as the
// backend wrote it but with the client's meeting ID.
func (x *Recordings) parseRecordings(backend string, doc []byte) ([]fsm.Recording, bool) {
	doc = callbacks.HideRelayURLs(doc) // a recording's metadata shows the client's own callback URLs
	els, err := xmlscan.Scan(doc, "returncode", "recording", "recordID", "meetingID", "state", "startTime", "metadata")
	if err != nil {
		return nil, false
	}
	st := x.cluster.FSM()
	var out []fsm.Recording
	for i, rec := range els {
		if rec.Name == "returncode" && rec.Depth == 2 && rec.Text != "SUCCESS" {
			return nil, false
		}
		if rec.Name != "recording" || rec.Depth != 3 {
			continue
		}
		r := fsm.Recording{BackendID: backend}
		var meta *xmlscan.Element
		for j := range els[:i] {
			c := &els[j]
			if c.Depth != rec.Depth+1 || c.Start < rec.Start || c.End > rec.End {
				continue
			}
			switch c.Name {
			case "recordID":
				r.RecordID = c.Text
			case "meetingID":
				r.InternalID = c.Text
			case "state":
				r.State = c.Text
			case "startTime":
				r.StartTime, _ = strconv.ParseInt(c.Text, 10, 64)
			case "metadata":
				meta = c
			}
		}
		fe, ok := st.FrontendOf(r.InternalID)
		if !ok || r.RecordID == "" {
			continue
		}
		r.Frontend = fe
		r.MeetingID = x.clientMeetingID(fe, r.InternalID)
		r.Meta = capMeta(metadataOf(doc[rec.Start:rec.End], meta, rec.Start))
		r.XML = string(nodeclient.RewriteMeetingIDs(doc[rec.Start:rec.End], r.InternalID, r.MeetingID))
		out = append(out, r)
	}
	return out, true
}

// metadataOf reads the children of <metadata> as name → text.
func metadataOf(recDoc []byte, meta *xmlscan.Element, offset int) map[string]string {
	if meta == nil {
		return nil
	}
	els, err := xmlscan.Scan(recDoc[meta.Start-offset : meta.End-offset]) // every element
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, e := range els {
		if e.Depth == 2 {
			out[e.Name] = e.Text
		}
	}
	return out
}

// capMeta keeps a recording's metadata within what the state stores
// (fsm.MaxSettings*): entries with a longer name or value are dropped, and
// past the count, the names last in order. The recording itself stays
// listed; the state would refuse it whole otherwise.
func capMeta(m map[string]string) map[string]string {
	for k, v := range m {
		if k == "" || len(k) > fsm.MaxSettingsKeyLen || len(v) > fsm.MaxSettingsValueLen {
			delete(m, k)
		}
	}
	if len(m) > fsm.MaxSettingsKeys {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys[fsm.MaxSettingsKeys:] {
			delete(m, k)
		}
	}
	return m
}

// Sync brings the index in line with one backend's recordings (all of
// them, or just ids): new and changed ones are put, ones the backend no
// longer has are dropped. wait makes the change visible on this peer
// before returning.
func (x *Recordings) Sync(b *fsm.Backend, ids []string, wait bool) error {
	apply := x.cluster.Commit
	if wait {
		apply = x.cluster.Apply
	}
	return x.sync(context.Background(), apply, b, ids)
}

// SyncWith is the recordings sync's round for b, committing through apply
// (the leader's term-bound apply), within parent (its term's context).
func (x *Recordings) SyncWith(parent context.Context, apply control.ApplyFunc, b *fsm.Backend) error {
	return x.sync(parent, apply, b, nil)
}

// sync is Sync committing through apply, within parent.
func (x *Recordings) sync(parent context.Context, apply control.ApplyFunc, b *fsm.Backend, ids []string) error {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.Set("state", "any")
	timeout := nodeclient.SyncTimeout // a whole node's recordings
	if len(ids) > 0 {
		args.Set("recordID", strings.Join(ids, ","))
		timeout = nodeclient.DefaultTimeout // a few: a read
	}
	answer, err := x.node.Call(b, "getRecordings", args, nil, "", timeout)
	if err != nil {
		return err
	}
	recs, ok := x.parseRecordings(b.ID, answer)
	if !ok {
		return fmt.Errorf("backend %s: unreadable getRecordings answer", b.ID)
	}
	have := x.cluster.FSM().RecordingsOn(b.ID)
	var put []fsm.Recording
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.RecordID] = true
		if old, ok := have[r.RecordID]; !ok || old.XML != r.XML || old.State != r.State {
			put = append(put, r)
		}
	}
	var drop []string
	for id := range have {
		asked := len(ids) == 0
		for _, want := range ids {
			asked = asked || want == id
		}
		if asked && !seen[id] {
			drop = append(drop, id)
		}
	}
	ctx, cancel := context.WithTimeout(parent, commitTimeout)
	defer cancel()
	for len(put) > 0 { // in slices, to keep log entries small
		n := min(len(put), 200)
		if _, err := apply(ctx, &fsm.PutRecordings{Recordings: put[:n]}); err != nil {
			return err
		}
		put = put[n:]
	}
	if len(drop) > 0 {
		sort.Strings(drop)
		if _, err := apply(ctx, &fsm.DropRecordings{BackendID: b.ID, RecordIDs: drop}); err != nil {
			return err
		}
	}
	return nil
}

// clientMeetingSet is a client's comma list of meeting IDs as a set.
func clientMeetingSet(list string) map[string]bool {
	out := map[string]bool{}
	for _, id := range splitIDs(list) {
		out[id] = true
	}
	return out
}

// matchMeta applies one meta_* filter: exact, or with % at either end as a
// wildcard, as bbb-web does.
func matchMeta(v, f string) bool {
	pre, suf := strings.HasPrefix(f, "%"), strings.HasSuffix(f, "%") && len(f) > 1
	core := strings.TrimSuffix(strings.TrimPrefix(f, "%"), "%")
	switch {
	case pre && suf:
		return strings.Contains(v, core)
	case pre:
		return strings.HasSuffix(v, core)
	case suf:
		return strings.HasPrefix(v, core)
	}
	return v == f
}

// Get answers getRecordings from the local index: meetingID and recordID
// lists (recordID as a prefix, and winning over meetingID), state (default
// published,unpublished; any = all), meta_* filters, offset/limit paging.
func (x *Recordings) Get(r Request) string {
	a := r.Args()
	meetings := clientMeetingSet(string(a.Peek("meetingID")))
	recordIDs := splitIDs(string(a.Peek("recordID")))
	states := map[string]bool{"published": true, "unpublished": true}
	if v := string(a.Peek("state")); v != "" {
		states = map[string]bool{}
		for _, s := range splitIDs(v) {
			states[s] = true
		}
	}
	// A slice, not a map: ranging over a map per record costs a randomised
	// iterator each time, which dominated this filter over 10 000 records.
	type metaFilter struct{ key, pattern string }
	var metas []metaFilter
	a.VisitAll(func(k, v []byte) {
		if key := strings.ToLower(string(k)); strings.HasPrefix(key, "meta_") {
			metas = append(metas, metaFilter{key[len("meta_"):], string(v)})
		}
	})
	keep := func(rec *fsm.Recording) bool {
		if !states["any"] && !states[rec.State] {
			return false
		}
		if len(recordIDs) > 0 {
			ok := false
			for _, p := range recordIDs {
				ok = ok || strings.HasPrefix(rec.RecordID, p)
			}
			if !ok {
				return false
			}
		} else if len(meetings) > 0 && !meetings[rec.MeetingID] {
			return false
		}
		for _, f := range metas {
			if v, ok := rec.Meta[f.key]; !ok || !matchMeta(v, f.pattern) {
				return false
			}
		}
		return true
	}
	recs := x.cluster.FSM().RecordingsOf(r.Frontend().Key, keep)

	offset, limit, paged := PagingParams(a.Peek("offset"), a.Peek("limit"))
	total := len(recs)
	page := recs
	if paged {
		page = pageOf(recs, offset, limit)
	}
	if len(page) == 0 && !paged {
		r.WriteXML([]byte(noRecordingsAnswer))
		return "success"
	}
	base := ""
	if x.publicBase != nil {
		base, _ = x.publicBase(r.Ctx())
	}
	var out bytes.Buffer
	out.WriteString("<response><returncode>SUCCESS</returncode><recordings>")
	for i := range page {
		out.WriteString(x.central.PlaybackXML(&page[i], r.Frontend(), base))
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
	r.WriteXML(out.Bytes())
	return "success"
}

// PagingParams reads getRecordings' offset and limit as bbb-web does
// (MeetingService.getRecordings2x): both are Java ints, so a value that is
// not a 32-bit integer (garbage, or too large: 99999999999999999999) counts
// as absent. An absent or negative offset is 0. The answer is paged only when
// limit is a valid integer, clamped to 1..100; a bad limit means no paging
// at all, whatever offset says.
func PagingParams(rawOffset, rawLimit []byte) (offset, limit int, paged bool) {
	if o, err := strconv.ParseInt(string(rawOffset), 10, 32); err == nil && o > 0 {
		offset = int(o)
	}
	l, err := strconv.ParseInt(string(rawLimit), 10, 32)
	if err != nil {
		return offset, 0, false
	}
	return offset, int(min(max(l, 1), 100)), true
}

// pageOf is recs[offset:offset+limit] clipped to recs, with no arithmetic
// that can overflow (offset may be anything up to MaxInt32).
func pageOf[T any](recs []T, offset, limit int) []T {
	if offset < 0 || offset >= len(recs) || limit <= 0 {
		return recs[:0]
	}
	rest := recs[offset:]
	return rest[:min(limit, len(rest))]
}

// ownRecording returns the caller's recording from the index.
func (x *Recordings) ownRecording(r Request, id string) (fsm.Recording, bool) {
	rec, ok := x.cluster.FSM().Recording(id)
	return rec, ok && rec.Frontend == r.Frontend().Key
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

// Change forwards publish/update/delete to the backends holding the
// recordings, after checking every one belongs to the caller. When any
// of them is on a node declared dead (or removed), nothing is sent
// anywhere: the call fails at once, whole, rather than change some
// recordings and not others — unless every recording there has a central
// copy, which publish and delete then act on alone. A delete also removes
// the central copies.
func (x *Recordings) Change(r Request) string {
	ids := splitIDs(string(r.Args().Peek("recordID")))
	if len(ids) == 0 {
		return r.Fail(bbb.KeyMissingParamRecordID, "You must specify a recordID.")
	}
	if r.Call() == "publishRecordings" && !r.Args().Has("publish") {
		return r.Fail(bbb.KeyMissingParamPublish, "You must specify a publish value true or false.")
	}
	perBackend := map[string][]string{}
	recs := map[string]fsm.Recording{}
	for _, id := range ids {
		rec, ok := x.ownRecording(r, id)
		if !ok {
			return r.Fail(bbb.KeyNotFound, "We could not find recordings")
		}
		perBackend[rec.BackendID] = append(perBackend[rec.BackendID], id)
		recs[id] = rec
	}
	centralOnly := func(ids []string) bool {
		if !x.central.Enabled() || r.Call() == "updateRecordings" {
			return false
		}
		for _, id := range ids {
			if len(recs[id].Central) == 0 {
				return false
			}
		}
		return true
	}
	bids := slices.Sorted(maps.Keys(perBackend))
	backends := make([]*fsm.Backend, len(bids)) // nil: act on the central copies alone
	for i, bid := range bids {
		b, ok := x.cluster.FSM().Backend(bid)
		switch {
		case (!ok || control.BackendDead(&b)) && centralOnly(perBackend[bid]):
		case !ok:
			return r.Fail(bbb.KeyNotFound, "We could not find recordings")
		case control.BackendDead(&b):
			return r.Fail(bbb.KeyServerUnavailable, deadBackendMessage(&b, "recording "+strings.Join(perBackend[bid], ",")))
		default:
			backends[i] = &b
		}
	}
	var answer []byte // the last node's answer; nil: BBB's own, made here
	for i, bid := range bids {
		b := backends[i]
		if b == nil {
			continue
		}
		r.Args().Set("recordID", strings.Join(perBackend[bid], ","))
		a, err := x.node.Call(b, r.Call(), r.Args(), nil, "", nodeclient.DefaultTimeout)
		if err != nil {
			return r.Fail(bbb.KeyServerUnavailable, "The server holding the recording did not answer.")
		}
		env, _, _ := nodeclient.ParseAnswer(a)
		// Refresh the index from the backend, so both agree afterwards.
		if err := x.Sync(b, perBackend[bid], true); err != nil {
			x.log.Warn("recordings index refresh failed", "backend", bid, "err", err)
		}
		if !env.OK() && env.MessageKey == bbb.KeyNotFound && centralOnly(perBackend[bid]) {
			// The node no longer has its copies (cleaned up once they were
			// central): the central copies are what the call is about.
			continue
		}
		if !env.OK() {
			r.WriteXML(a)
			return env.MessageKey
		}
		answer = a
	}
	if key, ok := x.changeCentral(r, ids, recs); !ok {
		return key
	}
	if answer == nil {
		answer = changedAnswer(r)
	}
	r.WriteXML(answer)
	return "success"
}

// changeCentral makes the index and the central copies follow a publish
// or delete: a delete removes the copies and the entries; a publish of
// recordings whose node was not asked sets their state in the index.
func (x *Recordings) changeCentral(r Request, ids []string, recs map[string]fsm.Recording) (string, bool) {
	if !x.central.Enabled() {
		return "", true
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var central []string
	for _, id := range ids {
		if len(recs[id].Central) > 0 {
			central = append(central, id)
		}
	}
	if len(central) == 0 {
		return "", true
	}
	var cmd fsm.Command
	switch r.Call() {
	case "deleteRecordings":
		for _, id := range central {
			rec := recs[id]
			if err := x.central.Delete(ctx, &rec); err != nil {
				x.log.Warn("central copy not deleted", "record_id", id, "err", err)
				return r.Fail(bbb.KeyServerUnavailable, "The recording storage did not answer; please retry."), false
			}
		}
		cmd = &fsm.DropRecordings{RecordIDs: central}
	case "publishRecordings":
		cmd = &fsm.SetRecordingsPublished{RecordIDs: central, Published: parseBool(string(r.Args().Peek("publish")))}
	default:
		return "", true
	}
	if _, err := x.cluster.Apply(ctx, cmd); err != nil {
		return r.Fail(bbb.KeyServerUnavailable, "The change could not be recorded; please retry."), false
	}
	return "", true
}

// changedAnswer is BBB's answer to a publish or delete that succeeded.
func changedAnswer(r Request) []byte {
	if r.Call() == "deleteRecordings" {
		return []byte("<response><returncode>SUCCESS</returncode><deleted>true</deleted></response>")
	}
	return []byte("<response><returncode>SUCCESS</returncode><published>" +
		strconv.FormatBool(parseBool(string(r.Args().Peek("publish")))) + "</published></response>")
}

// parseBool reads BBB's boolean parameters (Boolean.parseBoolean: only
// "true", in any case, is true).
func parseBool(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "true") }

// TextTrack forwards getRecordingTextTracks / putRecordingTextTrack
// (JSON answers) to the backend holding the caller's recording.
func (x *Recordings) TextTrack(r Request) string {
	id := strings.TrimSpace(string(r.Args().Peek("recordID")))
	if id == "" {
		return failJSON(r.Ctx(), "missingParamRecordID", "You must specify a recordID.")
	}
	rec, ok := x.ownRecording(r, id)
	if !ok {
		return failJSON(r.Ctx(), "noRecordings", "No recording found for "+id)
	}
	b, ok := x.cluster.FSM().Backend(rec.BackendID)
	if !ok {
		return failJSON(r.Ctx(), "noRecordings", "No recording found for "+id)
	}
	if control.BackendDead(&b) {
		return failJSON(r.Ctx(), bbb.KeyServerUnavailable, deadBackendMessage(&b, "recording "+id))
	}
	var body []byte
	var ct string
	if r.Ctx().IsPost() {
		body, ct = r.Body(), string(r.Ctx().Request.Header.ContentType())
	}
	a, err := x.node.Call(&b, r.Call(), r.Args(), body, ct, nodeclient.DefaultTimeout)
	if err != nil {
		return failJSON(r.Ctx(), "serverUnavailable", "The server holding the recording did not answer.")
	}
	r.Ctx().SetStatusCode(fasthttp.StatusOK)
	r.Ctx().SetContentType("application/json")
	r.Ctx().SetBody(a)
	return "success"
}

func failJSON(ctx *fasthttp.RequestCtx, key, msg string) string {
	var v struct {
		Response struct {
			ReturnCode string `json:"returncode"`
			MessageKey string `json:"messageKey"`
			Message    string `json:"message"`
		} `json:"response"`
	}
	v.Response.ReturnCode, v.Response.MessageKey, v.Response.Message = "FAILED", key, msg
	b, _ := json.Marshal(v)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return key
}
