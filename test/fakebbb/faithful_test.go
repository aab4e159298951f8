package fakebbb_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The behaviours below follow bbb-web 3.0's source (bigbluebutton-web
// ApiController.groovy; bbb-common-web's Meeting, JoinMeeting and the
// constraints of its fields); each test names what it mirrors.

// samePaths asserts that our answer has every element path of BBB's real
// answer, whatever its returncode (for failures BBB renders with its
// success template).
func samePaths(t *testing.T, name string, ours answer) {
	t.Helper()
	want, err := parseTree(fixture(t, name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if ours.tree == nil || ours.status != 200 {
		t.Fatalf("%s: HTTP %d, not XML: %s", name, ours.status, ours.body)
	}
	if miss := missing(want.paths(), ours.tree.paths()); len(miss) > 0 {
		t.Errorf("%s: our answer lacks %v\n%s", name, miss, ours.body)
	}
}

// Meeting.isRunning is "its users map is not empty": false from create
// until the first user's client arrives, then true until the end — a user
// who leaves is only flagged, so the meeting stays running without anyone.
func TestRunningOnlyOnceSomeoneJoined(t *testing.T) {
	_, c := startNode(t, "running-secret")
	c.mustOK("create", "meetingID=r1&attendeePW=ap&moderatorPW=mp")
	c.mustOK("create", "meetingID=r2&attendeePW=ap&moderatorPW=mp")

	state := func(id string) (isRunning, info string, list map[string]string) {
		t.Helper()
		ir := c.mustOK("isMeetingRunning", "meetingID="+id)
		sameShape(t, "is_meeting_running.xml", ir)
		gi := c.mustOK("getMeetingInfo", "meetingID="+id)
		list = map[string]string{}
		for _, m := range c.mustOK("getMeetings", "").tree.all("meetings/meeting") {
			list[m.get("meetingID")] = m.get("running")
		}
		return ir.get("running"), gi.get("running"), list
	}
	if ir, gi, list := state("r1"); ir != "false" || gi != "false" || list["r1"] != "false" || list["r2"] != "false" {
		t.Fatalf("after create: isMeetingRunning %s, getMeetingInfo %s, getMeetings %v", ir, gi, list)
	}
	// A join URL handed out is not a user in the meeting yet.
	if a := c.get("join", "meetingID=r1&fullName=Ann&password=mp"); a.status != http.StatusFound {
		t.Fatalf("join: HTTP %d %s", a.status, a.body)
	}
	if ir, _, _ := state("r1"); ir != "false" {
		t.Fatal("running before the client arrived")
	}
	c.joinAndLand("meetingID=r1&fullName=Bob&password=ap")
	if ir, gi, list := state("r1"); ir != "true" || gi != "true" || list["r1"] != "true" || list["r2"] != "false" {
		t.Fatalf("after a join: isMeetingRunning %s, getMeetingInfo %s, getMeetings %v", ir, gi, list)
	}
	c.mustOK("end", "meetingID=r1")
	if a := c.mustOK("isMeetingRunning", "meetingID=r1"); a.get("running") != "false" {
		t.Fatal("running after the end")
	}
}

// sendChatMessage: "meeting != null && meeting.isRunning()", else FAILED
// meetingNotFound "Meeting not found".
func TestSendChatMessageNeedsARunningMeeting(t *testing.T) {
	s, c := startNode(t, "chat-secret")
	c.mustOK("create", "meetingID=talk&attendeePW=ap&moderatorPW=mp")
	for _, id := range []string{"talk", "nosuch"} {
		a := c.get("sendChatMessage", "meetingID="+id+"&message=hello")
		sameShape(t, "send_chat_message_failed.xml", a)
		if a.key() != "meetingNotFound" || a.get("message") != "Meeting not found" {
			t.Fatalf("sendChatMessage to %s before anyone joined: %s", id, a.body)
		}
	}
	if m := s.ChatMessages("talk"); len(m) != 0 {
		t.Fatalf("a refused message was posted: %v", m)
	}
	c.joinAndLand("meetingID=talk&fullName=Ann&password=ap")
	a := c.mustOK("sendChatMessage", "meetingID=talk&message=hello")
	sameShape(t, "send_chat_message.xml", a)
	if a.get("message") != "Message successfully sent" || len(s.ChatMessages("talk")) != 1 {
		t.Fatalf("sendChatMessage once running: %s", a.body)
	}
}

// insertDocument on a meeting created with disabledFeatures=presentation:
// FAILED "Presentation feature is disabled, ignoring.", with the insert
// document template (a message, no messageKey). disabledFeatures is a
// comma list, items trimmed; disabledFeaturesExclude takes items out.
func TestInsertDocumentWithPresentationDisabled(t *testing.T) {
	s, c := startNode(t, "insert-secret")
	ct, body := slidesBody("https://example.org/a.pdf")
	c.mustOK("create", "meetingID=nopres&disabledFeatures="+url.QueryEscape("chat, presentation ,polls"))
	c.mustOK("create", "meetingID=excluded&disabledFeatures=presentation,chat&disabledFeaturesExclude=presentation")
	c.mustOK("create", "meetingID=other&disabledFeatures=presentationX,chat")

	a := c.post("insertDocument", "meetingID=nopres", ct, body)
	samePaths(t, "insert_document.xml", a)
	if a.returncode() != "FAILED" || a.tree.has("messageKey") || a.get("message") != "Presentation feature is disabled, ignoring." {
		t.Fatalf("insertDocument with presentation disabled: %s", a.body)
	}
	if p := s.Presentations("nopres"); len(p) != 0 {
		t.Fatalf("documents taken anyway: %v", p)
	}
	for _, id := range []string{"excluded", "other"} {
		a := c.post("insertDocument", "meetingID="+id, ct, body)
		sameShape(t, "insert_document.xml", a)
		if a.get("message") != "Presentation is being uploaded" || len(s.Presentations(id)) != 2 {
			t.Fatalf("insertDocument on %s: %s", id, a.body)
		}
	}
}

// joinErrors reads the errors bbb-web puts in a failed join's redirect.
func joinErrors(t *testing.T, a answer) (*url.URL, []map[string]string) {
	t.Helper()
	if a.status != http.StatusFound {
		t.Fatalf("want a redirect, got HTTP %d %s", a.status, a.body)
	}
	loc, err := url.Parse(a.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	var errs []map[string]string
	if err := json.Unmarshal([]byte(loc.Query().Get("errors")), &errs); err != nil || len(errs) != 1 {
		t.Fatalf("errors in %s: %v", a.header.Get("Location"), err)
	}
	return loc, errs
}

// Join's failures, as ApiController.join answers them.
func TestJoinFailuresAsBBBWeb(t *testing.T) {
	_, c := startNode(t, "joinfail-secret")
	c.mustOK("create", "meetingID=room&attendeePW=ap&moderatorPW=mp&maxParticipants=1")
	server := strings.TrimSuffix(c.base, "/bigbluebutton/api")

	// Validation failures redirect to the logout URL (the server's own URL
	// by default) with the one violation bbb-web reports, whatever redirect
	// says.
	for q, want := range map[string][2]string{
		// An unknown meeting breaks three constraints; bbb-web's HashMap
		// reports meetingForciblyEnded, as a real server did (#20178).
		"meetingID=nosuch&fullName=Bob&password=ap":                       {"meetingForciblyEnded", "You can not join a meeting that has already been forcibly ended"},
		"meetingID=nosuch&fullName=Bob&role=viewer&redirect=false":        {"meetingForciblyEnded", "You can not join a meeting that has already been forcibly ended"},
		"fullName=Bob&password=ap":                                        {"meetingForciblyEnded", "You can not join a meeting that has already been forcibly ended"},
		"meetingID=room&fullName=&password=ap":                            {"missingParamFullName", "You must provide your name"},
		"meetingID=room&fullName=+&password=ap&redirect=false":            {"missingParamFullName", "You must provide your name"},
		"meetingID=room&password=ap":                                      {"missingParamFullName", "You must provide your name"},
		"meetingID=nosuch&fullName=&password=ap":                          {"missingParamFullName", "You must provide your name"},
		"meetingID=room&fullName=Bob&password=a":                          {"invalidPassword", "Invalid password"},
		"meetingID=room&fullName=Bob&password=ap&guest=yes":               {"validationError", "Guest must be a boolean value (true or false)"},
		"meetingID=room&fullName=Bob&password=ap&auth=2":                  {"validationError", "Auth must be a boolean value (true or false)"},
		"meetingID=room&fullName=Bob&password=ap&createTime=soon":         {"validationError", "Value must be an integral number"},
		"meetingID=room&fullName=Bob&password=" + strings.Repeat("p", 65): {"invalidPassword", "Invalid password"},
	} {
		loc, errs := joinErrors(t, c.get("join", q))
		if loc.Scheme+"://"+loc.Host != server || strings.Trim(loc.Path, "/") != "" ||
			errs[0]["key"] != want[0] || errs[0]["message"] != want[1] {
			t.Errorf("join?%s: redirect to %s, want %v", q, loc, want)
		}
	}
	// The errors are written as bbb-web's org.json and java.net.URI do.
	a := c.get("join", "meetingID=nosuch&fullName=Bob&password=ap")
	if want := server + "?errors=[%7B%22message%22:%22You%20can%20not%20join%20a%20meeting%20that%20has%20already%20been%20forcibly%20ended%22,%22key%22:%22meetingForciblyEnded%22%7D]"; a.header.Get("Location") != want {
		t.Errorf("Location %s\nwant     %s", a.header.Get("Location"), want)
	}
	// A bad checksum is a validation failure of join's too.
	bad := client{t: t, base: c.base, secret: "wrong"}
	if _, errs := joinErrors(t, bad.get("join", "meetingID=room&fullName=Bob&password=ap&redirect=false")); errs[0]["key"] != "checksumError" {
		t.Errorf("join with a bad checksum: %v", errs)
	}
	// errorRedirectUrl, else logoutURL (its %%…%% tokens emptied), is where
	// the redirect goes; its own query stays.
	for q, want := range map[string]string{
		"&logoutURL=" + url.QueryEscape("https://lms.example/out?u=%%USERID%%"):                                  "https://lms.example/out?u=&errors=",
		"&logoutURL=https%3A%2F%2Flms.example%2F&errorRedirectUrl=" + url.QueryEscape("https://lms.example/err"): "https://lms.example/err?errors=",
	} {
		a := c.get("join", "meetingID=nosuch&fullName=Bob&password=ap"+q)
		if loc := a.header.Get("Location"); !strings.HasPrefix(loc, want) {
			t.Errorf("join …%s: redirect to %s, want %s…", q, loc, want)
		}
	}
	// The default target is the server's page.
	if home := fetch(t, "GET", server+"/?errors=x", "", ""); home.status != 200 {
		t.Errorf("the server's page: HTTP %d", home.status)
	}

	// Neither a valid role nor a matching password: FAILED XML with the
	// messageKey "Params required", even when redirecting.
	for q, msg := range map[string]string{
		"meetingID=room&fullName=Bob&password=wrong":            "You must enter a valid password",
		"meetingID=room&fullName=Bob&password=wrong&role=chief": "You must enter a valid password",
		"meetingID=room&fullName=Bob":                           "You must either send the valid role of the user, or the password, sould the meeting has one.",
		"meetingID=room&fullName=Bob&role=admin&redirect=false": "You must either send the valid role of the user, or the password, sould the meeting has one.",
	} {
		if e := c.get("join", q); e.status != 200 || e.returncode() != "FAILED" || e.key() != "Params required" || e.get("message") != msg {
			t.Errorf("join?%s: HTTP %d %s", q, e.status, e.body)
		}
	}
	// A valid role needs no password and wins over a wrong one.
	for _, q := range []string{"meetingID=room&fullName=Bob&role=VIEWER&redirect=false", "meetingID=room&fullName=Bob&role=moderator&password=wrong&redirect=false"} {
		if e := c.get("join", q); e.key() != "successfullyJoined" {
			t.Errorf("join?%s: %s", q, e.body)
		}
	}

	// createTime mismatch and a full meeting: the redirect, or the FAILED
	// XML with redirect=false.
	c.joinAndLand("meetingID=room&fullName=One&password=ap")
	for q, key := range map[string]string{
		"meetingID=room&fullName=Bob&password=ap&createTime=1": "mismatchCreateTimeParam",
		"meetingID=room&fullName=Two&password=ap":              "maxParticipantsReached",
	} {
		if _, errs := joinErrors(t, c.get("join", q)); errs[0]["key"] != key {
			t.Errorf("join?%s: %v", q, errs)
		}
		if e := c.get("join", q+"&redirect=false"); e.status != 200 || e.returncode() != "FAILED" || e.key() != key {
			t.Errorf("join?%s&redirect=false: HTTP %d %s", q, e.status, e.body)
		}
	}
}

// A raw TCP connection, to see that a hung node still accepts.
func dial(t *testing.T, base string) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return conn
}
