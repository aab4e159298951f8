package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/recstore"
)

// centralRig is a gateway with a file store as central storage, a cluster
// key, and one recording of fe1 made on node 0 and indexed.
type centralRig struct {
	*rig
	root     string // the store's directory
	recordID string
}

func newCentralRig(t *testing.T) *centralRig { return newCentralRigWith(t, Config{}) }

// newCentralRigWith is newCentralRig with a server configured by cfg.
func newCentralRigWith(t *testing.T, cfg Config) *centralRig {
	root := t.TempDir()
	store, err := recstore.Open("file://"+root, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RecordingsStore = store
	r := &centralRig{rig: newRigWith(t, 1, cfg), root: root}
	r.mc.MustApply(&fsm.SetClusterKey{Key: bytes.Repeat([]byte{7}, fsm.ClusterKeyLen)})
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=lecture&record=true&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if a := c.Get(t, "end", "meetingID=lecture&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	b, _ := r.mc.FSM().Backend(r.ids[0])
	if err := r.srv.api.SyncRecordings(&b, nil, true); err != nil {
		t.Fatal(err)
	}
	recs := r.mc.FSM().RecordingsOf("fe1", nil)
	if len(recs) != 1 {
		t.Fatalf("%d recordings indexed", len(recs))
	}
	r.recordID = recs[0].RecordID
	return r
}

// transferFiles is a recording format's files, by path.
type transferFiles map[string][]byte

func (f transferFiles) offer(backend, recordID, format string, chunk int64) adminapi.TransferOffer {
	o := adminapi.TransferOffer{Backend: backend, RecordID: recordID, Format: format, ChunkSize: chunk}
	for _, p := range []string{"index.html", "metadata.xml", "video-0.m4v"} {
		if b, ok := f[p]; ok {
			sum := sha256.Sum256(b)
			o.Files = append(o.Files, adminapi.TransferFile{Path: p, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		}
	}
	return o
}

func (r *centralRig) call(t *testing.T, method, path string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	// A connection of its own: the gateway closes one whose body it
	// refused unread, and a POST is not retried on a reused one it closed.
	req.Close = true
	resp, b := roundTrip(t, req, hdr)
	return resp.StatusCode, b
}

func (r *centralRig) offer(t *testing.T, o adminapi.TransferOffer) (int, adminapi.TransferStatus) {
	t.Helper()
	body, _ := json.Marshal(o)
	code, b := r.call(t, "POST", "/api/v1/transfers", body, nil)
	var st adminapi.TransferStatus
	if code == 200 || code == 409 || code == 422 {
		_ = json.Unmarshal(b, &st)
	}
	return code, st
}

func (r *centralRig) putChunk(t *testing.T, id string, files transferFiles, o adminapi.TransferOffer, c adminapi.TransferChunk) int {
	t.Helper()
	data := files[o.Files[c.File].Path]
	part := data[int64(c.Chunk)*o.ChunkSize : min(int64(len(data)), int64(c.Chunk+1)*o.ChunkSize)]
	sum := sha256.Sum256(part)
	code, _ := r.call(t, "PUT", fmt.Sprintf("/api/v1/transfers/%s/%d/%d", id, c.File, c.Chunk), part,
		map[string]string{adminapi.TransferSHA256Header: hex.EncodeToString(sum[:])})
	return code
}

func (r *centralRig) complete(t *testing.T, id string) (int, adminapi.TransferStatus) {
	t.Helper()
	code, b := r.call(t, "POST", "/api/v1/transfers/"+id+"/complete", nil, nil)
	var st adminapi.TransferStatus
	_ = json.Unmarshal(b, &st)
	return code, st
}

func sampleFiles(size int) transferFiles {
	video := make([]byte, size)
	for i := range video {
		video[i] = byte(i*7 + i/251)
	}
	return transferFiles{"index.html": []byte("<video src=video-0.m4v>"), "metadata.xml": []byte("<recording/>"), "video-0.m4v": video}
}

// The transfer protocol end to end in one process: an interrupted
// transfer resumes with only the missing chunks, a chunk that does not
// match its hash is refused, a staged chunk corrupted at rest fails the
// completion and is asked for again, and the recording becomes central
// only once every file verified.
func TestTransferResumesAndNeverMarksACorruptCopy(t *testing.T) {
	r := newCentralRig(t)
	files := sampleFiles(300 << 10)
	o := files.offer(r.ids[0], r.recordID, "video", adminapi.TransferMinChunk)
	code, st := r.offer(t, o)
	if code != 200 || st.State != "pending" || len(st.Missing) != 7 || st.Bytes != int64(len(files["video-0.m4v"])+35) {
		t.Fatalf("offer: %d %+v", code, st)
	}
	for _, c := range st.Missing[:3] { // index.html, metadata.xml, the video's first chunk; then the agent dies
		if code := r.putChunk(t, st.ID, files, o, c); code != 204 {
			t.Fatalf("chunk %+v: %d", c, code)
		}
	}
	code, again := r.offer(t, o)
	if code != 200 || again.ID != st.ID || len(again.Missing) != 4 || again.Have != adminapi.TransferMinChunk+35 {
		t.Fatalf("a restarted transfer does not resume: %d %+v", code, again)
	}
	if code, _ := r.complete(t, st.ID); code != 409 {
		t.Fatalf("complete with chunks missing: %d", code)
	}
	// A chunk whose bytes do not match its hash is refused.
	bad := again.Missing[0]
	sum := sha256.Sum256([]byte("other bytes"))
	part := make([]byte, adminapi.TransferMinChunk)
	if code, _ := r.call(t, "PUT", fmt.Sprintf("/api/v1/transfers/%s/%d/%d", st.ID, bad.File, bad.Chunk), part,
		map[string]string{adminapi.TransferSHA256Header: hex.EncodeToString(sum[:])}); code != 422 {
		t.Fatalf("a chunk with the wrong hash: %d", code)
	}
	for _, c := range again.Missing {
		if code := r.putChunk(t, st.ID, files, o, c); code != 204 {
			t.Fatalf("chunk %+v: %d", c, code)
		}
	}
	// Corrupt one staged chunk at rest (same length, other bytes).
	staged, _ := filepath.Glob(filepath.Join(r.root, "staging", st.ID, "2.1.*"))
	if len(staged) != 1 {
		t.Fatalf("staged chunk 2.1: %v", staged)
	}
	if err := os.WriteFile(staged[0], bytes.Repeat([]byte{0}, adminapi.TransferMinChunk), 0o644); err != nil {
		t.Fatal(err)
	}
	code, st2 := r.complete(t, st.ID)
	if code != 422 || len(st2.Missing) != 1 || st2.Missing[0] != (adminapi.TransferChunk{File: 2, Chunk: 1}) {
		t.Fatalf("a copy with a chunk corrupted at rest: %d %+v (want 422, that chunk asked for again)", code, st2)
	}
	if rec, _ := r.mc.FSM().Recording(r.recordID); len(rec.Central) != 0 {
		t.Fatal("a corrupt copy was marked central")
	}
	if files, _ := filepath.Glob(filepath.Join(r.root, "published", "video", r.recordID, "*", "video-0.m4v")); len(files) != 0 {
		t.Fatalf("the corrupt file is visible in the store: %v", files)
	}
	for _, c := range st2.Missing {
		r.putChunk(t, st.ID, files, o, c)
	}
	if code, done := r.complete(t, st.ID); code != 200 || done.State != "central" {
		t.Fatalf("complete: %d %+v", code, done)
	}
	rec, _ := r.mc.FSM().Recording(r.recordID)
	cc, ok := rec.CentralFormat("video")
	if !ok || cc.Files != 3 || cc.Bytes != st.Bytes || cc.Version != st.ID {
		t.Fatalf("central copy in the index: %+v", rec.Central)
	}
	got, _ := os.ReadFile(filepath.Join(r.root, "published", "video", r.recordID, cc.Version, "video-0.m4v"))
	if !bytes.Equal(got, files["video-0.m4v"]) {
		t.Fatal("the central copy differs from the node's file")
	}
	if _, err := os.Stat(filepath.Join(r.root, "staging", st.ID)); !os.IsNotExist(err) {
		t.Fatal("staged chunks left behind")
	}
	if code, st3 := r.offer(t, o); code != 200 || st3.State != "central" {
		t.Fatalf("offering a central copy again: %d %+v", code, st3)
	}
}

// Offers are an attacker's input: paths, names and sizes are bounded, and
// a recording the index does not hold for that backend is refused.
func TestTransferOffersAreChecked(t *testing.T) {
	r := newCentralRig(t)
	files := sampleFiles(1000)
	good := files.offer(r.ids[0], r.recordID, "video", adminapi.TransferMinChunk)
	for name, mutate := range map[string]func(*adminapi.TransferOffer){
		"dotdot":       func(o *adminapi.TransferOffer) { o.Files[0].Path = "../../etc/passwd" },
		"absolute":     func(o *adminapi.TransferOffer) { o.Files[0].Path = "/etc/passwd" },
		"format":       func(o *adminapi.TransferOffer) { o.Format = "../video" },
		"record":       func(o *adminapi.TransferOffer) { o.RecordID = "a/b" },
		"chunk":        func(o *adminapi.TransferOffer) { o.ChunkSize = 1 },
		"size":         func(o *adminapi.TransferOffer) { o.Files[0].Size = -1 },
		"hash":         func(o *adminapi.TransferOffer) { o.Files[0].SHA256 = "zz" },
		"twice":        func(o *adminapi.TransferOffer) { o.Files[1].Path = o.Files[0].Path },
		"huge":         func(o *adminapi.TransferOffer) { o.Files[0].Size, o.Files[1].Size = adminapi.TransferMaxBytes, 1 },
		"unknown":      func(o *adminapi.TransferOffer) { o.RecordID = "no-such-recording" },
		"otherBackend": func(o *adminapi.TransferOffer) { o.Backend = "nope" },
	} {
		o := good
		o.Files = append([]adminapi.TransferFile(nil), good.Files...)
		mutate(&o)
		if code, _ := r.offer(t, o); code < 400 || code >= 500 {
			t.Errorf("%s: offer answered %d", name, code)
		}
	}
	if _, err := os.Stat(filepath.Join(r.root, "staging")); !os.IsNotExist(err) {
		t.Fatal("a refused offer left something in the store")
	}
}

var urlRe = regexp.MustCompile(`<url>([^<]+)</url>`)

// shipAll ships files as the recording's video format, whole.
func (r *centralRig) shipAll(t *testing.T, files transferFiles) {
	t.Helper()
	o := files.offer(r.ids[0], r.recordID, "video", adminapi.TransferMinChunk)
	_, st := r.offer(t, o)
	for _, c := range st.Missing {
		r.putChunk(t, st.ID, files, o, c)
	}
	if code, done := r.complete(t, st.ID); code != 200 || done.State != "central" {
		t.Fatalf("complete: %d %+v", code, done)
	}
}

func (r *centralRig) playbackURL(t *testing.T) string {
	t.Helper()
	a := r.client("fe1").Get(t, "getRecordings", "recordID="+r.recordID)
	m := urlRe.FindStringSubmatch(a.Raw)
	if m == nil {
		t.Fatalf("no playback URL: %s", a.Raw)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

func get(t *testing.T, u string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return roundTrip(t, req, hdr)
}

// roundTrip sends req with hdr, redirects not followed, and reads the answer.
func roundTrip(t *testing.T, req *http.Request, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// A central recording plays from the gateway, on the host the client
// used, with ranges and validators as nginx gives them; unpublish hides it
// and delete removes the central copy.
func TestCentralPlaybackOnTheClustersName(t *testing.T) {
	r := newCentralRig(t)
	nodeURL := r.playbackURL(t)
	files := sampleFiles(100 << 10)
	r.shipAll(t, files)
	u := r.playbackURL(t)
	if !strings.HasPrefix(u, r.base+"/") || u == nodeURL {
		t.Fatalf("the playback URL stays on the node: %s (node's: %s)", u, nodeURL)
	}
	dir := u[:strings.LastIndex(u, "/")+1]
	resp, body := get(t, dir+"video-0.m4v", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, files["video-0.m4v"]) || resp.Header.Get("Accept-Ranges") != "bytes" ||
		resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Content-Type") == "" {
		t.Fatalf("whole file: %d %d bytes %v", resp.StatusCode, len(body), resp.Header)
	}
	etag := resp.Header.Get("ETag")
	resp, body = get(t, dir+"video-0.m4v", map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != 206 || !bytes.Equal(body, files["video-0.m4v"][1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", 100<<10) {
		t.Fatalf("range: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body = get(t, dir+"video-0.m4v", map[string]string{"Range": "bytes=-10"}); resp.StatusCode != 206 || !bytes.Equal(body, files["video-0.m4v"][100<<10-10:]) {
		t.Fatalf("suffix range: %d", resp.StatusCode)
	}
	if resp, _ = get(t, dir+"video-0.m4v", map[string]string{"Range": "bytes=999999999-"}); resp.StatusCode != 416 ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", 100<<10) {
		t.Fatalf("unsatisfiable range: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ = get(t, dir+"video-0.m4v", map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, body = get(t, dir, nil); resp.StatusCode != 200 || !bytes.Equal(body, files["index.html"]) {
		t.Fatalf("the directory URL: %d %q", resp.StatusCode, body)
	}
	for _, p := range []string{"../../../etc/passwd", "..%2f..%2fstaging", "nope.bin"} {
		if resp, _ = get(t, dir+p, nil); resp.StatusCode != 404 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	// Another host name in the request: the URL follows it; a host that
	// would break the XML is not used.
	req, _ := http.NewRequest("GET", r.client("fe1").URL("getRecordings", "recordID="+r.recordID), nil)
	req.Host = "bbb.example.org"
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(b2), "<url>http://bbb.example.org/") {
		t.Fatalf("the URL does not follow the request's host: %s", b2)
	}

	c := r.client("fe1")
	if a := c.Get(t, "publishRecordings", "recordID="+r.recordID+"&publish=false"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if resp, _ = get(t, dir+"video-0.m4v", nil); resp.StatusCode != 404 {
		t.Fatalf("an unpublished recording plays: %d", resp.StatusCode)
	}
	if a := c.Get(t, "publishRecordings", "recordID="+r.recordID+"&publish=true"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if resp, _ = get(t, dir+"video-0.m4v", nil); resp.StatusCode != 200 {
		t.Fatalf("a published-again recording: %d", resp.StatusCode)
	}
	if a := c.Get(t, "deleteRecordings", "recordID="+r.recordID); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if _, err := os.Stat(filepath.Join(r.root, "published", "video", r.recordID)); !os.IsNotExist(err) {
		t.Fatalf("delete left the central copy: %v", err)
	}
	if _, ok := r.mc.FSM().Recording(r.recordID); ok {
		t.Fatal("delete left the index entry")
	}
	if resp, _ = get(t, dir+"video-0.m4v", nil); resp.StatusCode != 404 {
		t.Fatalf("a deleted recording plays: %d", resp.StatusCode)
	}
}

// With its node dead, a central recording still plays, and publish and
// delete act on the central copy alone.
func TestCentralRecordingOutlivesItsNode(t *testing.T) {
	r := newCentralRig(t)
	r.shipAll(t, sampleFiles(5000))
	r.killNode(0)
	u := r.playbackURL(t)
	if resp, _ := get(t, u, nil); resp.StatusCode != 200 {
		t.Fatalf("playback with the node dead: %d", resp.StatusCode)
	}
	c := r.client("fe1")
	if a := c.Get(t, "publishRecordings", "recordID="+r.recordID+"&publish=false"); a.ReturnCode != "SUCCESS" ||
		!strings.Contains(a.Raw, "<published>false</published>") {
		t.Fatalf("unpublish with the node dead: %s", a.Raw)
	}
	if got := recordIDs(c.Get(t, "getRecordings", "state=unpublished").Raw); len(got) != 1 {
		t.Fatalf("unpublished in the index: %v", got)
	}
	if resp, _ := get(t, u, nil); resp.StatusCode != 404 {
		t.Fatalf("unpublished, with the node dead: %d", resp.StatusCode)
	}
	if a := c.Get(t, "deleteRecordings", "recordID="+r.recordID); a.ReturnCode != "SUCCESS" || !strings.Contains(a.Raw, "<deleted>true</deleted>") {
		t.Fatalf("delete with the node dead: %s", a.Raw)
	}
	if _, err := os.Stat(filepath.Join(r.root, "published", "video", r.recordID)); !os.IsNotExist(err) {
		t.Fatal("delete left the central copy")
	}
}

// A protected recording plays only through the link getRecordings gives:
// the link sets a cookie for that recording; no link, an altered one, or
// another recording's gets 403.
func TestProtectedRecordingPlaysOnlyThroughItsLink(t *testing.T) {
	r := newCentralRig(t)
	r.shipAll(t, sampleFiles(5000))
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe1", Patch: []byte(`{"protect_recordings":true}`)})
	u := r.playbackURL(t)
	if !strings.Contains(u, "playback_token=") {
		t.Fatalf("a protected recording's URL has no token: %s", u)
	}
	bare, _, _ := strings.Cut(u, "?")
	if resp, _ := get(t, bare, nil); resp.StatusCode != 403 {
		t.Fatalf("no link: %d", resp.StatusCode)
	}
	altered := u[:len(u)-2] + "xx"
	if resp, _ := get(t, altered, nil); resp.StatusCode != 403 {
		t.Fatalf("altered link: %d", resp.StatusCode)
	}
	longer := strings.Replace(u, "playback_token=", "playback_token=9", 1) // a later expiry, same signature
	if resp, _ := get(t, longer, nil); resp.StatusCode != 403 {
		t.Fatalf("link with its expiry pushed back: %d", resp.StatusCode)
	}
	resp, _ := get(t, u, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !strings.HasPrefix(loc, r.base+"/playback/video/"+r.recordID+"/") {
		t.Fatalf("the link: %d %q", resp.StatusCode, loc)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, r.recordID) {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.Path != "/" {
		t.Fatalf("no HttpOnly cookie for the recording: %v", resp.Cookies())
	}
	if resp, _ := get(t, loc, nil); resp.StatusCode != 403 {
		t.Fatalf("the playback URL without the link's cookie: %d", resp.StatusCode)
	}
	with := map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}
	if resp, _ := get(t, loc, with); resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "private" {
		t.Fatalf("the playback URL with the cookie: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := get(t, loc+"video-0.m4v", map[string]string{"Cookie": with["Cookie"], "Range": "bytes=0-9"}); resp.StatusCode != 206 {
		t.Fatalf("the player's next file with the cookie: %d", resp.StatusCode)
	}
	if resp, _ := get(t, loc+"video-0.m4v", map[string]string{"Cookie": with["Cookie"] + "0"}); resp.StatusCode != 403 {
		t.Fatalf("an altered cookie: %d", resp.StatusCode)
	}
}

// Only the node's own agent (or an admin) ships its recordings: an agent
// token for another host is refused before anything is stored.
func TestTransferNeedsTheNodesAgentToken(t *testing.T) {
	const secret = "jwt-secret-transfers"
	root := t.TempDir()
	store, err := recstore.Open("file://"+root, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	r := &centralRig{rig: newRigWith(t, 1, Config{RecordingsStore: store, JWTSecret: secret}), root: root}
	o := sampleFiles(1000).offer(r.ids[0], "any-recording", "video", adminapi.TransferMinChunk)
	body, _ := json.Marshal(o)
	other, _ := auth.Mint(secret, "other.example.org:443", []string{auth.ScopeAgent}, time.Hour)
	own, _ := auth.Mint(secret, r.addrs[0], []string{auth.ScopeAgent}, time.Hour)
	for name, c := range map[string]struct {
		tok  string
		want int
	}{"none": {"", 401}, "garbage": {"x", 401}, "other node's agent": {other, 403}, "own agent": {own, 409}} {
		hdr := map[string]string{}
		if c.tok != "" {
			hdr["Authorization"] = "Bearer " + c.tok
		}
		if code, b := r.call(t, "POST", "/api/v1/transfers", body, hdr); code != c.want {
			t.Errorf("%s: %d %s (want %d)", name, code, b, c.want)
		}
	}
	// An import into a frontend (a recording the index does not know) is
	// an admin's: the node's own agent may not.
	r.mc.MustApply(&fsm.AddFrontend{Key: "fe9", Secret: "fe9-secret"})
	o.Frontend = "fe9"
	body, _ = json.Marshal(o)
	if code, b := r.call(t, "POST", "/api/v1/transfers", body, map[string]string{"Authorization": "Bearer " + own}); code != 403 {
		t.Errorf("an agent importing into a frontend: %d %s", code, b)
	}
	if _, err := os.Stat(filepath.Join(root, "staging")); !os.IsNotExist(err) {
		t.Fatal("a refused offer left something in the store")
	}
}

// A recording made before Conclave (the index does not know it) is
// imported with an admin token into a frontend: its entry is made from
// its metadata.xml, and it lists and plays as the frontend's own.
func TestImportOfARecordingMadeBeforeConclave(t *testing.T) {
	r := newCentralRig(t)
	const rid = "0123456789abcdef0123456789abcdef01234567-1600000000000"
	files := sampleFiles(2000)
	files["metadata.xml"] = []byte(`<?xml version="1.0" encoding="UTF-8"?>
<recording><id>` + rid + `</id><state>published</state><published>true</published>
<start_time>1600000000000</start_time><end_time>1600003600000</end_time><participants>12</participants><raw_size>999</raw_size>
<meeting id="` + rid + `" externalId="course-42" name="Algebra &amp; more" breakout="false"/>
<meta><bbb-context>Maths</bbb-context><isBreakout>false</isBreakout></meta>
<playback><format>video</format><link>https://old-bbb.example.org/playback/video/` + rid + `/</link><processing_time>5</processing_time><duration>3600000</duration><size>2000</size></playback>
</recording>`)
	o := files.offer(r.ids[0], rid, "video", adminapi.TransferMinChunk)
	if code, _ := r.offer(t, o); code != 409 {
		t.Fatalf("an unknown recording without a frontend: %d", code)
	}
	o.Frontend = "nope"
	if code, _ := r.offer(t, o); code != 404 {
		t.Fatalf("an import into a frontend that does not exist: %d", code)
	}
	o.Frontend = "fe1"
	code, st := r.offer(t, o)
	if code != 200 {
		t.Fatalf("import offer: %d %+v", code, st)
	}
	for _, c := range st.Missing {
		r.putChunk(t, st.ID, files, o, c)
	}
	if code, done := r.complete(t, st.ID); code != 200 || done.State != "central" {
		t.Fatalf("import complete: %d %+v", code, done)
	}
	a := r.client("fe1").Get(t, "getRecordings", "meetingID=course-42")
	if ids := recordIDs(a.Raw); len(ids) != 1 || ids[0] != rid || !strings.Contains(a.Raw, "<name>Algebra &amp; more</name>") ||
		!strings.Contains(a.Raw, "<bbb-context>Maths</bbb-context>") || !strings.Contains(a.Raw, "<url>"+r.base+"/playback/video/"+rid+"/</url>") {
		t.Fatalf("the imported recording as fe1 sees it: %s", a.Raw)
	}
	if got := recordIDs(r.client("fe2").Get(t, "getRecordings", "").Raw); len(got) != 0 {
		t.Fatalf("fe2 sees fe1's imported recording: %v", got)
	}
	if resp, body := get(t, r.base+"/playback/video/"+rid+"/video-0.m4v", nil); resp.StatusCode != 200 || !bytes.Equal(body, files["video-0.m4v"]) {
		t.Fatalf("the imported recording plays: %d", resp.StatusCode)
	}
}

// An abandoned transfer's chunks are swept once nothing touched them for
// the TTL; a transfer under way is left alone.
func TestAbandonedTransfersAreSwept(t *testing.T) {
	r := newCentralRig(t)
	files := sampleFiles(200 << 10)
	o := files.offer(r.ids[0], r.recordID, "video", adminapi.TransferMinChunk)
	_, st := r.offer(t, o)
	r.putChunk(t, st.ID, files, o, st.Missing[0])
	if n, err := r.srv.central.SweepStaging(context.Background(), time.Hour); err != nil || n != 0 {
		t.Fatalf("a fresh transfer swept: %d %v", n, err)
	}
	old := time.Now().Add(-2 * time.Hour)
	filepath.Walk(filepath.Join(r.root, "staging"), func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	if n, err := r.srv.central.SweepStaging(context.Background(), time.Hour); err != nil || n != 1 {
		t.Fatalf("an abandoned transfer not swept: %d %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(r.root, "staging", st.ID)); !os.IsNotExist(err) {
		t.Fatalf("its chunks are still there: %v", err)
	}
}

// Removing a frontend removes its recordings' central copies: its index
// entries go with it, and nothing would reach those files again.
func TestRemovedFrontendTakesItsCentralCopies(t *testing.T) {
	r := newCentralRig(t)
	r.shipAll(t, sampleFiles(5000))
	dir := filepath.Join(r.root, "published", "video", r.recordID)
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if code, b := r.call(t, "DELETE", "/api/v1/frontends/fe1", nil, nil); code != 200 {
		t.Fatalf("delete frontend: %d %s", code, b)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the removed frontend's central copy is left: %v", err)
	}
}

// A node that no longer has a central recording's files (cleaned up once
// they were central) answers notFound; publish and delete then act on the
// central copy, as with the node gone.
func TestCentralRecordingCleanedOffItsNode(t *testing.T) {
	r := newCentralRig(t)
	r.shipAll(t, sampleFiles(5000))
	node := testClient{Base: "http://" + r.addrs[0] + "/bigbluebutton/api", Secret: "node0-secret", Algo: "sha256"}
	if a := node.Get(t, "deleteRecordings", "recordID="+r.recordID); a.ReturnCode != "SUCCESS" {
		t.Fatalf("cleaning the node: %s", a.Raw)
	}
	c := r.client("fe1")
	u := r.playbackURL(t)
	if a := c.Get(t, "publishRecordings", "recordID="+r.recordID+"&publish=false"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("unpublish of a recording its node no longer has: %s", a.Raw)
	}
	if resp, _ := get(t, u, nil); resp.StatusCode != 404 {
		t.Fatalf("unpublished: %d", resp.StatusCode)
	}
	if a := c.Get(t, "deleteRecordings", "recordID="+r.recordID); a.ReturnCode != "SUCCESS" {
		t.Fatalf("delete of a recording its node no longer has: %s", a.Raw)
	}
	if _, err := os.Stat(filepath.Join(r.root, "published", "video", r.recordID)); !os.IsNotExist(err) {
		t.Fatal("delete left the central copy")
	}
}

// Behind a TLS proxy (trusted), a protected recording's link and its
// redirect are on the proxy's https name, and its cookie is one an LMS's
// iframe still sends: SameSite=None, Secure.
func TestProtectedLinkBehindATLSProxy(t *testing.T) {
	r := newCentralRigWith(t, Config{ReverseProxy: true})
	r.shipAll(t, sampleFiles(5000))
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe1", Patch: []byte(`{"protect_recordings":true}`)})
	req, _ := http.NewRequest("GET", r.client("fe1").URL("getRecordings", "recordID="+r.recordID), nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "bbb.example.org")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := urlRe.FindStringSubmatch(string(body))
	if m == nil || !strings.HasPrefix(m[1], "https://bbb.example.org/conclave/playback/"+r.recordID+"/video?playback_token=") {
		t.Fatalf("the link behind the proxy: %s", body)
	}
	link := strings.Replace(m[1], "https://bbb.example.org", r.base, 1)
	resp2, _ := get(t, link, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bbb.example.org"})
	if loc := resp2.Header.Get("Location"); resp2.StatusCode != 302 || !strings.HasPrefix(loc, "https://bbb.example.org/playback/video/"+r.recordID+"/") {
		t.Fatalf("redirect: %d %q", resp2.StatusCode, loc)
	}
	sc := resp2.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "secure") || !strings.Contains(strings.ToLower(sc), "samesite=none") {
		t.Fatalf("cookie behind a TLS proxy: %q", sc)
	}
}

// A recording shipped again with other files (BBB processed it anew) is
// written beside the copy in use; the index switches to it whole, and the
// old copy is deleted only then.
func TestReshippedCopyReplacesTheOldOneWhole(t *testing.T) {
	r := newCentralRig(t)
	first := sampleFiles(5000)
	r.shipAll(t, first)
	u := r.playbackURL(t)
	rec, _ := r.mc.FSM().Recording(r.recordID)
	old, _ := rec.CentralFormat("video")
	second := sampleFiles(7000)
	second["index.html"] = []byte("<video src=video-0.m4v> v2")
	o := second.offer(r.ids[0], r.recordID, "video", adminapi.TransferMinChunk)
	_, st := r.offer(t, o)
	for _, c := range st.Missing {
		r.putChunk(t, st.ID, second, o, c)
	}
	// Staged and not complete: the old copy still plays, whole.
	if resp, body := get(t, u, nil); resp.StatusCode != 200 || !bytes.Equal(body, first["index.html"]) {
		t.Fatalf("before the switch: %d %q", resp.StatusCode, body)
	}
	if code, done := r.complete(t, st.ID); code != 200 || done.State != "central" {
		t.Fatalf("complete: %d %+v", code, done)
	}
	if resp, body := get(t, u, nil); resp.StatusCode != 200 || !bytes.Equal(body, second["index.html"]) {
		t.Fatalf("after the switch: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, u+"video-0.m4v", nil); resp.StatusCode != 200 || !bytes.Equal(body, second["video-0.m4v"]) {
		t.Fatalf("after the switch, the media: %d, %d bytes", resp.StatusCode, len(body))
	}
	if _, err := os.Stat(filepath.Join(r.root, "published", "video", r.recordID, old.Version)); !os.IsNotExist(err) {
		t.Fatalf("the replaced copy is left: %v", err)
	}
}
