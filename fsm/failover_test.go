package fsm

import (
	"bytes"
	"strings"
	"testing"
)

func failoverState(t *testing.T) *FSM {
	f := New()
	for _, id := range []string{"a", "b", "c"} {
		readyBackend(t, f, id)
	}
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "x"})
	mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a", Now: 1})
	mustApply(t, f, &SetMeetingParams{InternalID: "fe~m", BackendID: "a", Params: CreateParams{
		Query: "meetingID=fe~m&meta_x=1", AttendeePW: "ap", ModeratorPW: "mp", CreateTime: 42}})
	return f
}

func TestFailoverCommandsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Command{
		&SetMeetingParams{InternalID: "fe~m", BackendID: "a", Params: CreateParams{Query: "q", Slides: "<x/>", SlidesType: "text/xml",
			SlidesLost: true, ClientBridge: true, AttendeePW: "ap", ModeratorPW: "mp", CreateTime: 7}},
		&FailoverMeeting{InternalID: "fe~m", FromBackend: "a", ToBackend: "b", Token: "t", Now: 9},
		&MeetingRecreated{InternalID: "fe~m", BackendID: "b", Token: "t", Now: 10},
		&MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, Now: 11},
	} {
		data := Encode(c)
		if data[0]&byte(FlagSkippable) == 0 {
			t.Errorf("%T is not skippable: older peers could not skip it", c)
		}
		d, err := Decode(data)
		if err != nil || !bytes.Equal(Encode(d), data) {
			t.Fatalf("%T does not round-trip: %v", c, err)
		}
		// A field a later release appended is ignored (codec.go).
		if d, err := Decode(append(data, 0)); err != nil || !bytes.Equal(Encode(d), data) {
			t.Errorf("%T with a trailing byte: %v", c, err)
		}
	}
}

// TestFailoverFirstClaimWins: of many failover claims for one meeting on a
// dead backend, the first in the log moves it; the others get the new
// binding back, Recreating until the winner's marker.
func TestFailoverFirstClaimWins(t *testing.T) {
	t.Parallel()
	f := failoverState(t)
	// A live binding is not taken over.
	if r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "a", ToBackend: "b", Token: "t0", Now: 2}); r.Created || r.Meeting.BackendID != "a" {
		t.Fatalf("failover from a live backend: %+v", r)
	}
	mustApply(t, f, &ReportBackends{Reports: []BackendReport{{ID: "a", NodeState: NodeError}}})
	r1 := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "a", ToBackend: "b", Token: "t1", Now: 3})
	r2 := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "a", ToBackend: "c", Token: "t2", Now: 3})
	if !r1.Created || r1.PreviousBackend != "a" || r1.Meeting.BackendID != "b" || r2.Created || r2.Meeting.BackendID != "b" {
		t.Fatalf("first claim must win: %+v / %+v", r1.Meeting, r2.Meeting)
	}
	m, _ := f.Meeting("fe~m")
	if m.Recreating != 3 || !m.Down() || m.Create == nil || m.Create.ModeratorPW != "mp" {
		t.Fatalf("moved meeting: %+v", m)
	}
	// A claim naming the new backend is refused while the re-creation is
	// fresh; a marker with another token changes nothing.
	if r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "b", ToBackend: "c", Token: "t2", Now: 4}); r.Created {
		t.Fatal("a fresh re-creation was taken over")
	}
	mustApply(t, f, &MeetingRecreated{InternalID: "fe~m", BackendID: "b", Token: "t2", Now: 5})
	if m, _ := f.Meeting("fe~m"); m.Recreating == 0 {
		t.Fatal("another claimant's marker confirmed the re-creation")
	}
	// The winner may move its own claim on (its create failed there).
	if r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "b", ToBackend: "c", Token: "t1", Now: 6}); !r.Created || r.Meeting.BackendID != "c" {
		t.Fatalf("the winner could not move its own claim: %+v", r)
	}
	// A winner that died: after RecreateStale, another claim takes over.
	if r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "c", ToBackend: "b", Token: "t3", Now: 6 + RecreateStale - 1}); r.Created {
		t.Fatal("taken over before RecreateStale")
	}
	if r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "c", ToBackend: "b", Token: "t3", Now: 6 + RecreateStale}); !r.Created {
		t.Fatal("a stale re-creation was not taken over")
	}
	mustApply(t, f, &MeetingRecreated{InternalID: "fe~m", BackendID: "b", Token: "t3", Now: 7 + RecreateStale})
	m, _ = f.Meeting("fe~m")
	if m.Down() || m.Recreations != 1 || m.RecreatedAt != 7+RecreateStale || m.Create.CreateTime != 42 {
		t.Fatalf("after the marker: %+v", m)
	}
	assertIndexConsistent(t, f)
}

