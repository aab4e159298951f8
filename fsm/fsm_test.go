package fsm

import (
	"bytes"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
)

// randomCommand draws from a small pool of names so commands collide: the
// interesting paths (exists, claim races, release of re-placed meetings) run.
func randomCommand(r *rand.Rand, now int64) Command {
	be := fmt.Sprintf("b%d", r.Intn(5))
	fe := fmt.Sprintf("f%d", r.Intn(3))
	mid := fmt.Sprintf("m%d", r.Intn(20))
	switch r.Intn(16) {
	case 0:
		return &AddBackend{ID: be, URL: fmt.Sprintf("https://%s.example.org/bigbluebutton/api/", be), Secret: "s", Now: now,
			Settings: []byte(`{"tags":["t` + fmt.Sprint(r.Intn(3)) + `"]}`), IfAbsent: r.Intn(2) == 0}
	case 1:
		patches := []string{`{"load_factor":2}`, `{"load_factor":null}`, `{"tags":null}`, `{"bogus":1}`, `[]`}
		return &SetBackendSettings{ID: be, Patch: []byte(patches[r.Intn(len(patches))])}
	case 2:
		states := []AdminState{AdminReady, AdminReady, AdminStopped, AdminInit, "weird"}
		return &SetBackendAdminState{ID: be, State: states[r.Intn(len(states))], Now: now}
	case 3:
		return &RemoveBackend{ID: be, Force: r.Intn(2) == 0, Now: now}
	case 4:
		states := []NodeState{NodeReady, NodeReady, NodeError, "bad"}
		return &ReportBackends{Now: now, Reports: []BackendReport{{ID: be, NodeState: states[r.Intn(len(states))],
			Meetings: int64(r.Intn(9)), Attendees: int64(r.Intn(99)), LatencyNs: int64(r.Intn(1e6))}}}
	case 5:
		return &AddFrontend{Key: fe, Secret: "fs" + fe, Now: now}
	case 6:
		return &SetFrontendSettings{Key: fe, Patch: []byte(`{"create_default_params":{"record":"true"},"required_tags":["t1"]}`)}
	case 7:
		return &RemoveFrontend{Key: fe}
	case 8, 9:
		return &ClaimMeeting{InternalID: fe + "~" + mid, Frontend: fe, MeetingID: mid, BackendID: be, Now: now}
	case 10:
		ref := MeetingRef{InternalID: fe + "~" + mid}
		if r.Intn(2) == 0 {
			ref.BackendID = be
		}
		return &ReleaseMeetings{Meetings: []MeetingRef{ref}}
	case 11:
		if r.Intn(3) == 0 {
			return &DropRecordings{BackendID: be, RecordIDs: []string{fmt.Sprintf("r%d", r.Intn(10))}}
		}
		return &PutRecordings{Recordings: []Recording{{RecordID: fmt.Sprintf("r%d", r.Intn(10)), Frontend: fe, MeetingID: mid,
			InternalID: fe + "~" + mid, BackendID: be, State: "published", StartTime: now, Meta: map[string]string{"a": "b"}, XML: "<recording/>"}}}
	case 13:
		return &SetMeetingParams{InternalID: fe + "~" + mid, BackendID: be, Params: CreateParams{Query: "meetingID=" + fe + "~" + mid,
			AttendeePW: "ap", ModeratorPW: "mp", CreateTime: now, SlidesLost: r.Intn(2) == 0}}
	case 14:
		return &FailoverMeeting{InternalID: fe + "~" + mid, FromBackend: be, ToBackend: fmt.Sprintf("b%d", r.Intn(5)),
			Token: fmt.Sprint("t", r.Intn(3)), Now: now * int64(r.Intn(3)+1) * 1e9}
	case 15:
		if r.Intn(2) == 0 {
			return &MeetingRecreated{InternalID: fe + "~" + mid, BackendID: be, Token: fmt.Sprint("t", r.Intn(3)), Now: now}
		}
		return &MarkMeetingsLost{Meetings: []MeetingRef{{InternalID: fe + "~" + mid, BackendID: be}}, Now: now}
	default:
		if r.Intn(2) == 0 {
			return &SetPeer{ID: "p" + fmt.Sprint(r.Intn(3)), RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", GossipAddr: "127.0.0.1:3"}
		}
		return &RemovePeer{ID: "p" + fmt.Sprint(r.Intn(3))}
	}
}

func TestPropertySnapshotRestoreAndReplay(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 40; seed++ {
		r := rand.New(rand.NewSource(seed))
		f := New()
		var log [][]byte
		for i := 0; i < 400; i++ {
			data := Encode(randomCommand(r, int64(i)*1e9))
			log = append(log, data)
			f.Apply(uint64(i+1), data)
			if i%97 == 0 {
				assertRoundTrip(t, f)
			}
		}
		assertRoundTrip(t, f)
		assertIndexConsistent(t, f)

		// Determinism: replaying the same log on a fresh FSM gives the same state.
		g := New()
		for i, data := range log {
			g.Apply(uint64(i+1), data)
		}
		if f.Dump() != g.Dump() {
			t.Fatalf("seed %d: replay differs", seed)
		}
	}
}

func assertRoundTrip(t *testing.T, f *FSM) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if f.Dump() != g.Dump() {
		t.Fatalf("restored state differs:\n%s\nvs\n%s", f.Dump(), g.Dump())
	}
	if fmt.Sprint(f.MeetingCounts()) != fmt.Sprint(g.MeetingCounts()) {
		t.Fatalf("derived meeting counts differ after restore")
	}
}

