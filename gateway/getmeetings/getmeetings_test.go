package getmeetings

import (
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/internal/fixtures"
)

// cutListing must keep a real getMeetings answer's elements byte for byte,
// dropping other tenants' meetings and showing the client its own ID.
func TestOwnMeetingsOnRealAnswer(t *testing.T) {
	t.Parallel()
	doc := fixtures.BBBResponse(t, "get_meetings.xml")
	els, err := xmlscan.Scan(doc, "meeting", "meetingID")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range els {
		if e.Name == "meetingID" && e.Depth == 4 {
			ids = append(ids, e.Text)
		}
	}
	if len(ids) < 1 {
		t.Fatalf("fixture has no meetings: %v", ids)
	}
	mine := map[string]string{ids[0]: "client-id-<1>"}
	lst := cutListing(doc, time.Now(), func(id string) (string, bool) { ext, ok := mine[id]; return ext, ok })
	if len(lst.Order) != 1 || lst.Order[0] != ids[0] {
		t.Fatalf("listing holds %v, want only %s", lst.Order, ids[0])
	}
	out := string(lst.Meetings[ids[0]])
	if !strings.HasPrefix(out, "<meeting>") || !strings.HasSuffix(out, "</meeting>") {
		t.Fatalf("not a meeting element: %.80s…", out)
	}
	if !strings.Contains(out, "<meetingID>client-id-&lt;1&gt;</meetingID>") {
		t.Fatalf("meetingID not rewritten: %s", out)
	}
	for _, other := range ids[1:] {
		if strings.Contains(out, "<meetingID>"+other+"<") {
			t.Fatalf("another tenant's meeting %s leaked", other)
		}
	}
	// Everything but the ID is as the backend wrote it.
	orig := string(doc)
	start := strings.Index(orig, "<meeting>")
	end := strings.Index(orig, "</meeting>") + len("</meeting>")
	want := strings.Replace(orig[start:end], "<meetingID>"+ids[0]+"</meetingID>", "<meetingID>client-id-&lt;1&gt;</meetingID>", 1)
	if out != want {
		t.Fatalf("element changed beyond its ID:\n%s\nwant\n%s", out, want)
	}
}
