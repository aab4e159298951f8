package fakebbb

import (
	"crypto/sha1"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/conclave-lb/conclave/bbb"
)

// Recording states, as bbb-web names them.
const (
	statePublished   = "published"
	stateUnpublished = "unpublished"
	stateDeleted     = "deleted"
)

var allStates = []string{"processing", "processed", statePublished, stateUnpublished, stateDeleted}

const (
	msgMissingRecordID = "You must specify a recordID."
	msgMissingPublish  = "You must specify a publish value true or false."
	msgNoRecordingsXML = "There are no recordings for the meeting(s)."
	msgRecordingsGone  = "We could not find recordings"
)

type recording struct {
	id, meetingID, internalMeetingID, name string
	state                                  string
	protected                              bool // create had protect=true
	startTime, endTime                     int64
	participants                           int
	meta                                   map[string]string
	base                                   string   // scheme://host of the node that recorded it
	slides                                 []string // presentations, for the preview thumbnails
	tracks                                 []*textTrack
}

type textTrack struct {
	kind, lang, label, source string
	content                   []byte
}

// playbackURL is where the node's nginx serves the recording's video
// format: the directory, whose index.html plays video-0.m4v.
func (r *recording) playbackURL() string { return r.base + playbackPrefix + r.id + "/" }

// newRecording is what a recorded meeting leaves when it ends: already
// published (a real node takes minutes to process). Its ID is the meeting's
// internal ID, as in BBB.
func (s *Server) newRecording(m *meeting, base string, now int64) *recording {
	meta := make(map[string]string, len(m.meta)+3)
	for k, v := range m.meta {
		meta[k] = v
	}
	// bbb-web adds these to every recording's metadata.
	meta["meetingId"] = m.id
	meta["meetingName"] = m.name
	meta["isBreakout"] = strconv.FormatBool(m.isBreakout)
	rec := &recording{
		id:                m.internalID,
		meetingID:         m.id,
		internalMeetingID: m.internalID,
		name:              m.name,
		state:             statePublished,
		protected:         m.protect,
		startTime:         m.createTime,
		endTime:           now,
		participants:      m.participants,
		meta:              meta,
		base:              base,
		slides:            append([]string(nil), s.presentations[m.id]...),
	}
	s.recordings[rec.id] = rec
	s.placeRecording(rec)
	return rec
}

// writeRecording renders one <recording> as getRecordings does.
func writeRecording(x *xmlWriter, r *recording) {
	lengthMin := (r.endTime - r.startTime) / 60000
	x.open("recording")
	x.leaf("recordID", r.id)
	x.leaf("meetingID", r.meetingID)
	x.leaf("internalMeetingID", r.internalMeetingID)
	x.leaf("name", r.name)
	x.leaf("isBreakout", r.meta["isBreakout"])
	x.leafBool("published", r.state == statePublished)
	// bbb-web 3.0's getRecordings template has no <protected>; Scalelite
	// puts it here, after <published>. Only protected recordings carry it.
	if r.protected {
		x.leafBool("protected", true)
	}
	x.leaf("state", r.state)
	x.leafInt("startTime", r.startTime)
	x.leafInt("endTime", r.endTime)
	x.leafInt("participants", int64(r.participants))
	x.leafInt("rawSize", 1<<20+(r.endTime-r.startTime)*16)
	x.kvs("metadata", r.meta)
	x.open("playback")
	x.open("format")
	x.leaf("type", playbackFormat)
	x.leaf("url", r.playbackURL())
	x.leafInt("processingTime", 1500)
	x.leafInt("length", lengthMin)
	x.leafInt("size", 1<<18+(r.endTime-r.startTime)*4)
	x.open("preview")
	x.open("images")
	slides := r.slides
	if len(slides) == 0 {
		slides = []string{"default.pdf"}
	}
	for i, doc := range slides {
		sum := sha1.Sum([]byte(doc))
		presID := hex.EncodeToString(sum[:]) + "-" + strconv.FormatInt(r.startTime, 10)
		thumb := r.base + "/presentation/" + r.id + "/presentation/" + presID + "/thumbnails/thumb-1.png"
		alt := "Welcome"
		if i > 0 {
			alt = "Slide 1"
		}
		x.leafAttr("image", thumb, "alt", alt, "height", "136", "width", "176")
	}
	x.close("images")
	x.close("preview")
	x.close("format")
	x.close("playback")
	x.close("recording")
}