// The derived per-backend count must always match the meetings map.
func assertIndexConsistent(t *testing.T, f *FSM) {
	t.Helper()
	want := map[string]int{}
	for _, m := range f.Meetings("") {
		want[m.BackendID]++
	}
	if fmt.Sprint(want) != fmt.Sprint(f.MeetingCounts()) {
		t.Fatalf("meeting counts %v, want %v", f.MeetingCounts(), want)
	}
	// Each backend's meeting list is exactly the meetings bound to it.
	f.EachBackend(func(b *Backend, bound int) {
		if bound != want[b.ID] {
			t.Errorf("EachBackend: %s has %d bound, want %d", b.ID, bound, want[b.ID])
		}
	})
	for id, n := range want {
		if got := f.MeetingCount(id); got != n {
			t.Errorf("MeetingCount(%s) = %d, want %d", id, got, n)
		}
	}
	for id := range want {
		on := f.MeetingsOn(id)
		if len(on) != want[id] {
			t.Fatalf("MeetingsOn(%s): %d meetings, want %d", id, len(on), want[id])
		}
		for _, m := range on {
			if got, ok := f.Meeting(m.InternalID); !ok || got.BackendID != id {
				t.Fatalf("MeetingsOn(%s) lists %s, bound to %q", id, m.InternalID, got.BackendID)
			}
		}
	}
	// Voice bridges are unique per backend and the derived set matches.
	bridges := map[string]map[int]bool{}
	for _, m := range f.Meetings("") {
		if bridges[m.BackendID] == nil {
			bridges[m.BackendID] = map[int]bool{}
		}
		if m.VoiceBridge < 10000 || m.VoiceBridge > 99999 || bridges[m.BackendID][m.VoiceBridge] {
			t.Fatalf("voice bridge %d of %s: out of range or taken twice on %s", m.VoiceBridge, m.InternalID, m.BackendID)
		}
		bridges[m.BackendID][m.VoiceBridge] = true
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if fmt.Sprint(bridges) != fmt.Sprint(f.st.bridges) {
		t.Fatalf("derived bridges %v, want %v", f.st.bridges, bridges)
	}
}

// Meetings whose IDs hash to the same bridge still get distinct ones.
func TestVoiceBridgesUniquePerBackend(t *testing.T) {
	t.Parallel()
	f := New()
	readyBackend(t, f, "a")
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "x"})
	seen := map[int]bool{}
	for i := 0; i < 2000; i++ {
		r := mustApply(t, f, &ClaimMeeting{InternalID: fmt.Sprintf("fe~m%d", i), Frontend: "fe", MeetingID: fmt.Sprintf("m%d", i), BackendID: "a"})
		if seen[r.Meeting.VoiceBridge] {
			t.Fatalf("bridge %d given twice", r.Meeting.VoiceBridge)
		}
		seen[r.Meeting.VoiceBridge] = true
	}
	assertIndexConsistent(t, f)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 500; i++ {
		c := randomCommand(r, int64(i))
		data := Encode(c)
		d, err := Decode(data)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !bytes.Equal(Encode(d), data) {
			t.Fatalf("%T does not round-trip", c)
		}
	}
}

