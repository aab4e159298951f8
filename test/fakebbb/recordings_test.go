package fakebbb_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// recordedMeeting runs a recorded meeting to its end and returns the
// recording's ID.
func recordedMeeting(c client, meetingID, extra string) string {
	c.t.Helper()
	created := c.mustOK("create", "meetingID="+meetingID+"&name=Rec+"+meetingID+"&record=true&"+extra)
	c.joinAndLand("meetingID=" + meetingID + "&fullName=Ann&password=" + created.get("moderatorPW"))
	c.mustOK("end", "meetingID="+meetingID)
	return created.get("internalMeetingID")
}

func recordIDs(a answer) []string {
	var ids []string
	for _, r := range a.tree.all("recordings/recording") {
		ids = append(ids, r.get("recordID"))
	}
	sort.Strings(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

func TestRecordings(t *testing.T) {
	s, c := startNode(t, "rec-secret")
	if a := c.mustOK("getRecordings", ""); a.key() != "noRecordings" || !a.tree.has("recordings") {
		t.Fatalf("no recordings yet: %s", a.body)
	}
	c.mustOK("create", "meetingID=unrecorded")
	c.mustOK("end", "meetingID=unrecorded")
	ra := recordedMeeting(c, "m-a", "meta_course=maths&meta_term=fall")
	rb1 := recordedMeeting(c, "m-b", "meta_course=biology")
	rb2 := recordedMeeting(c, "m-b", "meta_course=bio-advanced")
	if got := s.RecordingIDs(); fmt.Sprint(got) != fmt.Sprint(sorted(ra, rb1, rb2)) {
		t.Fatalf("recordings %v, want those of the three recorded meetings", got)
	}
	if !strings.HasPrefix(rb1, sha1Hex("m-b")+"-") || rb1 == rb2 {
		t.Fatalf("recording IDs %s %s", rb1, rb2)
	}

	all := c.mustOK("getRecordings", "")
	if fmt.Sprint(recordIDs(all)) != fmt.Sprint(sorted(ra, rb1, rb2)) || all.tree.has("pagination") {
		t.Fatalf("getRecordings: %s", all.body)
	}
	rec := all.tree.all("recordings/recording")[0]
	if rec.get("state") != "published" || rec.get("published") != "true" || rec.get("participants") != "1" ||
		rec.get("metadata/meetingId") != rec.get("meetingID") || rec.get("playback/format/type") != "video" {
		t.Fatalf("recording fields: %s", all.body)
	}
	playURL := rec.get("playback/format/url")
	if !strings.HasPrefix(playURL, "http://127.0.0.1:") || !strings.HasSuffix(playURL, "/playback/video/"+rec.get("recordID")+"/") ||
		rec.has("protected") {
		t.Fatalf("playback URL %q", playURL)
	}
	if p := fetch(t, "GET", playURL, "", ""); p.status != http.StatusOK {
		t.Fatalf("playback page: HTTP %d", p.status)
	}

	filters := []struct {
		query string
		want  []string
	}{
		{"meetingID=m-a", []string{ra}},
		{"meetingID=m-a,m-b", []string{ra, rb1, rb2}},
		{"meetingID=nosuch", nil},
		{"recordID=" + rb1, []string{rb1}},
		{"recordID=" + sha1Hex("m-b"), []string{rb1, rb2}},  // a prefix
		{"recordID=" + ra + ",," + rb2, []string{ra, rb2}},  // a list
		{"recordID=" + ra + "&meetingID=m-b", []string{ra}}, // recordID wins
		{"meta_course=maths", []string{ra}},
		{"meta_Course=bio%25", []string{rb1, rb2}}, // % wildcard, name case-insensitive
		{"meta_course=%25advanced", []string{rb2}},
		{"meta_course=%25olog%25", []string{rb1}},
		{"meta_course=maths&meta_term=spring", nil},
		{"meta_nosuch=x", nil},
	}
	for _, f := range filters {
		a := c.mustOK("getRecordings", f.query)
		if got := recordIDs(a); fmt.Sprint(got) != fmt.Sprint(sorted(f.want...)) {
			t.Errorf("getRecordings?%s = %v, want %v", f.query, got, sorted(f.want...))
		}
		if len(f.want) == 0 && a.key() != "noRecordings" {
			t.Errorf("getRecordings?%s: no noRecordings: %s", f.query, a.body)
		}
	}

	// Publish, unpublish and the state filter.
	if a := c.mustOK("publishRecordings", "recordID="+ra+"&publish=false"); a.get("published") != "false" {
		t.Fatalf("unpublish: %s", a.body)
	}
	if p := fetch(t, "GET", playURL, "", ""); rec.get("recordID") == ra && p.status != http.StatusNotFound {
		t.Fatalf("unpublished recording still plays: HTTP %d", p.status)
	}
	states := map[string][]string{
		"":                            {ra, rb1, rb2},
		"state=published":             {rb1, rb2},
		"state=unpublished":           {ra},
		"state=published,unpublished": {ra, rb1, rb2},
	}
	for q, want := range states {
		if got := recordIDs(c.mustOK("getRecordings", q)); fmt.Sprint(got) != fmt.Sprint(sorted(want...)) {
			t.Errorf("getRecordings?%s = %v, want %v", q, got, sorted(want...))
		}
	}
	c.mustOK("publishRecordings", "recordID="+ra+"&publish=true")

	// Update metadata: set, and remove with an empty value.
	c.mustOK("updateRecordings", "recordID="+rb1+"&meta_course=chemistry&meta_term=")
	if got := recordIDs(c.mustOK("getRecordings", "meta_course=chemistry")); len(got) != 1 || got[0] != rb1 {
		t.Fatalf("after update: %v", got)
	}
	c.mustOK("updateRecordings", "recordID="+rb1+"&meta_course=")
	if a := c.mustOK("getRecordings", "recordID="+rb1); a.tree.has("recordings/recording/metadata/course") {
		t.Fatalf("empty meta value did not remove the key: %s", a.body)
	}

	// Delete: gone from the default listing, kept in state=deleted/any.
	if a := c.mustOK("deleteRecordings", "recordID="+rb2); a.get("deleted") != "true" {
		t.Fatalf("delete: %s", a.body)
	}
	for q, want := range map[string][]string{
		"":              {ra, rb1},
		"state=deleted": {rb2},
		"state=any":     {ra, rb1, rb2},
	} {
		if got := recordIDs(c.mustOK("getRecordings", q)); fmt.Sprint(got) != fmt.Sprint(sorted(want...)) {
			t.Errorf("after delete, getRecordings?%s = %v, want %v", q, got, sorted(want...))
		}
	}

	for q, key := range map[string]string{
		"publishRecordings?publish=true":                      "missingParamRecordID",
		"publishRecordings?recordID=,,":                       "missingParamRecordID",
		"publishRecordings?recordID=" + ra:                    "missingParamPublish",
		"publishRecordings?recordID=nosuch&publish=true":      "notFound",
		"publishRecordings?recordID=" + rb2 + "&publish=true": "notFound", // deleted
		"deleteRecordings?recordID=" + rb2:                    "notFound",
		"deleteRecordings?":                                   "missingParamRecordID",
		"updateRecordings?meta_x=y":                           "missingParamRecordID",
		"updateRecordings?recordID=" + sha1Hex("m-b"):         "notFound", // no prefixes here
	} {
		call, query, _ := strings.Cut(q, "?")
		if a := c.get(call, query); a.returncode() != "FAILED" || a.key() != key {
			t.Errorf("%s: want %s, got %s", q, key, a.body)
		}
	}
}

func TestRecordingsPagination(t *testing.T) {
	_, c := startNode(t, "page-secret")
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, recordedMeeting(c, fmt.Sprintf("p-%d", i), ""))
	}
	page := func(q string) ([]string, answer) {
		a := c.mustOK("getRecordings", q)
		var got []string
		for _, r := range a.tree.all("recordings/recording") {
			got = append(got, r.get("recordID"))
		}
		return got, a
	}
	got, a := page("limit=2")
	if fmt.Sprint(got) != fmt.Sprint(ids[:2]) || a.get("pagination/totalElements") != "5" ||
		a.get("pagination/pageable/pageSize") != "2" || a.get("pagination/totalPages") != "3" ||
		a.get("pagination/first") != "true" || a.get("pagination/last") != "false" {
		t.Fatalf("limit=2: %v %s", got, a.body)
	}
	got, a = page("offset=4&limit=2")
	if fmt.Sprint(got) != fmt.Sprint(ids[4:]) || a.get("pagination/last") != "true" || a.get("pagination/pageable/offset") != "4" {
		t.Fatalf("offset=4&limit=2: %v %s", got, a.body)
	}
	if got, _ = page("limit=0"); len(got) != 1 { // clamped to 1
		t.Fatalf("limit=0 gave %d", len(got))
	}
	if got, _ = page("limit=1000"); len(got) != 5 { // clamped to 100
		t.Fatalf("limit=1000 gave %d", len(got))
	}
	if got, _ = page("offset=-3&limit=1"); fmt.Sprint(got) != fmt.Sprint(ids[:1]) {
		t.Fatalf("negative offset: %v", got)
	}
	if got, a = page("offset=9&limit=2"); len(got) != 0 || a.key() != "noRecordings" || a.get("pagination/empty") != "true" {
		t.Fatalf("offset past the end: %s", a.body)
	}
	if got, a = page("offset=2&limit=x"); len(got) != 5 || a.tree.has("pagination") {
		t.Fatalf("a bad limit must not page: %s", a.body)
	}
}

