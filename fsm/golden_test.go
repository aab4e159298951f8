package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Golden bytes: every command type encoded once, and a snapshot, kept in
// testdata. They are the log and snapshot formats of released peers: every
// later release must decode them to the same values (codec.go's append-only
// rule). -update rewrites them from the current code; never in CI, and
// never to make a changed encoding pass.
var update = flag.Bool("update", false, "rewrite fsm/testdata's golden commands and snapshot (never in CI)")

// goldenCommands has one command of every type, each field set.
func goldenCommands() map[string]Command {
	return map[string]Command{
		"AddBackend":           &AddBackend{ID: "bbb1", URL: "https://bbb1.example.org/bigbluebutton/api/", Secret: "s3cret", Settings: []byte(`{"tags":["a"],"load_factor":2}`), Now: 1700000000000000001, IfAbsent: true},
		"SetBackendSettings":   &SetBackendSettings{ID: "bbb1", Patch: []byte(`{"load_factor":null}`)},
		"SetBackendAdminState": &SetBackendAdminState{ID: "bbb1", State: AdminReady, Now: 1700000000000000002},
		"RemoveBackend":        &RemoveBackend{ID: "bbb1", Force: true, Now: 1700000000000000003},
		"ReportBackends": &ReportBackends{Now: 1700000000000000004, Reports: []BackendReport{
			{ID: "bbb1", NodeState: NodeReady, Meetings: 3, Attendees: 40, LatencyNs: 1500000, Error: ""},
			{ID: "bbb2", NodeState: NodeError, Meetings: -1, Attendees: 0, LatencyNs: 0, Error: "timeout"}}},
		"AddFrontend":         &AddFrontend{Key: "moodle", Secret: "fsecret", Settings: []byte(`{"required_tags":["a"]}`), Now: 1700000000000000005},
		"SetFrontendSettings": &SetFrontendSettings{Key: "moodle", Patch: []byte(`{"create_default_params":{"record":"true"}}`)},
		"RemoveFrontend":      &RemoveFrontend{Key: "moodle"},
		"ClaimMeeting":        &ClaimMeeting{InternalID: "moodle~m1", Frontend: "moodle", MeetingID: "m1", BackendID: "bbb1", Now: 1700000000000000006},
		"ReleaseMeetings":     &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "moodle~m1", BackendID: "bbb1"}, {InternalID: "moodle~m2"}}, CreatedAt: []int64{1700000000000000006, 0}},
		"SetPeer":             &SetPeer{ID: "p1", RaftAddr: "10.0.0.1:42354", HTTPAddr: "10.0.0.1:42353", GossipAddr: "10.0.0.1:42355"},
		"RemovePeer":          &RemovePeer{ID: "p2"},
		"PutRecordings": &PutRecordings{Recordings: []Recording{{RecordID: "rec1", Frontend: "moodle", MeetingID: "m1", InternalID: "moodle~m1",
			BackendID: "bbb1", State: "published", StartTime: 1700000000000, Meta: map[string]string{"b": "2", "a": "1"}, XML: "<recording/>"}}},
		"DropRecordings": &DropRecordings{BackendID: "bbb1", RecordIDs: []string{"rec1", "rec2"}},
		"SetClusterKey":  &SetClusterKey{Key: []byte("0123456789abcdef0123456789abcdef")},
		"SetMeetingParams": &SetMeetingParams{InternalID: "moodle~m1", BackendID: "bbb1", Params: CreateParams{
			Query: "meetingID=moodle~m1&name=x", Slides: "<modules/>", SlidesType: "application/xml", SlidesLost: true,
			ClientBridge: true, AttendeePW: "ap", ModeratorPW: "mp", CreateTime: 1700000000123}},
		"FailoverMeeting":        &FailoverMeeting{InternalID: "moodle~m1", FromBackend: "bbb1", ToBackend: "bbb2", Token: "tok", Now: 1700000000000000007},
		"MeetingRecreated":       &MeetingRecreated{InternalID: "moodle~m1", BackendID: "bbb2", Token: "tok", Now: 1700000000000000008},
		"MarkMeetingsLost":       &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "moodle~m1", BackendID: "bbb1"}}, Now: 1700000000000000009},
		"MarkCentral":            &MarkCentral{RecordID: "rec1", Copy: CentralCopy{Format: "presentation", Bytes: 1234567, Files: 12, Version: "0123456789abcdef0123456789abcdef"}},
		"SetRecordingsPublished": &SetRecordingsPublished{RecordIDs: []string{"rec1", "rec2"}, Published: true},
		"ReportStreams":          &ReportStreams{Reports: []StreamReport{{ID: "bbb1", Videos: 12, Voice: 7}}},
	}
}

func TestGoldenCommands(t *testing.T) {
	t.Parallel()
	cmds := goldenCommands()
	covered := map[CmdType]bool{}
	for name, c := range cmds {
		path := filepath.Join("testdata", "commands", name+".bin")
		if *update {
			if err := os.WriteFile(path, Encode(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run with -update once for a new command)", name, err)
		}
		if CmdType(data[0]) != c.Type() || covered[c.Type()] {
			t.Fatalf("%s: type byte %d, want %d (once)", name, data[0], c.Type())
		}
		covered[c.Type()] = true
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%s decodes to\n%#v\nwant\n%#v", name, got, c)
		}
		if !bytes.Equal(Encode(got), data) {
			t.Errorf("%s: the encoding changed:\n%x\nkept\n%x", name, Encode(got), data)
		}
		// A field a later release appends is ignored.
		if more, err := Decode(append(append([]byte{}, data...), 0x01, 0x02)); err != nil || !reflect.DeepEqual(more, c) {
			t.Errorf("%s with an appended field: %v", name, err)
		}
	}
	for t0 := 0; t0 < 256; t0++ {
		if c := newCommand(CmdType(t0)); c != nil && !covered[CmdType(t0)] {
			t.Errorf("command type %d (%T) has no golden bytes in testdata/commands", t0, c)
		}
	}
}