func TestBadCommandsAreErrors(t *testing.T) {
	t.Parallel()
	f := New()
	good := Encode(&AddBackend{ID: "b1", URL: "https://x/bigbluebutton/api/", Secret: "s"})
	cases := map[string][]byte{
		"empty":       {},
		"truncated":   good[:len(good)-3],
		"huge length": {byte(CmdSetPeer), 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	for name, data := range cases {
		res := f.Apply(1, data)
		if res.Error == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if len(f.Backends()) != 0 {
		t.Fatal("a bad command changed the state")
	}
	if res := f.Apply(2, []byte{0x80 | 0x55, 1}); !res.Skipped || res.Error != nil {
		t.Fatalf("skippable unknown command: %+v", res)
	}
	// Bytes after the fields this release knows are fields a later release
	// appended: ignored (codec.go's append-only rule).
	if res := f.Apply(3, append(append([]byte{}, good...), 9, 9)); res.Error != nil {
		t.Fatalf("a command with an appended field: %v", res.Error)
	}
	if b, ok := f.Backend("b1"); !ok || b.URL != "https://x/bigbluebutton/api/" {
		t.Fatalf("a command with an appended field was not applied: %+v", b)
	}
}

func mustApply(t *testing.T, f *FSM, c Command) *Result {
	t.Helper()
	r := f.ApplyCommand(f.AppliedIndex()+1, c)
	if r.Error != nil {
		t.Fatalf("%T: %v", c, r.Error)
	}
	return r
}

func readyBackend(t *testing.T, f *FSM, id string) {
	mustApply(t, f, &AddBackend{ID: id, URL: "https://" + id + ".example/bigbluebutton/api", Secret: "s"})
	mustApply(t, f, &SetBackendAdminState{ID: id, State: AdminReady})
	mustApply(t, f, &ReportBackends{Reports: []BackendReport{{ID: id, NodeState: NodeReady}}})
}

func TestClaimFirstWinsAndFailover(t *testing.T) {
	t.Parallel()
	f := New()
	readyBackend(t, f, "a")
	readyBackend(t, f, "b")
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "x"})
	r1 := mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a"})
	r2 := mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "b"})
	if !r1.Created || r2.Created || r2.Meeting.BackendID != "a" {
		t.Fatalf("second claim should return the first binding: %+v %+v", r1, r2)
	}
	mustApply(t, f, &ReportBackends{Reports: []BackendReport{{ID: "a", NodeState: NodeError}}})
	r3 := mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "b"})
	if !r3.Created || r3.Meeting.BackendID != "b" || r3.PreviousBackend != "a" {
		t.Fatalf("claim on a dead backend's meeting should move it: %+v", r3)
	}
	// A late release naming the old backend must not drop the moved meeting.
	mustApply(t, f, &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}})
	if m, ok := f.Meeting("fe~m"); !ok || m.BackendID != "b" {
		t.Fatal("release of the old binding dropped the moved meeting")
	}
	// Claims on unplaceable backends are refused by the state itself.
	mustApply(t, f, &SetBackendAdminState{ID: "b", State: AdminStopped})
	if r := f.ApplyCommand(99, &ClaimMeeting{InternalID: "fe~n", Frontend: "fe", MeetingID: "n", BackendID: "b"}); r.Error == nil || r.Error.Code != CodeConflict {
		t.Fatalf("claim on a cordoned backend: %+v", r)
	}
}