func TestTextTracks(t *testing.T) {
	_, c := startNode(t, "track-secret")
	id := recordedMeeting(c, "tracks", "")
	r := jsonResponse(t, c.get("getRecordingTextTracks", "recordID="+id))
	if r["returncode"] != "SUCCESS" || fmt.Sprint(r["tracks"]) != "[]" {
		t.Fatalf("no tracks yet: %v", r)
	}
	put := func(query, content string) map[string]any {
		ct, body := multipartBody(t, "file", "captions.vtt", content)
		return jsonResponse(t, fetch(t, "POST", c.url("putRecordingTextTrack", query), ct, body))
	}
	if r := put("recordID="+id+"&kind=subtitles&lang=pt-BR&label=Brasil", "WEBVTT\n\nold"); r["returncode"] != "SUCCESS" ||
		r["messageKey"] != "upload_text_track_success" || r["recordId"] != id {
		t.Fatalf("put: %v", r)
	}
	put("recordID="+id+"&kind=subtitles&lang=pt-BR&label=Brasil", "WEBVTT\n\nnew") // replaces
	put("recordID="+id+"&kind=captions&lang=en", "WEBVTT\n\nen")
	r = jsonResponse(t, c.get("getRecordingTextTracks", "recordID="+id))
	tracks, _ := r["tracks"].([]any)
	if len(tracks) != 2 {
		t.Fatalf("tracks: %v", r)
	}
	first := tracks[0].(map[string]any)
	if first["kind"] != "subtitles" || first["lang"] != "pt-BR" || first["label"] != "Brasil" || first["source"] != "upload" {
		t.Fatalf("track: %v", first)
	}
	if f := fetch(t, "GET", first["href"].(string), "", ""); f.status != 200 || f.body != "WEBVTT\n\nnew" {
		t.Fatalf("track file: HTTP %d %q", f.status, f.body)
	}
	if second := tracks[1].(map[string]any); second["label"] != "en" {
		t.Fatalf("label defaults to lang: %v", second)
	}

	for query, key := range map[string]string{
		"kind=captions&lang=en":                        "paramError",
		"recordID=" + id + "&lang=en":                  "paramError",
		"recordID=" + id + "&kind=chapters&lang=en":    "invalidKind",
		"recordID=" + id + "&kind=captions":            "paramError",
		"recordID=" + id + "&kind=captions&lang=e%21n": "invalidLang",
		"recordID=nosuch&kind=captions&lang=en":        "noRecordings",
	} {
		if r := put(query, "WEBVTT"); r["returncode"] != "FAILED" || r["messageKey"] != key {
			t.Errorf("put ?%s: want %s, got %v", query, key, r)
		}
	}
	ct, body := multipartBody(t, "", "", "")
	if r := jsonResponse(t, fetch(t, "POST", c.url("putRecordingTextTrack", "recordID="+id+"&kind=captions&lang=en"), ct, body)); r["messageKey"] != "empty_uploaded_text_track" {
		t.Fatalf("put without a file: %v", r)
	}
	bad := client{t: t, base: c.base, secret: "wrong"}
	if r := jsonResponse(t, fetch(t, "POST", bad.url("putRecordingTextTrack", "recordID="+id+"&kind=captions&lang=en"), ct, body)); r["messageKey"] != "checksumError" {
		t.Fatalf("put with a wrong checksum: %v", r)
	}
	if r := jsonResponse(t, c.get("getRecordingTextTracks", "recordID=nosuch")); r["messageKey"] != "noRecordings" {
		t.Fatalf("tracks of an unknown recording: %v", r)
	}
	if a := c.get("getRecordingTextTracks", ""); a.key() != "missingParamRecordID" {
		t.Fatalf("tracks without recordID: %s", a.body)
	}
}
