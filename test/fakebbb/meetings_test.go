package fakebbb_test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// joinAndLand joins through the redirect and fetches the page it leads to,
// as a browser does.
func (c client) joinAndLand(query string) answer {
	c.t.Helper()
	a := c.get("join", query)
	if a.status != http.StatusFound {
		c.t.Fatalf("join?%s: HTTP %d %s", query, a.status, a.body)
	}
	land := fetch(c.t, "GET", a.header.Get("Location"), "", "")
	if land.status != http.StatusOK {
		c.t.Fatalf("landing page: HTTP %d %s", land.status, land.body)
	}
	return land
}

func slidesBody(urls ...string) (string, string) {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><modules><module name="presentation">`)
	for _, u := range urls {
		fmt.Fprintf(&b, `<document url="%s" filename="x.pdf"/>`, u)
	}
	b.WriteString(`<document name="embedded.pdf">JVBERi0xLjQK</document></module></modules>`)
	return "application/xml", b.String()
}

var internalID = regexp.MustCompile(`^[0-9a-f]{40}-[0-9]{13}$`)

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestCreate(t *testing.T) {
	s, c := startNode(t, "create-secret")
	a := c.mustOK("create", "name=Maths+101&meetingID=maths&attendeePW=ap&moderatorPW=mp&duration=45")
	if a.get("meetingID") != "maths" || a.get("attendeePW") != "ap" || a.get("moderatorPW") != "mp" ||
		a.get("duration") != "45" || a.get("parentMeetingID") != "bbb-none" || a.get("dialNumber") == "" {
		t.Fatalf("create answer: %s", a.body)
	}
	if id := a.get("internalMeetingID"); !internalID.MatchString(id) || !strings.HasPrefix(id, sha1Hex("maths")+"-") ||
		!strings.HasSuffix(id, "-"+a.get("createTime")) {
		t.Fatalf("internalMeetingID %q is not sha1(meetingID)-createTime", id)
	}
	if vb := a.get("voiceBridge"); len(vb) != 5 {
		t.Fatalf("voiceBridge %q", vb)
	}
	if a.tree.has("messageKey") && a.key() != "" {
		t.Fatalf("a first create has no messageKey: %s", a.body)
	}
	if s.MeetingCount() != 1 || s.MeetingIDs()[0] != "maths" {
		t.Fatalf("meetings: %v", s.MeetingIDs())
	}

	// Duplicate creates: same or no passwords are idempotent.
	for _, q := range []string{"meetingID=maths&attendeePW=ap&moderatorPW=mp", "meetingID=maths", "meetingID=maths&name=Other"} {
		d := c.get("create", q)
		if d.returncode() != "SUCCESS" || d.key() != "duplicateWarning" || d.get("internalMeetingID") != a.get("internalMeetingID") {
			t.Fatalf("duplicate create %q: %s", q, d.body)
		}
	}
	if d := c.get("create", "meetingID=maths&attendeePW=other"); d.returncode() != "FAILED" || d.key() != "idNotUnique" {
		t.Fatalf("create with other passwords: %s", d.body)
	}
	if s.MeetingCount() != 1 {
		t.Fatalf("duplicates added meetings: %v", s.MeetingIDs())
	}

	// Passwords are generated when absent.
	g := c.mustOK("create", "meetingID=no-passwords")
	if g.get("attendeePW") == "" || g.get("moderatorPW") == "" || g.get("attendeePW") == g.get("moderatorPW") {
		t.Fatalf("generated passwords: %s", g.body)
	}

	// Parameter errors.
	for q, key := range map[string]string{
		"name=x":                                "missingParamMeetingID",
		"meetingID=+++":                         "missingParamMeetingID",
		"meetingID=a":                           "validationError",
		"meetingID=a,b":                         "validationError",
		"meetingID=" + strings.Repeat("m", 257): "validationError",
		"meetingID=vb1&voiceBridge=12ab":        "validationError",
	} {
		if e := c.get("create", q); e.returncode() != "FAILED" || e.key() != key || e.status != 200 {
			t.Errorf("create?%s: want %s, got %s", q, key, e.body)
		}
	}
	c.mustOK("create", "meetingID=vb1&voiceBridge=71234")
	if e := c.get("create", "meetingID=vb2&voiceBridge=71234"); e.key() != "nonUniqueVoiceBridge" {
		t.Fatalf("voiceBridge in use: %s", e.body)
	}

	// meta_* names are lower-cased, as bbb-web does.
	c.mustOK("create", "meetingID=meta-room&meta_endCallbackUrl="+url.QueryEscape("http://127.0.0.1:1/x")+"&meta_Presenter=Ann")
	info := c.mustOK("getMeetingInfo", "meetingID=meta-room")
	if info.get("metadata/endcallbackurl") != "http://127.0.0.1:1/x" || info.get("metadata/presenter") != "Ann" ||
		info.tree.has("metadata/endCallbackUrl") {
		t.Fatalf("metadata: %s", info.body)
	}
}

func TestCreatePost(t *testing.T) {
	s, c := startNode(t, "post-secret")
	ct, body := slidesBody("https://example.org/a.pdf", "https://example.org/b.pdf")
	if a := c.post("create", "meetingID=slides&name=Slides", ct, body); a.returncode() != "SUCCESS" {
		t.Fatalf("POST create with slides: %s", a.body)
	}
	want := []string{"https://example.org/a.pdf", "https://example.org/b.pdf", "embedded.pdf"}
	if p := s.Presentations("slides"); fmt.Sprint(p) != fmt.Sprint(want) {
		t.Fatalf("presentations %v, want %v", p, want)
	}
	// Unreadable slides do not stop the meeting, as in bbb-web.
	if a := c.post("create", "meetingID=bad-slides", "text/xml", "<modules><module"); a.returncode() != "SUCCESS" {
		t.Fatalf("create with broken slides: %s", a.body)
	}
	if a := c.post("create", "meetingID=plain", "text/plain", "hello"); a.key() != "unsupportedContentType" {
		t.Fatalf("create with text/plain: %s", a.body)
	}
	// Form bodies: parameters in the body; the checksum may cover the
	// query (body unsigned) or sit in the body, covering it.
	a := fetch(t, "POST", c.url("create", "meetingID=form1"), "application/x-www-form-urlencoded", "name=From+Body&record=true")
	if a.returncode() != "SUCCESS" {
		t.Fatalf("form create: %s", a.body)
	}
	if info := c.mustOK("getMeetingInfo", "meetingID=form1"); info.get("meetingName") != "From Body" || info.get("recording") != "true" {
		t.Fatalf("form parameters not taken: %s", info.body)
	}
	form := "meetingID=form2&name=Two"
	form += "&checksum=" + checksum("sha256", "create", form, c.secret)
	if a := fetch(t, "POST", c.base+"/create", "application/x-www-form-urlencoded", form); a.returncode() != "SUCCESS" {
		t.Fatalf("create with the checksum in the body: %s", a.body)
	}
	forged := strings.Replace(form, "name=Two", "name=Forged", 1)
	if a := fetch(t, "POST", c.base+"/create", "application/x-www-form-urlencoded", forged); a.key() != "checksumError" {
		t.Fatalf("altered body accepted: %s", a.body)
	}
}

func TestJoinRedirectLandingCountsAttendee(t *testing.T) {
	s, c := startNode(t, "join-secret")
	c.mustOK("create", "meetingID=room&name=Room&attendeePW=ap&moderatorPW=mp")

	a := c.get("join", "meetingID=room&fullName=Alice+Smith&password=mp&userID=alice-1&"+customData)
	if a.status != http.StatusFound {
		t.Fatalf("join: HTTP %d %s", a.status, a.body)
	}
	loc, err := url.Parse(a.header.Get("Location"))
	if err != nil || loc.Path != "/html5client/join" || loc.Query().Get("sessionToken") == "" ||
		loc.Host != strings.TrimPrefix(strings.TrimSuffix(c.base, "/bigbluebutton/api"), "http://") {
		t.Fatalf("join redirect to %q", a.header.Get("Location"))
	}
	if n := s.AttendeeCount(); n != 0 {
		t.Fatalf("attendee counted before the browser landed: %d", n)
	}
	for i := 0; i < 2; i++ { // a reload does not add the user twice
		if land := fetch(t, "GET", loc.String(), "", ""); land.status != 200 || !strings.Contains(land.body, "Alice Smith") {
			t.Fatalf("landing page: %d %s", land.status, land.body)
		}
	}
	if n := s.AttendeeCount(); n != 1 {
		t.Fatalf("attendees after landing: %d", n)
	}
	info := c.mustOK("getMeetingInfo", "meetingID=room")
	if info.get("participantCount") != "1" || info.get("moderatorCount") != "1" || info.get("hasUserJoined") != "true" ||
		info.get("attendees/attendee/fullName") != "Alice Smith" || info.get("attendees/attendee/role") != "MODERATOR" ||
		info.get("attendees/attendee/userID") != "alice-1" || info.get("attendees/attendee/isPresenter") != "true" ||
		info.get("attendees/attendee/customdata/backgroundColor") != "#FF0033" {
		t.Fatalf("getMeetingInfo after landing: %s", info.body)
	}

	// A browser following the redirect lands and counts.
	resp, err := http.Get(c.url("join", "meetingID=room&fullName=Bob&password=ap"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || s.AttendeeCount() != 2 {
		t.Fatalf("followed redirect: HTTP %d, attendees %d", resp.StatusCode, s.AttendeeCount())
	}

	// redirect=false: BBB's XML; the user still counts only on landing.
	x := c.mustOK("join", "meetingID=room&fullName=Carol&role=viewer&redirect=false")
	if x.key() != "successfullyJoined" || !strings.Contains(x.get("url"), "sessionToken="+x.get("session_token")) ||
		x.get("meeting_id") != info.get("internalMeetingID") || !strings.HasPrefix(x.get("user_id"), "w_") {
		t.Fatalf("join redirect=false: %s", x.body)
	}
	if s.AttendeeCount() != 2 {
		t.Fatal("redirect=false join counted before landing")
	}
	fetch(t, "GET", x.get("url"), "", "")
	if s.AttendeeCount() != 3 {
		t.Fatalf("attendees after Carol landed: %d", s.AttendeeCount())
	}

	// Join's failures are checked in TestJoinFailuresAsBBBWeb; a full
	// meeting answers as bbb-web does, redirecting unless redirect=false.
	c.mustOK("create", "meetingID=small&maxParticipants=1&attendeePW=ap&moderatorPW=mp")
	c.joinAndLand("meetingID=small&fullName=One&password=ap")
	if e := c.get("join", "meetingID=small&fullName=Two&password=ap&redirect=false"); e.key() != "maxParticipantsReached" {
		t.Fatalf("join over maxParticipants: %s", e.body)
	}

	// After the end, the landing page refuses the old session.
	c.mustOK("end", "meetingID=room")
	if land := fetch(t, "GET", loc.String(), "", ""); land.status != http.StatusNotFound {
		t.Fatalf("landing after end: HTTP %d", land.status)
	}
	if s.AttendeeCount() != 1 {
		t.Fatalf("attendees after end: %d", s.AttendeeCount())
	}
}

func TestEndIsMeetingRunningGetMeetings(t *testing.T) {
	s, c := startNode(t, "end-secret")
	if a := c.mustOK("getMeetings", ""); a.key() != "noMeetings" || !a.tree.has("meetings") || a.tree.has("meetings/meeting") {
		t.Fatalf("getMeetings with none: %s", a.body)
	}
	if a := c.mustOK("isMeetingRunning", "meetingID=m1"); a.get("running") != "false" {
		t.Fatalf("isMeetingRunning on unknown: %s", a.body)
	}
	if a := c.get("getMeetingInfo", "meetingID=m1"); a.key() != "notFound" {
		t.Fatalf("getMeetingInfo on unknown: %s", a.body)
	}
	c.mustOK("create", "meetingID=m1&moderatorPW=mp")
	p := c.mustOK("create", "meetingID=m2")
	c.mustOK("create", "meetingID=m2-room1&isBreakoutRoom=true&sequence=1&parentMeetingID="+p.get("internalMeetingID"))
	c.joinAndLand("meetingID=m1&fullName=Ann&password=mp")
	if a := c.mustOK("isMeetingRunning", "meetingID=m1"); a.get("running") != "true" {
		t.Fatalf("isMeetingRunning: %s", a.body)
	}
	all := c.mustOK("getMeetings", "")
	if n := len(all.tree.all("meetings/meeting")); n != 3 || all.tree.has("messageKey") {
		t.Fatalf("getMeetings lists %d: %s", n, all.body)
	}
	if info := c.mustOK("getMeetingInfo", "meetingID=m2"); info.get("breakoutRooms/breakout") == "" {
		t.Fatalf("parent lists no breakout room: %s", info.body)
	}
	if info := c.mustOK("getMeetingInfo", "meetingID=m2-room1"); info.get("isBreakout") != "true" ||
		info.get("parentMeetingID") != p.get("internalMeetingID") || info.get("sequence") != "1" {
		t.Fatalf("breakout room: %s", info.body)
	}

	if a := c.get("end", "meetingID=m1&password=wrong"); a.key() != "invalidPassword" {
		t.Fatalf("end with a wrong password: %s", a.body)
	}
	if a := c.get("end", "meetingID=nosuch"); a.key() != "notFound" {
		t.Fatalf("end unknown: %s", a.body)
	}
	if a := c.get("end", ""); a.key() != "missingParamMeetingID" {
		t.Fatalf("end without meetingID: %s", a.body)
	}
	if a := c.mustOK("end", "meetingID=m1&password=mp"); a.key() != "sentEndMeetingRequest" {
		t.Fatalf("end: %s", a.body)
	}
	if a := c.mustOK("isMeetingRunning", "meetingID=m1"); a.get("running") != "false" {
		t.Fatalf("ended meeting still running: %s", a.body)
	}
	// Ending a parent ends its breakout rooms.
	c.mustOK("end", "meetingID=m2")
	if s.MeetingCount() != 0 {
		t.Fatalf("left running: %v", s.MeetingIDs())
	}
	// A meeting ID is free again after the end, with a new internal ID.
	again := c.mustOK("create", "meetingID=m2")
	if again.get("internalMeetingID") == p.get("internalMeetingID") || again.key() != "" {
		t.Fatalf("re-create after end: %s", again.body)
	}
}

func TestInsertDocumentAndChat(t *testing.T) {
	s, c := startNode(t, "doc-secret")
	c.mustOK("create", "meetingID=lecture")
	ct, body := slidesBody("https://example.org/late.pdf")
	for _, tc := range []struct{ method, ct, body, key string }{
		{"GET", "", "", "unsupportedContentType"},
		{"POST", "text/plain", "hello", "unsupportedContentType"},
		{"POST", ct, "<modules><module", "validationError"},
	} {
		if a := fetch(t, tc.method, c.url("insertDocument", "meetingID=lecture"), tc.ct, tc.body); a.key() != tc.key {
			t.Errorf("insertDocument %s %s: %s", tc.method, tc.ct, a.body)
		}
	}
	if a := c.post("insertDocument", "meetingID=nosuch", ct, body); a.returncode() != "FAILED" || a.tree.has("messageKey") ||
		a.get("message") != "Meeting with id [nosuch] not found." {
		t.Fatalf("insertDocument on unknown: %s", a.body)
	}
	if a := c.post("insertDocument", "meetingID=lecture", "text/xml; charset=utf-8", body); a.returncode() != "SUCCESS" {
		t.Fatalf("insertDocument: %s", a.body)
	}
	if p := s.Presentations("lecture"); len(p) != 2 || p[0] != "https://example.org/late.pdf" {
		t.Fatalf("presentations: %v", p)
	}

	c.joinAndLand("meetingID=lecture&fullName=Ann&role=moderator")
	c.mustOK("sendChatMessage", "meetingID=lecture&message=hello+all&userName=Bot")
	if m := s.ChatMessages("lecture"); len(m) != 1 || m[0] != "hello all" {
		t.Fatalf("chat: %v", m)
	}
	for q, key := range map[string]string{
		"meetingID=nosuch&message=hi":                           "meetingNotFound",
		"meetingID=lecture":                                     "nullError",
		"meetingID=lecture&message=":                            "sizeError",
		"meetingID=lecture&message=" + strings.Repeat("x", 501): "sizeError",
		"message=hi": "missingParamMeetingID",
	} {
		if a := c.get("sendChatMessage", q); a.returncode() != "FAILED" || a.key() != key {
			t.Errorf("sendChatMessage?%.40s: want %s, got %s", q, key, a.body)
		}
	}
}

// Meetings created, joined and ended from many goroutines keep the counts
// right (run with -race).
func TestConcurrentUse(t *testing.T) {
	s, c := startNode(t, "busy-secret")
	// t.Fatal must not be called off the test goroutine: collect errors.
	errs := make(chan error, 100)
	call := func(u, want string) {
		resp, err := http.Get(u) // follows a join redirect to the landing page
		if err != nil {
			errs <- err
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			errs <- fmt.Errorf("%s: HTTP %d %s", u, resp.StatusCode, body)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("busy-%d", i)
			call(c.url("create", "meetingID="+id+"&moderatorPW=mp&record=true"), "SUCCESS")
			for j := 0; j < 3; j++ {
				call(c.url("join", "meetingID="+id+"&fullName=U&password=mp"), "joined")
			}
			call(c.url("getMeetings", ""), "SUCCESS")
			if i%2 == 0 {
				call(c.url("end", "meetingID="+id), "SUCCESS")
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.MeetingCount() != 4 || s.AttendeeCount() != 12 || len(s.RecordingIDs()) != 4 {
		t.Fatalf("meetings %d, attendees %d, recordings %d", s.MeetingCount(), s.AttendeeCount(), len(s.RecordingIDs()))
	}
}
