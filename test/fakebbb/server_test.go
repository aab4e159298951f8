package fakebbb_test

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/conclave-lb/conclave/test/fakebbb"
)

func TestChecksums(t *testing.T) {
	s, c := startNode(t, "sum-secret")
	for i, algo := range []string{"sha1", "sha256", "sha384", "sha512"} {
		for j, space := range []string{"+", "%20"} {
			c.algo = algo
			q := fmt.Sprintf("name=Test%sMeeting&meetingID=m-%d-%d", space, i, j)
			if a := c.get("create", q); a.returncode() != "SUCCESS" {
				t.Fatalf("%s with %q: %s", algo, space, a.body)
			}
		}
	}
	c.algo = ""
	q := "meetingID=m-0-0"
	sum := checksum("sha256", "isMeetingRunning", q, c.secret)
	for _, raw := range []string{
		"checksum=" + sum + "&" + q,             // checksum first
		q + "&checksum=" + strings.ToUpper(sum), // upper case
	} {
		if a := fetch(t, "GET", c.base+"/isMeetingRunning?"+raw, "", ""); a.returncode() != "SUCCESS" || a.get("running") != "false" {
			t.Fatalf("%s: %s", raw, a.body)
		}
	}
	bad := []string{
		"meetingID=m-0-0",                      // none
		"meetingID=m-0-0&checksum=",            // empty
		"meetingID=m-0-0&checksum=" + sum[:63], // bad length
		"meetingID=m-0-1&checksum=" + sum,      // other query
		"meetingID=m-0-0&checksum=" + checksum("sha256", "getMeetingInfo", q, c.secret), // other call
		"meetingID=m-0-0&checksum=" + checksum("sha256", "isMeetingRunning", q, "wrong"),
		"meetingID=m%2D0-0&checksum=" + sum, // re-encoded: raw text differs
	}
	for _, raw := range bad {
		a := fetch(t, "GET", c.base+"/isMeetingRunning?"+raw, "", "")
		if a.status != 200 || a.returncode() != "FAILED" || a.key() != "checksumError" {
			t.Errorf("%s: HTTP %d %s", raw, a.status, a.body)
		}
	}
	// The reference vector of BBB's API documentation.
	ref := fakebbb.New("639259d4-9dd8-4b25-bf01-95f9567eaf4b")
	rec := httptest.NewRecorder()
	ref.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/bigbluebutton/api/create?name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444&checksum=1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17", nil))
	if !strings.Contains(rec.Body.String(), "<returncode>SUCCESS</returncode>") {
		t.Fatalf("reference vector: %s", rec.Body)
	}

	// Checksum errors win over parameter errors.
	wrong := client{t: t, base: c.base, secret: "wrong"}
	if a := wrong.get("create", ""); a.key() != "checksumError" {
		t.Fatalf("wrong secret and no meetingID: %s", a.body)
	}
	// The API root needs no checksum; unknown calls are unsupportedRequest.
	for _, root := range []string{c.base, c.base + "/"} {
		if a := fetch(t, "GET", root, "", ""); a.returncode() != "SUCCESS" || a.get("version") != "2.0" || a.get("apiVersion") != "2.0" {
			t.Fatalf("API root %s: %s", root, a.body)
		}
	}
	if a := c.get("frobnicate", "a=1"); a.key() != "unsupportedRequest" || a.status != 200 {
		t.Fatalf("unknown call: %s", a.body)
	}
	// Requests counts what reached the node, whatever the outcome.
	if n := s.Requests("isMeetingRunning"); n != 2+len(bad) {
		t.Fatalf("Requests(isMeetingRunning) = %d", n)
	}
	if s.Requests("create") != 9 || s.Requests("frobnicate") != 1 || s.Requests("") != 2 || s.Requests("end") != 0 {
		t.Fatalf("Requests: create %d, frobnicate %d, root %d", s.Requests("create"), s.Requests("frobnicate"), s.Requests(""))
	}
}

// Close then Start on the same address is a node restart: the state stays.
func TestRestartKeepsState(t *testing.T) {
	s, c := startNode(t, "restart-secret")
	c.mustOK("create", "meetingID=survivor&moderatorPW=mp")
	c.joinAndLand("meetingID=survivor&fullName=Ann&password=mp")
	addr := strings.TrimSuffix(strings.TrimPrefix(c.base, "http://"), "/bigbluebutton/api")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := noRedirect.Get(c.url("getMeetings", "")); err == nil {
		t.Fatal("a closed node still answers")
	}
	if _, err := s.Start(addr); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(addr); err == nil {
		t.Fatal("Start twice must fail")
	}
	if a := c.mustOK("getMeetingInfo", "meetingID=survivor"); a.get("participantCount") != "1" {
		t.Fatalf("after restart: %s", a.body)
	}
	if s.MeetingCount() != 1 || s.AttendeeCount() != 1 {
		t.Fatalf("state after restart: %d meetings, %d attendees", s.MeetingCount(), s.AttendeeCount())
	}
}

