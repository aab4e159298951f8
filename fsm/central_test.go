package fsm

import (
	"strings"
	"testing"
)

// A central copy survives what a node's listing says: a sync's put keeps
// it, a sync's drop (the node deleted its local files) keeps the
// recording, and only a client's delete (no backend named) removes it.
func TestCentralCopySurvivesTheNode(t *testing.T) {
	t.Parallel()
	f := New()
	idx := uint64(0)
	apply := func(c Command) *Result { t.Helper(); idx++; return f.Apply(idx, Encode(c)) }
	xml := "<recording><recordID>r1</recordID><published>true</published><state>published</state><metadata><state>x</state></metadata></recording>"
	apply(&PutRecordings{Recordings: []Recording{{RecordID: "r1", Frontend: "fe", BackendID: "b1", State: "published", XML: xml},
		{RecordID: "r2", Frontend: "fe", BackendID: "b1", State: "published", XML: "<recording/>"}}})
	if r := apply(&MarkCentral{RecordID: "nope", Copy: CentralCopy{Format: "video"}}); r.Error == nil || r.Error.Code != CodeNotFound {
		t.Fatalf("an unknown recording marked central: %v", r.Error)
	}
	apply(&MarkCentral{RecordID: "r1", Copy: CentralCopy{Format: "video", Bytes: 10, Files: 3, Version: "v1"}})
	apply(&MarkCentral{RecordID: "r1", Copy: CentralCopy{Format: "presentation", Bytes: 5, Files: 1, Version: "p1"}})
	if res := apply(&MarkCentral{RecordID: "r1", Copy: CentralCopy{Format: "video", Bytes: 11, Files: 3, Version: "v2"}}); res.PreviousCopy != "v1" {
		t.Fatalf("a replaced copy's version: %q", res.PreviousCopy) // the caller deletes its files
	}
	if res := apply(&MarkCentral{RecordID: "r1", Copy: CentralCopy{Format: "video", Bytes: 11, Files: 3, Version: "v2"}}); res.PreviousCopy != "" {
		t.Fatalf("the same copy marked again names a previous one: %q", res.PreviousCopy)
	}
	r, _ := f.Recording("r1")
	if len(r.Central) != 2 || r.Central[0].Format != "presentation" || r.Central[1].Bytes != 11 {
		t.Fatalf("central copies %+v", r.Central)
	}
	apply(&PutRecordings{Recordings: []Recording{{RecordID: "r1", Frontend: "fe", BackendID: "b1", State: "published", XML: xml + " "}}})
	if r, _ := f.Recording("r1"); len(r.Central) != 2 {
		t.Fatal("a sync's put forgot the central copies")
	}
	// Another node listing the same record ID cannot take the copy over.
	apply(&PutRecordings{Recordings: []Recording{{RecordID: "r1", Frontend: "other", BackendID: "b2", State: "published", XML: "<recording/>"}}})
	if r, _ := f.Recording("r1"); r.BackendID != "b1" || r.Frontend != "fe" || len(r.Central) != 2 {
		t.Fatalf("another node took a central recording over: %+v", r)
	}
	apply(&DropRecordings{BackendID: "b1", RecordIDs: []string{"r1", "r2"}})
	if _, ok := f.Recording("r1"); !ok {
		t.Fatal("a sync's drop removed a recording that plays from central storage")
	}
	if _, ok := f.Recording("r2"); ok {
		t.Fatal("a sync's drop kept a recording with no central copy")
	}
	apply(&SetRecordingsPublished{RecordIDs: []string{"r1"}, Published: false})
	r, _ = f.Recording("r1")
	if r.State != "unpublished" || !strings.Contains(r.XML, "<published>false</published><state>unpublished</state>") ||
		!strings.Contains(r.XML, "<metadata><state>x</state></metadata>") {
		t.Fatalf("unpublished in the index: %s %s", r.State, r.XML)
	}
	apply(&DropRecordings{RecordIDs: []string{"r1"}})
	if _, ok := f.Recording("r1"); ok {
		t.Fatal("a client's delete kept the recording")
	}
	// A recording put anew after its delete starts with no central copy.
	apply(&PutRecordings{Recordings: []Recording{{RecordID: "r1", Frontend: "fe", BackendID: "b1", State: "published", XML: xml}}})
	if r, _ := f.Recording("r1"); len(r.Central) != 0 {
		t.Fatal("a new recording inherited central copies")
	}
}
