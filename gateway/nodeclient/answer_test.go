package nodeclient

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/internal/fixtures"
)

// ParseAnswer reads the same envelope as encoding/xml (the gateway's first
// implementation) from every real answer, and refuses what is not a BBB
// <response>.
func TestParseAnswerMatchesEncodingXML(t *testing.T) {
	t.Parallel()
	for name, doc := range fixtures.BBBResponses(t) {
		var want struct {
			XMLName xml.Name `xml:"response"`
			bbb.Envelope
		}
		werr := xml.Unmarshal(doc, &want)
		got, _, gerr := ParseAnswer(doc)
		if (werr == nil) != (gerr == nil) || got != want.Envelope {
			t.Fatalf("%s: got %+v (%v), want %+v (%v)", name, got, gerr, want, werr)
		}
	}
	for _, doc := range []string{"<html><body>502</body></html>", "not xml", "<response><returncode>SUCCESS</returncode>"} {
		if _, _, err := ParseAnswer([]byte(doc)); err == nil {
			t.Errorf("%q accepted", doc)
		}
	}
}

// A hostile answer nesting ID elements cannot make the rewrite cut the
// document out of order.
func TestShowMeetingIDsNestedIDElements(t *testing.T) {
	t.Parallel()
	doc := []byte("<response><returncode>SUCCESS</returncode><meetingName>fe~m<meetingID>fe~m</meetingID></meetingName></response>")
	_, els, err := ParseAnswer(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := string(ShowMeetingIDs(doc, els, "fe~m", "m"))
	if want := "<response><returncode>SUCCESS</returncode><meetingName>fe~m<meetingID>m</meetingID></meetingName></response>"; got != want {
		t.Fatalf("got %s", got)
	}
}

func TestRewriteMeetingIDsOnlyExactMatch(t *testing.T) {
	t.Parallel()
	doc := fixtures.BBBResponses(t)["create_meeting.xml"]
	els, _ := xmlscan.Scan(doc, "meetingID")
	if len(els) != 1 {
		t.Fatalf("create fixture meetingIDs: %d", len(els))
	}
	got := string(RewriteMeetingIDs(doc, els[0].Text, "mine"))
	if !strings.Contains(got, "<meetingID>mine</meetingID>") || strings.Count(got, "<meetingID>") != 1 {
		t.Fatalf("%s", got)
	}
	if string(RewriteMeetingIDs(doc, "other", "mine")) != string(doc) {
		t.Fatal("a non-matching ID changed the document")
	}
	if string(RewriteMeetingIDs([]byte("<not xml"), "a", "b")) != "<not xml" {
		t.Fatal("garbage was changed")
	}
}