// getRecordings filters by meetingID or recordID (comma lists; recordID
// matches as a prefix and wins over meetingID), state (default
// published,unpublished; "any" = all) and meta_* (with BBB's % wildcards),
// and pages with offset/limit when limit is given (BBB 2.6+).
func (s *Server) getRecordings(q *apiRequest) {
	recordIDs := splitList(q.get("recordID"))
	meetingIDs := splitList(q.get("meetingID"))
	states := splitList(strings.ToLower(q.params.Get("state")))
	if len(states) == 0 {
		states = []string{statePublished, stateUnpublished}
	}
	for _, st := range states {
		if st == "any" {
			states = allStates
			break
		}
	}
	filters := metaParams(q)

	// bbb-web reads both with Integer.parseInt: a bad limit means no
	// paging, a bad or negative offset means 0.
	paged, offset, limit := false, 0, 0
	if l, err := strconv.ParseInt(q.params.Get("limit"), 10, 32); err == nil {
		paged, limit = true, int(min(max(l, 1), 100))
		if o, err := strconv.ParseInt(q.params.Get("offset"), 10, 32); err == nil && o > 0 {
			offset = int(o)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var found []*recording
	for _, r := range s.recordings {
		if !contains(states, r.state) || !matchesMeta(r.meta, filters) {
			continue
		}
		switch {
		case len(recordIDs) > 0:
			if !hasPrefixAny(r.id, recordIDs) {
				continue
			}
		case len(meetingIDs) > 0:
			if !contains(meetingIDs, r.meetingID) {
				continue
			}
		}
		found = append(found, r)
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].startTime != found[j].startTime {
			return found[i].startTime < found[j].startTime
		}
		return found[i].id < found[j].id
	})
	total := len(found)
	if paged {
		from := min(offset, total)
		found = found[from:min(from+limit, total)]
	}

	x := newResponse("SUCCESS")
	if len(found) == 0 {
		x.empty("recordings")
		x.leaf("messageKey", bbb.KeyNoRecordings)
		x.leaf("message", msgNoRecordingsXML)
	} else {
		x.open("recordings")
		for _, r := range found {
			writeRecording(x, r)
		}
		x.close("recordings")
	}
	if paged {
		writePagination(x, offset, limit, total, len(found))
	}
	writeXML(q.w, x.done())
}

// writePagination renders the <pagination> block bbb-web appends (a
// serialised Spring Page).
func writePagination(x *xmlWriter, offset, limit, total, n int) {
	pages := (total + limit - 1) / limit
	x.open("pagination")
	x.open("pageable")
	x.open("sort")
	x.leafBool("unsorted", true)
	x.leafBool("sorted", false)
	x.leafBool("empty", true)
	x.close("sort")
	x.leafInt("offset", int64(offset))
	x.leafInt("pageSize", int64(limit))
	x.leafInt("pageNumber", int64(offset/limit))
	x.leafBool("paged", true)
	x.leafBool("unpaged", false)
	x.close("pageable")
	x.leafInt("totalElements", int64(total))
	x.leafBool("last", offset+n >= total)
	x.leafInt("totalPages", int64(pages))
	x.leafBool("first", offset == 0)
	x.leafBool("empty", n == 0)
	x.close("pagination")
}