func TestDecommissionRemovesWithLastMeeting(t *testing.T) {
	t.Parallel()
	f := New()
	readyBackend(t, f, "a")
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "x"})
	mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a"})
	r := mustApply(t, f, &RemoveBackend{ID: "a"})
	if r.Removed || r.Backend.AdminState != AdminDecommissioned {
		t.Fatalf("backend with a meeting should be decommissioned, not removed: %+v", r)
	}
	if r := f.ApplyCommand(10, &SetBackendAdminState{ID: "a", State: AdminReady}); r.Error == nil {
		t.Fatal("a decommissioned backend was re-enabled")
	}
	mustApply(t, f, &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "fe~m"}}})
	if _, ok := f.Backend("a"); ok {
		t.Fatal("decommissioned backend stayed after its last meeting ended")
	}
	readyBackend(t, f, "b")
	mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "b"})
	if r := mustApply(t, f, &RemoveBackend{ID: "b", Force: true}); !r.Removed {
		t.Fatal("--force did not remove")
	}
	if _, ok := f.Meeting("fe~m"); ok {
		t.Fatal("--force left the backend's meeting behind")
	}
}

func TestSettingsMergeAndValidation(t *testing.T) {
	t.Parallel()
	f := New()
	mustApply(t, f, &AddBackend{ID: "a", URL: "https://a.example", Secret: "s", Settings: []byte(`{"tags":["x","y"],"load_factor":2}`)})
	b, _ := f.Backend("a")
	if b.URL != "https://a.example/bigbluebutton/api/" || b.LoadFactor() != 2 || len(b.Settings.Tags) != 2 {
		t.Fatalf("%+v", b)
	}
	mustApply(t, f, &SetBackendSettings{ID: "a", Patch: []byte(`{"load_factor":null}`)})
	b, _ = f.Backend("a")
	if b.LoadFactor() != 1 || len(b.Settings.Tags) != 2 {
		t.Fatalf("null should unset only load_factor: %+v", b.Settings)
	}
	for _, p := range []string{`{"nope":1}`, `{"load_factor":-1}`, `{"tags":"x"}`, `not json`, `[1]`} {
		if r := f.ApplyCommand(9, &SetBackendSettings{ID: "a", Patch: []byte(p)}); r.Error == nil || r.Error.Code != CodeInvalid {
			t.Errorf("patch %s accepted", p)
		}
	}
	for _, u := range []string{"ftp://x/bigbluebutton/api/", "https://x/other/", "nonsense", "https://x/bigbluebutton/api/?a=1"} {
		if r := f.ApplyCommand(9, &AddBackend{ID: "z", URL: u, Secret: "s"}); r.Error == nil {
			t.Errorf("URL %s accepted", u)
		}
	}
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "s", Settings: []byte(`{"create_default_params":{"a":"1","b":"2"}}`)})
	mustApply(t, f, &SetFrontendSettings{Key: "fe", Patch: []byte(`{"create_default_params":{"a":null,"c":"3"}}`)})
	fe, _ := f.Frontend("fe")
	if got := fmt.Sprint(fe.Settings.CreateDefaultParams); got != "map[b:2 c:3]" {
		t.Fatalf("nested merge: %s", got)
	}
	if fb, ok := f.FindBackend("a.example"); !ok || fb.ID != "a" {
		t.Fatal("backend not found by host")
	}
	if fb, ok := f.FindBackend("https://a.example/bigbluebutton/api/"); !ok || fb.ID != "a" {
		t.Fatal("backend not found by URL")
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "{", `{"version":99}`, `{"version":0}`, `{"version":1,"backends":-1}`, `{"version":1,"backends":2}` + "\n{}\n"} {
		if err := New().Restore(strings.NewReader(in)); err == nil {
			t.Errorf("restore of %q succeeded", in)
		}
	}
	// A snapshot from a newer release is refused loudly, naming the fix.
	err := New().Restore(strings.NewReader(fmt.Sprintf(`{"version":%d}`, snapshotVersion+1)))
	if err == nil || !strings.Contains(err.Error(), "written by a newer release") || !strings.Contains(err.Error(), "upgrade this peer") {
		t.Fatalf("newer snapshot: %v", err)
	}
}

