package fakebbb_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/test/fakebbb"
)

// startPublishing runs a node that writes its published recordings under
// <tmp>/published, and returns that dir.
func startPublishing(t *testing.T, secret string, mediaBytes int) (*fakebbb.Server, client, string) {
	t.Helper()
	pub := filepath.Join(t.TempDir(), "published")
	s, api, _ := fakebbb.StartTestWith(t, fakebbb.Config{Secret: secret, PublishedDir: pub, RecordingBytes: mediaBytes})
	return s, client{t: t, base: strings.TrimSuffix(api, "/"), secret: secret}, pub
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// rangeGet fetches u with a Range header and returns status, body and
// Content-Range.
func rangeGet(t *testing.T, method, u, rng string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// A published recording is a BBB "video" tree on disk, served as the
// node's nginx serves it; unpublish, publish, update and delete move and
// rewrite it as BBB does.
func TestPublishedTree(t *testing.T) {
	const size = 100000
	_, c, pub := startPublishing(t, "tree-secret", size)
	id := recordedMeeting(c, "tree", "meta_course=maths&meta_bbb-origin=lms")
	dir := filepath.Join(pub, "video", id)
	parent := filepath.Dir(pub)

	rec := c.mustOK("getRecordings", "recordID="+id)
	playURL := rec.get("recordings/recording/playback/format/url")
	if rec.get("recordings/recording/playback/format/type") != "video" || playURL != strings.TrimSuffix(c.base, "/bigbluebutton/api")+"/playback/video/"+id+"/" {
		t.Fatalf("playback: %s", rec.body)
	}

	// The three files, nothing half-written left beside them.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "index.html metadata.xml video-0.m4v" {
		t.Fatalf("files in %s: %v", dir, names)
	}
	media := readFile(t, filepath.Join(dir, "video-0.m4v"))
	if len(media) != size || !bytes.Equal(media, fakebbb.RecordingMedia(id, size)) ||
		bytes.Equal(media, fakebbb.RecordingMedia(id+"x", size)) || bytes.Equal(media[:size/2], media[size/2:]) {
		t.Fatalf("media: %d bytes, not RecordingMedia(id)", len(media))
	}
	if !bytes.Equal(fakebbb.RecordingMedia(id, 10), media[:10]) {
		t.Fatal("RecordingMedia is not a stream: a shorter one is not a prefix")
	}
	if index := readFile(t, filepath.Join(dir, "index.html")); !bytes.Contains(index, []byte(`<video src="video-0.m4v"`)) {
		t.Fatalf("index.html: %s", index)
	}
	// metadata.xml is written last: not older than the media.
	mi, _ := os.Stat(filepath.Join(dir, "metadata.xml"))
	vi, _ := os.Stat(filepath.Join(dir, "video-0.m4v"))
	if mi.ModTime().Before(vi.ModTime()) {
		t.Fatalf("metadata.xml (%v) older than the media (%v)", mi.ModTime(), vi.ModTime())
	}
	metadata := func(path string) *node {
		t.Helper()
		n, err := parseTree(readFile(t, path))
		if err != nil || n.name != "recording" {
			t.Fatalf("%s: %v", path, err)
		}
		return n
	}
	m := metadata(filepath.Join(dir, "metadata.xml"))
	meeting := m.all("meeting")
	if m.get("id") != id || m.get("state") != "published" || m.get("published") != "true" ||
		m.get("start_time") != rec.get("recordings/recording/startTime") || m.get("end_time") != rec.get("recordings/recording/endTime") ||
		m.get("participants") != "1" || len(meeting) != 1 || meeting[0].attrs["id"] != id ||
		meeting[0].attrs["externalId"] != "tree" || meeting[0].attrs["name"] != "Rec tree" || meeting[0].attrs["breakout"] != "false" ||
		m.get("meta/course") != "maths" || m.get("meta/bbb-origin") != "lms" || m.get("meta/meetingId") != "tree" ||
		m.get("playback/format") != "video" || m.get("playback/link") != playURL || m.get("playback/duration") == "" {
		t.Fatalf("metadata.xml: %s", readFile(t, filepath.Join(dir, "metadata.xml")))
	}

	// Served: the directory is index.html, ranges work, HEAD has no body.
	if p := fetch(t, "GET", playURL, "", ""); p.status != 200 || !strings.Contains(p.body, "video-0.m4v") ||
		!strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Fatalf("index: HTTP %d %q", p.status, p.body)
	}
	if p := fetch(t, "GET", strings.TrimSuffix(playURL, "/"), "", ""); p.status != http.StatusMovedPermanently ||
		p.header.Get("Location") != "/playback/video/"+id+"/" {
		t.Fatalf("without the slash: HTTP %d %v", p.status, p.header)
	}
	status, body, h := rangeGet(t, "GET", playURL+"video-0.m4v", "bytes=1000-1999")
	if status != http.StatusPartialContent || !bytes.Equal(body, media[1000:2000]) ||
		h.Get("Content-Range") != "bytes 1000-1999/100000" || h.Get("Content-Type") != "video/mp4" {
		t.Fatalf("range: HTTP %d, %d bytes, %v", status, len(body), h)
	}
	if status, body, _ = rangeGet(t, "GET", playURL+"video-0.m4v", "bytes=-10"); status != http.StatusPartialContent || !bytes.Equal(body, media[size-10:]) {
		t.Fatalf("suffix range: HTTP %d %x", status, body)
	}
	if status, body, _ = rangeGet(t, "GET", playURL+"video-0.m4v", ""); status != 200 || !bytes.Equal(body, media) {
		t.Fatalf("whole media: HTTP %d, %d bytes", status, len(body))
	}
	if status, body, h = rangeGet(t, "HEAD", playURL+"video-0.m4v", ""); status != 200 || len(body) != 0 ||
		h.Get("Content-Length") != "100000" || h.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: HTTP %d %v", status, h)
	}
	if p := fetch(t, "GET", playURL+"metadata.xml", "", ""); p.status != 200 || p.tree.get("id") != id {
		t.Fatalf("metadata.xml over HTTP: %d", p.status)
	}
	if p := fetch(t, "POST", playURL+"video-0.m4v", "", ""); p.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST: HTTP %d", p.status)
	}

	// Nothing outside the recording's directory is reachable.
	os.WriteFile(filepath.Join(pub, "secret.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(pub, "video", "secret.txt"), []byte("x"), 0o644)
	host := strings.TrimSuffix(c.base, "/bigbluebutton/api")
	for _, p := range []string{
		"/playback/video/" + id + "/..%2f..%2fsecret.txt", "/playback/video/" + id + "/../secret.txt",
		"/playback/video/..%2fsecret.txt", "/playback/video/../../published/secret.txt",
		"/playback/video/%2e%2e/secret.txt", "/playback/video/" + id + "/.%2e/secret.txt",
		"/playback/video/" + id + "/nosuch.m4v", "/playback/video/nosuch/", "/playback/video/" + id + "/%00",
	} {
		if status, body, _ := rangeGet(t, "GET", host+p, ""); status != http.StatusNotFound {
			t.Errorf("GET %s: HTTP %d %q", p, status, body)
		}
	}

	// Unpublished: moved to unpublished/, not served; the XML answers as before.
	if a := c.mustOK("publishRecordings", "recordID="+id+"&publish=false"); a.get("published") != "false" {
		t.Fatalf("unpublish: %s", a.body)
	}
	unpub := filepath.Join(parent, "unpublished", "video", id)
	if exists(dir) || !exists(filepath.Join(unpub, "video-0.m4v")) {
		t.Fatalf("unpublish: %s there %v, %s there %v", dir, exists(dir), unpub, exists(unpub))
	}
	if m := metadata(filepath.Join(unpub, "metadata.xml")); m.get("state") != "unpublished" || m.get("published") != "false" {
		t.Fatalf("unpublished metadata.xml: %s", readFile(t, filepath.Join(unpub, "metadata.xml")))
	}
	for _, f := range []string{"", "video-0.m4v", "index.html", "metadata.xml"} {
		if status, _, _ := rangeGet(t, "GET", playURL+f, "bytes=0-9"); status != http.StatusNotFound {
			t.Fatalf("unpublished %q: HTTP %d", f, status)
		}
	}
	if a := c.mustOK("getRecordings", "recordID="+id); a.get("recordings/recording/state") != "unpublished" ||
		a.get("recordings/recording/playback/format/url") != playURL {
		t.Fatalf("unpublished getRecordings: %s", a.body)
	}

	// Published again: back, and served.
	c.mustOK("publishRecordings", "recordID="+id+"&publish=true")
	if exists(unpub) || !bytes.Equal(readFile(t, filepath.Join(dir, "video-0.m4v")), media) {
		t.Fatalf("republish: %s still there %v", unpub, exists(unpub))
	}
	if m := metadata(filepath.Join(dir, "metadata.xml")); m.get("state") != "published" || m.get("published") != "true" {
		t.Fatal("republished metadata.xml is not published")
	}
	if status, body, _ := rangeGet(t, "GET", playURL+"video-0.m4v", "bytes=5-9"); status != http.StatusPartialContent || !bytes.Equal(body, media[5:10]) {
		t.Fatalf("republished: HTTP %d", status)
	}

	// updateRecordings rewrites metadata.xml.
	c.mustOK("updateRecordings", "recordID="+id+"&meta_course=biology&meta_bbb-origin=")
	if m := metadata(filepath.Join(dir, "metadata.xml")); m.get("meta/course") != "biology" || m.has("meta/bbb-origin") {
		t.Fatalf("updated metadata.xml: %s", readFile(t, filepath.Join(dir, "metadata.xml")))
	}

	// Deleted: moved to deleted/, as BBB does, and not served.
	c.mustOK("deleteRecordings", "recordID="+id)
	del := filepath.Join(parent, "deleted", "video", id)
	if exists(dir) || exists(unpub) || !exists(del) {
		t.Fatalf("delete: published %v, unpublished %v, deleted %v", exists(dir), exists(unpub), exists(del))
	}
	if m := metadata(filepath.Join(del, "metadata.xml")); m.get("state") != "deleted" {
		t.Fatal("deleted metadata.xml is not deleted")
	}
	if status, _, _ := rangeGet(t, "GET", playURL, ""); status != http.StatusNotFound {
		t.Fatalf("deleted: HTTP %d", status)
	}

	// An unpublished recording deleted moves from unpublished/.
	id2 := recordedMeeting(c, "tree2", "")
	c.mustOK("publishRecordings", "recordID="+id2+"&publish=false")
	c.mustOK("deleteRecordings", "recordID="+id2)
	if exists(filepath.Join(pub, "video", id2)) || exists(filepath.Join(parent, "unpublished", "video", id2)) ||
		!exists(filepath.Join(parent, "deleted", "video", id2, "metadata.xml")) {
		t.Fatal("unpublished then deleted: not moved to deleted/")
	}
}

// Without a published dir nothing is written, and the playback URL still
// answers, from memory, with the same files.
func TestPlaybackWithoutPublishedDir(t *testing.T) {
	_, c := startNode(t, "mem-secret")
	id := recordedMeeting(c, "mem", "")
	playURL := c.mustOK("getRecordings", "recordID="+id).get("recordings/recording/playback/format/url")
	if p := fetch(t, "GET", playURL, "", ""); p.status != 200 || !strings.Contains(p.body, `<video src="video-0.m4v"`) {
		t.Fatalf("index: HTTP %d %q", p.status, p.body)
	}
	media := fakebbb.RecordingMedia(id, fakebbb.DefaultRecordingBytes)
	status, body, h := rangeGet(t, "GET", playURL+"video-0.m4v", "bytes=262000-")
	if status != http.StatusPartialContent || !bytes.Equal(body, media[262000:]) || h.Get("Content-Range") != "bytes 262000-262143/262144" {
		t.Fatalf("range: HTTP %d %v", status, h)
	}
	c.mustOK("publishRecordings", "recordID="+id+"&publish=false")
	if status, _, _ := rangeGet(t, "GET", playURL+"video-0.m4v", ""); status != http.StatusNotFound {
		t.Fatalf("unpublished: HTTP %d", status)
	}
}

// protect=true on create: the recording carries <protected>true</protected>
// after <published> (where Scalelite puts it; bbb-web has no such element),
// the others none.
func TestProtectedRecording(t *testing.T) {
	_, c := startNode(t, "protect-secret")
	prot := recordedMeeting(c, "prot", "protect=true")
	open := recordedMeeting(c, "open", "protect=false")
	a := c.mustOK("getRecordings", "recordID="+prot)
	if a.get("recordings/recording/protected") != "true" ||
		!strings.Contains(a.body, "<published>true</published><protected>true</protected><state>") {
		t.Fatalf("protected: %s", a.body)
	}
	if a := c.mustOK("getRecordings", "recordID="+open); a.tree.has("recordings/recording/protected") {
		t.Fatalf("unprotected: %s", a.body)
	}
}