// matchesMeta applies meta_* filters: exact, or with % at either end as a
// wildcard (bbb-web's RecordingServiceFileImpl).
func matchesMeta(meta, filters map[string]string) bool {
	for k, f := range filters {
		v, ok := meta[k]
		if !ok {
			return false
		}
		switch {
		case len(f) >= 2 && strings.HasPrefix(f, "%") && strings.HasSuffix(f, "%"):
			if !strings.Contains(v, f[1:len(f)-1]) {
				return false
			}
		case strings.HasPrefix(f, "%"):
			if !strings.HasSuffix(v, f[1:]) {
				return false
			}
		case strings.HasSuffix(f, "%"):
			if !strings.HasPrefix(v, f[:len(f)-1]) {
				return false
			}
		case v != f:
			return false
		}
	}
	return true
}

// existingIDs returns the recordings publish/update/delete act on: exact
// IDs of published or unpublished recordings.
func (s *Server) existingIDs(ids []string) []*recording {
	var out []*recording
	for _, id := range ids {
		if r := s.recordings[id]; r != nil && (r.state == statePublished || r.state == stateUnpublished) {
			out = append(out, r)
		}
	}
	return out
}

// recordIDs reads the required recordID list, answering the error itself
// when it is missing.
func recordIDs(q *apiRequest) ([]string, bool) {
	ids := splitList(q.get("recordID"))
	if len(ids) == 0 {
		fail(q.w, bbb.KeyMissingParamRecordID, msgMissingRecordID)
		return nil, false
	}
	return ids, true
}

// changeRecordings applies change to the recordings of ids that exist and
// answers SUCCESS with <flag>value</flag>, or notFound when none exists.
func (s *Server) changeRecordings(q *apiRequest, ids []string, change func(*recording), flag string, value bool) {
	s.mu.Lock()
	recs := s.existingIDs(ids)
	for _, r := range recs {
		change(r)
	}
	s.mu.Unlock()
	if len(recs) == 0 {
		fail(q.w, bbb.KeyNotFound, msgRecordingsGone)
		return
	}
	x := newResponse("SUCCESS")
	x.leafBool(flag, value)
	writeXML(q.w, x.done())
}

func (s *Server) publishRecordings(q *apiRequest) {
	ids, ok := recordIDs(q)
	if !ok {
		return
	}
	publish := q.params.Get("publish")
	if publish == "" {
		fail(q.w, bbb.KeyMissingParamPublish, msgMissingPublish)
		return
	}
	state := stateUnpublished
	if parseBool(publish) {
		state = statePublished
	}
	s.changeRecordings(q, ids, func(r *recording) {
		r.state = state
		s.placeRecording(r)
	}, "published", parseBool(publish))
}

func (s *Server) deleteRecordings(q *apiRequest) {
	if ids, ok := recordIDs(q); ok {
		s.changeRecordings(q, ids, func(r *recording) {
			r.state = stateDeleted
			s.placeRecording(r)
		}, "deleted", true)
	}
}

// updateRecordings sets meta_* values; an empty value removes the key.
func (s *Server) updateRecordings(q *apiRequest) {
	ids, ok := recordIDs(q)
	if !ok {
		return
	}
	meta := metaParams(q)
	s.changeRecordings(q, ids, func(r *recording) {
		for k, v := range meta {
			if v == "" {
				delete(r.meta, k)
			} else {
				r.meta[k] = v
			}
		}
		s.placeRecording(r) // BBB rewrites metadata.xml
	}, "updated", true)
}

type trackJSON struct {
	Href   string `json:"href"`
	Kind   string `json:"kind"`
	Label  string `json:"label"`
	Lang   string `json:"lang"`
	Source string `json:"source"`
}

type tracksAnswer struct {
	Response struct {
		ReturnCode string      `json:"returncode"`
		Tracks     []trackJSON `json:"tracks"`
	} `json:"response"`
}

type putTrackAnswer struct {
	Response struct {
		MessageKey string `json:"messageKey"`
		Message    string `json:"message"`
		RecordID   string `json:"recordId"`
		ReturnCode string `json:"returncode"`
	} `json:"response"`
}