// Hostile or broken input never panics (a panic answers 500), and every
// XML answer stays well-formed.
func TestNastyInputs(t *testing.T) {
	const secret = "nasty-secret"
	s := fakebbb.New(secret)
	h := s.Handler()
	sign := func(call, q string) string {
		return "/bigbluebutton/api/" + call + "?" + q + "&checksum=" + checksum("sha256", call, q, secret)
	}
	do := func(method, target, ct string, body io.Reader) *httptest.ResponseRecorder {
		t.Helper()
		u, err := url.Parse("http://node.test" + target)
		if err != nil {
			t.Fatalf("test target %q: %v", target, err)
		}
		req := httptest.NewRequest(method, "http://node.test/", body)
		req.URL = u
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %.80s: %s", method, target, rec.Body)
		}
		if strings.Contains(rec.Header().Get("Content-Type"), "xml") {
			if _, err := parseTree(rec.Body.Bytes()); err != nil {
				t.Fatalf("%s %.80s: malformed XML (%v): %s", method, target, err, rec.Body)
			}
		}
		return rec
	}

	weird := "meetingID=%FF%FE%00x&name=%01%02%EF%BF%BF&" +
		"meta_%3Cscript%3E=1&meta_1abc=2&meta_=3&meta_a%20b=4&meta_ok=%26%3C%3E%22%27%00&meta_xmlns%3Ax=5&" +
		"userdata-%3E=1&voiceBridge=99999999999999999999999"
	do("GET", sign("create", weird), "", nil)
	do("GET", sign("create", "meetingID=%FF%FE%00x&name=x"), "", nil)
	do("GET", sign("join", "meetingID=%FF%FE%00x&fullName=%00&role=moderator&userdata-%3Cx%3E=1&userdata-=2"), "", nil)
	for _, call := range []string{"getMeetingInfo", "getMeetings", "isMeetingRunning"} {
		do("GET", sign(call, "meetingID=%FF%FE%00x"), "", nil)
	}
	long := strings.Repeat("a", 1<<16)
	for _, target := range []string{
		sign("create", "meetingID=%zz&name=%"),
		sign("create", "meetingID=a;b;c&x=%"),
		sign("create", "meetingID="+long),
		"/bigbluebutton/api/create?checksum=" + long,
		"/bigbluebutton/api/create?checksum=zz&checksum=yy&checksum",
		"/bigbluebutton/api/create?&&&=&=&checksum==",
		"/bigbluebutton/api/../../etc/passwd",
		"/bigbluebutton/api/create/extra",
		"/bigbluebutton/api//create",
		"/bigbluebutton/api/%00",
		sign("getRecordings", "limit=-5&offset=abc"),
		sign("getRecordings", "limit=99999999999999999999&offset=99999999999999999999"),
		sign("getRecordings", "limit=1&offset=9223372036854775807"),
		sign("getRecordings", "recordID=,,,&meetingID=,&state=,any,&meta_x=%25&meta_y="),
		sign("publishRecordings", "recordID=,,,&publish=maybe"),
		sign("updateRecordings", "recordID=x&meta_=1"),
		sign("getRecordingTextTracks", "recordID=../../x"),
		sign("sendChatMessage", "meetingID=x&message=%FF"),
		"/html5client/join", "/html5client/join?sessionToken=%00",
		"/playback/video/", "/playback/video/../../x", "/playback/video/x/..%2f..%2fx", "/playback/video/x/.x",
		"/bigbluebutton/captions/", "/bigbluebutton/captions/x", "/nowhere",
	} {
		do("GET", target, "", nil)
	}

	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>` +
		`<modules><module name="presentation"><document url="&lol2;"/></module></modules>`
	deep := strings.Repeat("<a>", 200000) + strings.Repeat("</a>", 200000)
	for _, body := range []string{bomb, deep, "\x00\xff\xfe", `<modules><module name="presentation"><document url="x"`, ""} {
		do("POST", sign("create", "meetingID=bodies"), "application/xml", strings.NewReader(body))
		do("POST", sign("insertDocument", "meetingID=bodies"), "text/xml", strings.NewReader(body))
	}
	for _, ct := range []string{"multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=x",
		"application/x-www-form-urlencoded", ";;;", "text/xml; charset=ebcdic"} {
		do("POST", sign("create", "meetingID=types"), ct, strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n%zz&&=\r\n--x"))
		do("POST", sign("putRecordingTextTrack", "recordID=x&kind=captions&lang=en"), ct, strings.NewReader("--x\r\n"))
	}
	// A body over the bound is refused, not buffered.
	var big atomic.Int64
	huge := io.LimitReader(countingZeros{&big}, 40<<20)
	if rec := do("POST", sign("create", "meetingID=huge"), "application/xml", huge); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: HTTP %d", rec.Code)
	}
	if big.Load() > 33<<20 {
		t.Fatalf("read %d bytes of an oversized body", big.Load())
	}
	if s.MeetingCount() == 0 {
		t.Fatal("no meeting was created at all: the requests above did not reach create")
	}

	// Whatever got in, the listings are still well-formed XML.
	for _, call := range []string{"getMeetings", "getRecordings"} {
		rec := do("GET", sign(call, "x=1"), "", nil)
		if err := xml.Unmarshal(rec.Body.Bytes(), new(struct{})); err != nil {
			t.Fatalf("%s: %v", call, err)
		}
	}
}

type countingZeros struct{ n *atomic.Int64 }

func (z countingZeros) Read(p []byte) (int, error) {
	clear(p)
	z.n.Add(int64(len(p)))
	return len(p), nil
}

// The request counts are readable over HTTP, for a fake run as its own
// process.
func TestRequestCountsOverHTTP(t *testing.T) {
	_, api, host := fakebbb.StartTest(t, "count-secret")
	for i := 0; i < 3; i++ {
		resp, err := http.Get(strings.TrimSuffix(api, "/") + "/getMeetings?checksum=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + host + fakebbb.RequestsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var counts map[string]int
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil {
		t.Fatal(err)
	}
	if counts["getMeetings"] != 3 {
		t.Fatalf("counts %v: want getMeetings 3", counts)
	}
}
