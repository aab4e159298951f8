package fsm

import (
	"errors"
	"strings"
	"testing"
)

// TestUnknownCommandHalts: a log entry of a type this release does not know,
// without FlagSkippable, stops the FSM: the error names the type, the index
// and the fix; the applied index stays before it; nothing applies after it.
func TestUnknownCommandHalts(t *testing.T) {
	t.Parallel()
	f := New()
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "s"})
	before := f.Dump()
	r := f.Apply(7, []byte{0x55, 1, 2})
	if r.Error == nil || r.Error.Code != CodeUnknownCommand {
		t.Fatalf("unknown command: %+v", r)
	}
	h := f.Halted()
	if h == nil || h.Type != 0x55 || h.Index != 7 {
		t.Fatalf("Halted() = %+v", h)
	}
	for _, want := range []string{"type 85 (0x55)", "log entry 7", "upgrade this peer"} {
		if !strings.Contains(h.Error(), want) || !strings.Contains(r.Error.Msg, want) {
			t.Errorf("message %q lacks %q", h.Error(), want)
		}
	}
	if f.AppliedIndex() != 1 {
		t.Fatalf("applied index moved to %d", f.AppliedIndex())
	}
	if r := f.Apply(8, Encode(&AddFrontend{Key: "later", Secret: "s"})); r.Error == nil || r.Error.Code != CodeUnknownCommand {
		t.Fatalf("an entry after the unknown one applied: %+v", r)
	}
	if f.Dump() != before || f.AppliedIndex() != 1 {
		t.Fatal("the state changed after the halt")
	}
}

// TestSkippableUnknownCommandIsSkipped: an unknown type with FlagSkippable
// moves the applied index on and changes nothing.
func TestSkippableUnknownCommandIsSkipped(t *testing.T) {
	t.Parallel()
	f := New()
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "s"})
	before := f.Dump()
	if r := f.Apply(2, []byte{byte(FlagSkippable | 0x55), 1, 2}); !r.Skipped || r.Error != nil {
		t.Fatalf("%+v", r)
	}
	if f.Halted() != nil || f.AppliedIndex() != 2 {
		t.Fatalf("halted %v, applied %d", f.Halted(), f.AppliedIndex())
	}
	if strings.Replace(before, `"applied":1`, `"applied":2`, 1) != f.Dump() {
		t.Fatal("a skipped command changed the state")
	}
}

// TestWithoutCommands: an FSM built as the previous release treats the
// given types as unknown: skips the skippable ones, halts on the others, and
// refuses them before the log as a leader.
func TestWithoutCommands(t *testing.T) {
	t.Parallel()
	old := New(WithoutCommands(CmdReportStreams, CmdSetBackendAdminState))
	if old.Knows(CmdReportStreams) || old.Knows(CmdSetBackendAdminState) || !old.Knows(CmdAddBackend) || New().Knows(0x55) {
		t.Fatal("Knows")
	}
	mustApply(t, old, &AddBackend{ID: "b", URL: "https://b.example", Secret: "s"})
	if r := old.Apply(2, Encode(&ReportStreams{Reports: []StreamReport{{ID: "b", Videos: 3}}})); !r.Skipped {
		t.Fatalf("skippable command the old release does not know: %+v", r)
	}
	if b, _ := old.Backend("b"); b.Videos != 0 {
		t.Fatal("applied anyway")
	}
	if _, err := old.Check(Encode(&ReportStreams{})); err == nil || !strings.Contains(err.Error(), "unknown to the leader") {
		t.Fatalf("an old leader's check of a skippable command it does not know: %v", err)
	}
	if _, err := old.Check(Encode(&SetBackendAdminState{ID: "b", State: AdminReady})); err == nil || !strings.Contains(err.Error(), "unknown to the leader") {
		t.Fatalf("an old leader's check of a command it does not know: %v", err)
	}
	if r := old.Apply(3, Encode(&SetBackendAdminState{ID: "b", State: AdminReady})); r.Error == nil || old.Halted() == nil || old.Halted().Type != CmdSetBackendAdminState {
		t.Fatalf("non-skippable command the old release does not know: %+v", r)
	}
}

// TestCheck: the leader's gate before the log.
func TestCheck(t *testing.T) {
	t.Parallel()
	f := New()
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "s"})
	good := Encode(&AddBackend{ID: "b1", URL: "https://x/bigbluebutton/api/", Secret: "s"})
	for name, data := range map[string][]byte{
		"empty":         {},
		"unknown type":  {0x55, 1, 2},
		"truncated":     good[:len(good)-3],
		"huge length":   {byte(CmdSetPeer), 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad key":       Encode(&AddBackend{ID: "a b", URL: "https://x/", Secret: "s"}),
		"bad URL":       Encode(&AddBackend{ID: "b", URL: "ftp://x/", Secret: "s"}),
		"no secret":     Encode(&AddFrontend{Key: "k"}),
		"bad settings":  Encode(&AddFrontend{Key: "k", Secret: "s", Settings: []byte(`{"nope":1}`)}),
		"patch not obj": Encode(&SetFrontendSettings{Key: "fe", Patch: []byte(`[1]`)}),
		"admin state":   Encode(&SetBackendAdminState{ID: "b", State: AdminDecommissioned}),
		"meeting ID":    Encode(&ClaimMeeting{InternalID: "", MeetingID: "m", Frontend: "fe", BackendID: "b"}),
		"cluster key":   Encode(&SetClusterKey{Key: []byte("short")}),
		"params":        Encode(&SetMeetingParams{InternalID: "m", Params: CreateParams{Query: strings.Repeat("q", MaxCreateQuery+1)}}),
		"token":         Encode(&FailoverMeeting{InternalID: "m"}),
		"peer":          Encode(&SetPeer{}),
	} {
		_, err := f.Check(data)
		var e *Error
		if err == nil || !errors.As(err, &e) || e.Code != CodeInvalid {
			t.Errorf("%s: Check = %v", name, err)
		}
	}
	if c, err := f.Check(append(append([]byte{}, good...), 1, 2)); err != nil || c.(*AddBackend).ID != "b1" {
		t.Fatalf("a known command with an appended field: %v", err)
	}
	// A type the leader does not know is refused even when skippable: the
	// leader cannot check it.
	if _, err := f.Check([]byte{byte(FlagSkippable | 0x55), 1}); err == nil || !strings.Contains(err.Error(), "unknown to the leader") {
		t.Fatalf("a skippable command of a newer release: %v", err)
	}
	// Check judges; it changes nothing.
	if f.AppliedIndex() != 1 || len(f.Backends()) != 0 {
		t.Fatal("Check changed the state")
	}
}