// TestLostMeetingRecreatedInPlace: a meeting its live node no longer lists
// is marked lost, and a failover claim may re-create it on that same node.
func TestLostMeetingRecreatedInPlace(t *testing.T) {
	t.Parallel()
	f := failoverState(t)
	mustApply(t, f, &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}, {InternalID: "fe~x", BackendID: "a"}}, Now: 5})
	m, _ := f.Meeting("fe~m")
	if !m.Lost || m.LostAt != 5 {
		t.Fatalf("not lost: %+v", m)
	}
	before := m.VoiceBridge
	r := mustApply(t, f, &FailoverMeeting{InternalID: "fe~m", FromBackend: "a", ToBackend: "a", Token: "t", Now: 6})
	if !r.Created || r.Meeting.BackendID != "a" || r.Meeting.Lost || r.Meeting.VoiceBridge != before {
		t.Fatalf("lost meeting not re-claimed in place: %+v", r.Meeting)
	}
	// A successful create through the API clears Lost too.
	mustApply(t, f, &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, Now: 7}) // recreating: ignored
	if m, _ := f.Meeting("fe~m"); m.Lost {
		t.Fatal("a meeting being re-created was marked lost")
	}
	mustApply(t, f, &MeetingRecreated{InternalID: "fe~m", BackendID: "a", Token: "t", Now: 8})
	mustApply(t, f, &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, Now: 9})
	mustApply(t, f, &SetMeetingParams{InternalID: "fe~m", BackendID: "a", Params: CreateParams{Query: "q", CreateTime: 99}})
	if m, _ := f.Meeting("fe~m"); m.Lost || m.Create.CreateTime != 42 {
		t.Fatalf("after a create: %+v", m)
	}
	assertIndexConsistent(t, f)
}

// TestMeetingParamsBounded: oversized parameters are refused when applied,
// whoever proposed them; what is stored stays within the bounds.
func TestMeetingParamsBounded(t *testing.T) {
	t.Parallel()
	f := failoverState(t)
	for _, p := range []CreateParams{
		{Query: strings.Repeat("q", MaxCreateQuery+1)},
		{Query: "q", Slides: strings.Repeat("s", MaxCreateSlides+1)},
		{Query: "q", AttendeePW: strings.Repeat("p", 257)},
	} {
		if r := f.ApplyCommand(f.AppliedIndex()+1, &SetMeetingParams{InternalID: "fe~m", BackendID: "a", Params: p}); r.Error == nil {
			t.Fatalf("oversized params accepted (%d bytes)", p.Size())
		}
	}
	// Params for a meeting bound elsewhere (moved meanwhile) are refused.
	if r := f.ApplyCommand(f.AppliedIndex()+1, &SetMeetingParams{InternalID: "fe~m", BackendID: "b", Params: CreateParams{Query: "q"}}); r.Error == nil {
		t.Fatal("params for another binding accepted")
	}
	mustApply(t, f, &SetMeetingParams{InternalID: "fe~m", BackendID: "a", Params: CreateParams{
		Query: strings.Repeat("q", MaxCreateQuery), Slides: strings.Repeat("s", MaxCreateSlides)}})
	total := 0
	for _, m := range f.Meetings("") {
		total += m.Create.Size()
	}
	if total > MaxCreateQuery+MaxCreateSlides+2*maxPasswordLen+maxContentType {
		t.Fatalf("%d bytes stored for one meeting", total)
	}
}

// TestFailoverSnapshotCompatible: the new fields survive a snapshot, and a
// snapshot without them (older peers) restores.
func TestFailoverSnapshotCompatible(t *testing.T) {
	t.Parallel()
	f := failoverState(t)
	mustApply(t, f, &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, Now: 5})
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if g.Dump() != f.Dump() {
		t.Fatal("snapshot lost failover fields")
	}
	m, _ := g.Meeting("fe~m")
	if !m.Lost || m.Create == nil || m.Create.AttendeePW != "ap" {
		t.Fatalf("restored: %+v", m)
	}
	old := New()
	readyBackend(t, old, "a")
	mustApply(t, old, &AddFrontend{Key: "fe", Secret: "x"})
	mustApply(t, old, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a", Now: 1})
	dump := old.Dump()
	if strings.Contains(dump, `"create":`) || strings.Contains(dump, `"lost`) || strings.Contains(dump, `"recreat`) {
		t.Fatalf("a meeting without failover data writes new fields: %s", dump)
	}
}