func FuzzApply(f *testing.F) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 30; i++ {
		f.Add(Encode(randomCommand(r, int64(i))))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := New()
		readyBackend(t, m, "b0")
		m.Apply(100, data)
		assertIndexConsistent(t, m)
	})
}

// A snapshot of a 10 000-recording index restores to an equal state.
func TestSnapshotWith10kRecordings(t *testing.T) {
	t.Parallel()
	f := New()
	var recs []Recording
	for i := 0; i < 10000; i++ {
		recs = append(recs, Recording{RecordID: fmt.Sprintf("rec-%05d", i), Frontend: "fe", MeetingID: fmt.Sprint("m", i%300),
			InternalID: fmt.Sprint("fe~m", i%300), BackendID: "b", State: "published", StartTime: int64(i),
			Meta: map[string]string{"course": fmt.Sprint(i % 7)}, XML: "<recording><recordID>" + fmt.Sprint(i) + "</recordID></recording>"})
	}
	for i := 0; i < len(recs); i += 1000 {
		mustApply(t, f, &PutRecordings{Recordings: recs[i : i+1000]})
	}
	assertRoundTrip(t, f)
	var buf bytes.Buffer
	f.Snapshot().WriteTo(&buf)
	g := New()
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := len(g.RecordingsOf("fe", nil)); got != 10000 {
		t.Fatalf("restored %d recordings", got)
	}
	if r, ok := g.Recording("rec-04242"); !ok || r.Meta["course"] != "0" || r.MeetingID != "m42" {
		t.Fatalf("restored recording: %+v", r)
	}
}

// EachMeetingOf sees exactly the frontend's meetings, as Meetings does.
func TestEachMeetingOfMatchesMeetings(t *testing.T) {
	f := New()
	readyBackend(t, f, "b1")
	mustApply(t, f, &AddFrontend{Key: "fe1", Secret: "s1"})
	mustApply(t, f, &AddFrontend{Key: "fe2", Secret: "s2"})
	for i, fe := range []string{"fe1", "fe2", "fe1", "fe1"} {
		id := fmt.Sprintf("m%d", i)
		mustApply(t, f, &ClaimMeeting{InternalID: fe + "~" + id, Frontend: fe, MeetingID: id, BackendID: "b1"})
	}
	for _, fe := range []string{"fe1", "fe2", "none"} {
		var got []string
		f.EachMeetingOf(fe, func(m *Meeting) { got = append(got, m.InternalID) })
		sort.Strings(got)
		var want []string
		for _, m := range f.Meetings(fe) {
			want = append(want, m.InternalID)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: EachMeetingOf saw %v, Meetings lists %v", fe, got, want)
		}
	}
}

// A release naming the instance it ended (CreatedAt) leaves a meeting
// claimed again since alone: a late end callback of the earlier one.
func TestReleaseOfAnEarlierInstance(t *testing.T) {
	t.Parallel()
	f := New()
	readyBackend(t, f, "a")
	mustApply(t, f, &AddFrontend{Key: "fe", Secret: "s"})
	mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a", Now: 100})
	mustApply(t, f, &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}}) // ended through the API
	mustApply(t, f, &ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "a", Now: 200})
	if r := mustApply(t, f, &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, CreatedAt: []int64{100}}); r.Removed {
		t.Fatal("the first instance's late end released the meeting created again")
	}
	if _, ok := f.Meeting("fe~m"); !ok {
		t.Fatal("the meeting created again is gone")
	}
	if r := mustApply(t, f, &ReleaseMeetings{Meetings: []MeetingRef{{InternalID: "fe~m", BackendID: "a"}}, CreatedAt: []int64{200}}); !r.Removed {
		t.Fatal("its own end did not release it")
	}
}