// getRecordingTextTracks answers JSON; a missing recordID is reported in
// XML, as bbb-web's RecordingController does.
func (s *Server) getRecordingTextTracks(q *apiRequest) {
	id := q.get("recordID")
	if id == "" {
		fail(q.w, bbb.KeyMissingParamRecordID, msgMissingRecordID)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recordings[id]
	if r == nil || r.state == stateDeleted {
		failJSON(q.w, bbb.KeyNoRecordings, "No recording found for "+id)
		return
	}
	var a tracksAnswer
	a.Response.ReturnCode = "SUCCESS"
	a.Response.Tracks = make([]trackJSON, 0, len(r.tracks))
	for _, t := range r.tracks {
		a.Response.Tracks = append(a.Response.Tracks, trackJSON{
			Href: r.base + captionsPrefix + url.PathEscape(r.id) + "/" + url.PathEscape(t.kind+"_"+t.lang) + ".vtt",
			Kind: t.kind, Label: t.label, Lang: t.lang, Source: t.source,
		})
	}
	writeJSON(q.w, a)
}

var langTag = regexp.MustCompile(`^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$`)

// putRecordingTextTrack takes a caption file (multipart field "file") for
// a recording; an existing track of the same kind and lang is replaced.
func (s *Server) putRecordingTextTrack(q *apiRequest) {
	id := q.get("recordID")
	kind := strings.TrimSpace(q.params.Get("kind"))
	lang := strings.TrimSpace(q.params.Get("lang"))
	switch {
	case id == "":
		failJSON(q.w, "paramError", "Missing param recordID.")
		return
	case kind == "":
		failJSON(q.w, "paramError", "Missing param kind.")
		return
	case kind != "subtitles" && kind != "captions":
		failJSON(q.w, "invalidKind", "The kind parameter is not set to a permitted value.")
		return
	case lang == "":
		failJSON(q.w, "paramError", "Missing param lang.")
		return
	case !langTag.MatchString(lang):
		failJSON(q.w, "invalidLang", "The lang parameter is not a well-formed language tag.")
		return
	}
	label := strings.TrimSpace(q.params.Get("label"))
	if label == "" {
		label = lang
	}
	content := uploadedFile(q)
	if len(content) == 0 {
		failJSON(q.w, "empty_uploaded_text_track", "Empty uploaded text track.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recordings[id]
	if r == nil || r.state == stateDeleted {
		failJSON(q.w, bbb.KeyNoRecordings, "No recording found for "+id)
		return
	}
	t := &textTrack{kind: kind, lang: lang, label: label, source: "upload", content: content}
	replaced := false
	for i, old := range r.tracks {
		if old.kind == kind && old.lang == lang {
			r.tracks[i], replaced = t, true
		}
	}
	if !replaced {
		r.tracks = append(r.tracks, t)
	}
	var a putTrackAnswer
	a.Response.MessageKey = "upload_text_track_success"
	a.Response.Message = "Text track uploaded successfully"
	a.Response.RecordID = id
	a.Response.ReturnCode = "SUCCESS"
	writeJSON(q.w, a)
}

// uploadedFile reads the multipart "file" field, if any.
func uploadedFile(q *apiRequest) []byte {
	if q.form == nil || len(q.form.File["file"]) == 0 {
		return nil
	}
	f, err := q.form.File["file"][0].Open()
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxBody))
	return b
}

// caption serves an uploaded text track: <recordID>/<kind>_<lang>.vtt.
func (s *Server) caption(w http.ResponseWriter, r *http.Request, rest string) {
	id, file, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	var content []byte
	if rec := s.recordings[id]; rec != nil {
		for _, t := range rec.tracks {
			if t.kind+"_"+t.lang+".vtt" == file {
				content = t.content
			}
		}
	}
	s.mu.Unlock()
	if content == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/vtt; charset=utf-8")
	w.Write(content)
}

// splitList splits a comma list, dropping empty items (an empty recordID
// prefix would match every recording).
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