// goldenState builds the state kept as the golden snapshot.
func goldenState(t *testing.T) *FSM {
	f := New()
	readyBackend(t, f, "bbb1")
	readyBackend(t, f, "bbb2")
	for _, c := range []Command{
		&SetClusterKey{Key: []byte("0123456789abcdef0123456789abcdef")},
		&SetBackendSettings{ID: "bbb1", Patch: []byte(`{"tags":["big"],"load_factor":1.5}`)},
		&ReportStreams{Reports: []StreamReport{{ID: "bbb1", Videos: 3, Voice: 1}}},
		&AddFrontend{Key: "moodle", Secret: "ms", Settings: []byte(`{"create_override_params":{"muteOnStart":"true"},"default_presentation":{"url":"https://x.example/d.pdf","force":true}}`), Now: 5},
		&ClaimMeeting{InternalID: "moodle~m1", Frontend: "moodle", MeetingID: "m1", BackendID: "bbb1", Now: 6},
		&ClaimMeeting{InternalID: "moodle~m2", Frontend: "moodle", MeetingID: "m2", BackendID: "bbb1", Now: 7},
		&SetMeetingParams{InternalID: "moodle~m1", BackendID: "bbb1", Params: CreateParams{Query: "meetingID=moodle~m1", AttendeePW: "ap", ModeratorPW: "mp", CreateTime: 99}},
		&MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: "moodle~m2", BackendID: "bbb1"}}, Now: 8},
		&FailoverMeeting{InternalID: "moodle~m2", FromBackend: "bbb1", ToBackend: "bbb2", Token: "tok", Now: 9},
		&SetPeer{ID: "p1", RaftAddr: "10.0.0.1:42354", HTTPAddr: "10.0.0.1:42353", GossipAddr: "10.0.0.1:42355"},
		&PutRecordings{Recordings: []Recording{{RecordID: "rec1", Frontend: "moodle", MeetingID: "m1", InternalID: "moodle~m1",
			BackendID: "bbb1", State: "published", StartTime: 1700000000000, Meta: map[string]string{"course": "7"}, XML: "<recording/>"}}},
	} {
		mustApply(t, f, c)
	}
	return f
}

func TestGoldenSnapshot(t *testing.T) {
	t.Parallel()
	current := filepath.Join("testdata", fmt.Sprintf("snapshot-v%d.jsonl", snapshotVersion))
	if *update {
		if err := os.WriteFile(current, []byte(goldenState(t).Dump()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	paths, _ := filepath.Glob(filepath.Join("testdata", "snapshot-v*.jsonl"))
	if len(paths) == 0 {
		t.Fatal("no golden snapshot (run with -update once)")
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f := New()
		if err := f.Restore(bytes.NewReader(data)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		// What every version's snapshot holds.
		b, _ := f.Backend("bbb1")
		m1, _ := f.Meeting("moodle~m1")
		m2, _ := f.Meeting("moodle~m2")
		fe, _ := f.Frontend("moodle")
		r, _ := f.Recording("rec1")
		p, _ := f.Peer("p1")
		switch {
		case b.URL != "https://bbb1.example/bigbluebutton/api/" || b.LoadFactor() != 1.5 || b.Videos != 3 || b.NodeState != NodeReady || b.AdminState != AdminReady:
			t.Errorf("%s: backend %+v", path, b)
		case m1.BackendID != "bbb1" || m1.Create == nil || m1.Create.ModeratorPW != "mp" || m1.Create.CreateTime != 99 || m1.VoiceBridge == 0:
			t.Errorf("%s: meeting %+v", path, m1)
		case m2.BackendID != "bbb2" || m2.Recreating != 9 || m2.RecreateToken != "tok" || m2.Lost:
			t.Errorf("%s: failed-over meeting %+v", path, m2)
		case fe.Settings.CreateOverrideParams["muteOnStart"] != "true" || !fe.Settings.DefaultPresentation.Force:
			t.Errorf("%s: frontend %+v", path, fe)
		case r.Meta["course"] != "7" || p.GossipAddr != "10.0.0.1:42355" || string(f.ClusterKey()) != "0123456789abcdef0123456789abcdef":
			t.Errorf("%s: recording %+v, peer %+v", path, r, p)
		case f.AppliedIndex() == 0 || len(f.MeetingsOn("bbb2")) != 1:
			t.Errorf("%s: applied %d, derived index %v", path, f.AppliedIndex(), f.MeetingCounts())
		}
		assertIndexConsistent(t, f)
		// The current version round-trips byte for byte.
		if path == current && f.Dump() != string(data) {
			t.Errorf("%s: written again differs:\n%s", path, f.Dump())
		}
		if path == current && !strings.HasPrefix(string(data), fmt.Sprintf(`{"version":%d,`, snapshotVersion)) {
			t.Errorf("%s: header %.60s", path, data)
		}
	}
}

// ReleaseMeetings as releases before CreatedAt wrote it (the golden bytes
// of then) decodes to the same release of any instance, and encodes back
// to the same bytes.
func TestReleaseMeetingsOfBeforeCreatedAt(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "commands", "ReleaseMeetings-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "moodle~m1", BackendID: "bbb1"}, {InternalID: "moodle~m2"}}}
	got, err := Decode(data)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v, %v", got, err)
	}
	if !bytes.Equal(Encode(want), data) {
		t.Fatal("a release without CreatedAt no longer encodes as before")
	}
}
