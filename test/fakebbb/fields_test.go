package fakebbb_test

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// fixtures are real BBB answers (see their README).
const fixtures = "../../testdata/bbb-responses"

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return data
}

// sameShape asserts that our answer has every element (and attribute) path
// of BBB's real answer, and the same returncode and messageKey. Values may
// differ; repeated elements compare by structure.
func sameShape(t *testing.T, name string, ours answer) {
	t.Helper()
	want, err := parseTree(fixture(t, name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if ours.tree == nil {
		t.Fatalf("%s: our answer is not XML: %s", name, ours.body)
	}
	if ours.status != 200 {
		t.Errorf("%s: HTTP %d", name, ours.status)
	}
	if miss := missing(want.paths(), ours.tree.paths()); len(miss) > 0 {
		t.Errorf("%s: our answer lacks %v\n%s", name, miss, ours.body)
	}
	if w, g := want.get("returncode"), ours.returncode(); w != g {
		t.Errorf("%s: returncode %q, BBB says %q", name, g, w)
	}
	if w, g := want.get("messageKey"), ours.key(); w != "" && w != g {
		t.Errorf("%s: messageKey %q, BBB says %q", name, g, w)
	}
}

func sameJSONShape(t *testing.T, name string, ours answer) {
	t.Helper()
	want := jsonPaths(t, fixture(t, name))
	if miss := missing(want, jsonPaths(t, []byte(ours.body))); len(miss) > 0 {
		t.Errorf("%s: our answer lacks %v\n%s", name, miss, ours.body)
	}
}

// The metadata the real getMeetingInfo and getRecordings answers carry
// (Moodle's), so that their paths exist in ours too.
var moodleMeta = url.Values{
	"meta_bbb-context":                   {"Best BBB Developers Club"},
	"meta_bn-origin":                     {"Moodle"},
	"meta_bn-recording-ready-url":        {"http://127.0.0.1:1/moodle/bbb_broker.php?action=recording_ready"},
	"meta_bbb-origin-tag":                {"moodle-mod_bigbluebuttonbn (2015080609)"},
	"meta_bbb-origin-version":            {"3.0.2 (Build: 20160111)"},
	"meta_bbb-origin-server-common-name": {""},
	"meta_bbb-origin-server-name":        {"bigbluebutton.org"},
	"meta_bbb-recording-description":     {""},
	"meta_bbb-recording-name":            {`Bigbluebutton "Mock meeting"`},
	"meta_bbb-recording-tags":            {""},
}

// customData is user data like the real getMeetingInfo answer's.
const customData = "userdata-skipCheck=true&userdata-backgroundColor=%23FF0033&userdata-customStyle=a%3Afocus%7Bcolor%3A%230181eb%7D"

func TestFieldForField(t *testing.T) {
	_, c := startNode(t, "field-secret")

	sameShape(t, "api_version.xml", fetch(t, "GET", c.base, "", ""))

	q := "name=Mock+meeting&meetingID=info-room&attendeePW=ap&moderatorPW=mp&record=true&" + moodleMeta.Encode()
	c.mustOK("create", q)
	sameShape(t, "create_meeting.xml", c.get("create", q)) // duplicate: duplicateWarning
	c.joinAndLand("meetingID=info-room&fullName=Ernie&password=mp&" + customData)
	c.joinAndLand("meetingID=info-room&fullName=Peter&password=ap")
	sameShape(t, "get_meeting_info.xml", c.get("getMeetingInfo", "meetingID=info-room"))
	sameShape(t, "is_meeting_running.xml", c.get("isMeetingRunning", "meetingID=info-room"))
	sameShape(t, "join_meeting.xml", c.get("join", "meetingID=info-room&fullName=Bruce&password=ap&redirect=false"))

	// A parent meeting with a breakout room, as in the real getMeetings.
	parent := c.mustOK("create", "name=Parent&meetingID=parent-room&meta_presenter=Alessandra&meta_endCallbackUrl="+
		url.QueryEscape("http://127.0.0.1:1/ended"))
	c.joinAndLand("meetingID=parent-room&fullName=Barrett&password=" + parent.get("moderatorPW") + "&" + customData)
	c.mustOK("create", "name=Room+1&meetingID=breakout-1&isBreakoutRoom=true&sequence=1&freeJoin=false&meta_bbb-context=Club&parentMeetingID="+
		parent.get("internalMeetingID"))
	c.joinAndLand("meetingID=breakout-1&fullName=Barrett&role=moderator&" + customData)
	sameShape(t, "get_meetings.xml", c.get("getMeetings", ""))
	sameShape(t, "get_meeting_info_with_breakout_rooms.xml", c.get("getMeetingInfo", "meetingID=parent-room"))
	sameShape(t, "get_meeting_info_breakout_room.xml", c.get("getMeetingInfo", "meetingID=breakout-1"))

	_, slides := slidesBody("https://example.org/a.pdf")
	sameShape(t, "insert_document.xml", c.post("insertDocument", "meetingID=info-room", "application/xml", slides))
	sameShape(t, "send_chat_message.xml", c.get("sendChatMessage", "meetingID=info-room&message=hello"))
	sameShape(t, "send_chat_message_failed.xml", c.get("sendChatMessage", "meetingID=no-such-room&message=hello"))

	sameShape(t, "end_meeting.xml", c.get("end", "meetingID=info-room&password=mp"))
	recs := c.mustOK("getRecordings", "meetingID=info-room")
	sameShape(t, "get_recordings.xml", recs)
	sameShape(t, "get_recordings_no_recordings.xml", c.get("getRecordings", "meetingID=no-such-room"))
	id := recs.get("recordings/recording/recordID")

	ct, body := multipartBody(t, "file", "en.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n")
	sameJSONShape(t, "put_recording_text_track_success.json",
		fetch(t, "POST", c.url("putRecordingTextTrack", "recordID="+id+"&kind=captions&lang=en-US&label=English"), ct, body))
	sameJSONShape(t, "get_recording_text_tracks.json", c.get("getRecordingTextTracks", "recordID="+id))

	sameShape(t, "publish_recordings.xml", c.get("publishRecordings", "recordID="+id+"&publish=true"))
	sameShape(t, "publish_recordings_not_found.xml", c.get("publishRecordings", "recordID=nosuch&publish=true"))
	sameShape(t, "update_recordings.xml", c.get("updateRecordings", "recordID="+id+"&meta_presenter=Jane"))
	sameShape(t, "update_recordings_not_found.xml", c.get("updateRecordings", "recordID=nosuch&meta_presenter=Jane"))
	sameShape(t, "delete_recordings.xml", c.get("deleteRecordings", "recordID="+id))
	sameShape(t, "delete_recordings_not_found.xml", c.get("deleteRecordings", "recordID="+id))
}
