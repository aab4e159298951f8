package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

func TestParseServerTags(t *testing.T) {
	for in, want := range map[string]ServerTags{
		"":              {},
		"!":             {},
		" ! ":           {},
		",;!":           {},
		"foo":           {tags: []string{"foo"}, raw: "foo"},
		"foo!":          {tags: []string{"foo"}, required: true, raw: "foo"},
		"foo,bar":       {tags: []string{"foo", "bar"}, raw: "foo,bar"},
		"foo;bar!":      {tags: []string{"foo", "bar"}, required: true, raw: "foo;bar"},
		" foo , ,bar! ": {tags: []string{"foo", "bar"}, required: true, raw: "foo , ,bar"},
		"none":          {tags: []string{"none"}, raw: "none"},
		"none!":         {tags: []string{"none"}, required: true, raw: "none"},
	} {
		got := parseServerTags(in)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("parseServerTags(%q) = %+v, want %+v", in, got, want)
		}
	}
	// In a stored query, under any case of its name (BBB lower-cases meta_ names).
	if st := ServerTagsInQuery("name=x&META_Server-Tag=foo%2Cbar%21&meetingID=y"); fmt.Sprint(st.tags) != "[foo bar]" || !st.required {
		t.Errorf("from a query: %+v", st)
	}
	if st := ServerTagsInQuery("name=x"); st.any() {
		t.Errorf("no parameter: %+v", st)
	}
}

// placeRig is the control over an in-memory cluster with ready backends
// u (untagged), f (tag foo), b (tags bar, gpu), and frontend fe.
func placeRig(t *testing.T, attendees map[string]int64) (*Control, *memCluster) {
	t.Helper()
	mc := newMemCluster()
	s := newTestControl(Config{}, mc)
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	tags := map[string]string{"u": `{}`, "f": `{"tags":["foo"]}`, "b": `{"tags":["bar","gpu"]}`}
	var reps []fsm.BackendReport
	for _, id := range []string{"b", "f", "u"} {
		mc.MustApply(&fsm.AddBackend{ID: id, URL: "http://127.0.0.1:1/" + id + "/bigbluebutton/api/", Secret: "x", Settings: []byte(tags[id])})
		mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
		reps = append(reps, fsm.BackendReport{ID: id, NodeState: fsm.NodeReady, Attendees: attendees[id]})
	}
	mc.MustApply(&fsm.ReportBackends{Reports: reps})
	return s, mc
}

// meta_server-tag as Scalelite's find_available reads it, on top of the
// frontend's required tags; without it, tags do not reserve a node.
func TestServerTagPlacement(t *testing.T) {
	// f is the least loaded, then b, then u.
	s, mc := placeRig(t, map[string]int64{"f": 1, "b": 2, "u": 3})
	fe, _ := mc.FSM().Frontend("fe")
	cases := []struct {
		tag, want string // want "" = serverTagUnavailable
	}{
		{"", "f"},          // no preference: least loaded, tagged or not
		{"!", "f"},         // Scalelite: "!" alone is no tag at all
		{"foo", "f"},       // the only match
		{"foo!", "f"},      // the same, required
		{"bar", "b"},       // a match more loaded than f wins over f
		{"bar!", "b"},      //
		{"gpu,foo", "f"},   // the least loaded of the matches
		{"bar;gpu!", "b"},  // Scalelite's separator
		{"none", "u"},      // untagged nodes only, though the most loaded
		{"none!", "u"},     //
		{"none,bar", "b"},  // untagged or bar: b is less loaded than u
		{"baz", "f"},       // optional, no match: every allowed node
		{"baz!", ""},       // required, no match: refused
		{"Foo!", ""},       // tags are compared as written
		{"baz,none!", "u"}, // one of them matches
	}
	for _, c := range cases {
		b, err := s.PlaceTagged(&fe, nil, parseServerTags(c.tag))
		switch {
		case c.want == "":
			if _, ok := err.(ErrServerTagUnavailable); !ok {
				t.Errorf("meta_server-tag=%s: got %v, %v; want ErrServerTagUnavailable", c.tag, b, err)
			}
		case err != nil || b.ID != c.want:
			t.Errorf("meta_server-tag=%s: got %v, %v; want %s", c.tag, b, err, c.want)
		}
	}

	// Optional tags fall back to the other nodes the frontend allows, not
	// beyond; required ones fail when the frontend allows none of theirs.
	mc.MustApply(&fsm.SetFrontendSettings{Key: "fe", Patch: []byte(`{"required_tags":["gpu"]}`)})
	fe, _ = mc.FSM().Frontend("fe")
	for tag, want := range map[string]string{"": "b", "foo": "b", "none": "b", "bar!": "b", "foo!": "", "none!": ""} {
		b, err := s.PlaceTagged(&fe, nil, parseServerTags(tag))
		if want == "" {
			if _, ok := err.(ErrServerTagUnavailable); !ok {
				t.Errorf("required_tags gpu, meta_server-tag=%s: got %v, %v; want ErrServerTagUnavailable", tag, b, err)
			}
		} else if err != nil || b.ID != want {
			t.Errorf("required_tags gpu, meta_server-tag=%s: got %v, %v; want %s", tag, b, err, want)
		}
	}
	// A matching node that failed the create is not tried again; the
	// optional tag then falls back, the required one fails.
	mc.MustApply(&fsm.SetFrontendSettings{Key: "fe", Patch: []byte(`{"required_tags":null}`)})
	fe, _ = mc.FSM().Frontend("fe")
	if b, err := s.PlaceTagged(&fe, map[string]bool{"b": true}, parseServerTags("bar")); err != nil || b.ID != "f" {
		t.Errorf("bar with b excluded: %v, %v", b, err)
	}
	if _, err := s.PlaceTagged(&fe, map[string]bool{"b": true}, parseServerTags("bar!")); err == nil {
		t.Error("bar! with b excluded found a node")
	}
	// No node at all: noBackendAvailable, whatever the tag says.
	for _, id := range []string{"b", "f", "u"} {
		mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminStopped})
	}
	if _, err := s.PlaceTagged(&fe, nil, parseServerTags("foo!")); err != ErrNoBackend {
		t.Errorf("no node: %v", err)
	}
}

// Video streams and voice participants weigh as configured.
func TestLoadWeights(t *testing.T) {
	if w, err := ParseLoadWeights(""); err != nil || w != DefaultLoadWeights {
		t.Fatalf("empty: %v %v", w, err)
	}
	w, err := ParseLoadWeights("video=2, voice=0.5,meeting=3")
	if err != nil || w != (LoadWeights{Meeting: 3, Attendee: 1, Video: 2, Voice: 0.5}) {
		t.Fatalf("parse: %v %v", w, err)
	}
	if back, _ := ParseLoadWeights(w.String()); back != w {
		t.Fatalf("String does not round-trip: %s", w)
	}
	for _, bad := range []string{"video", "video=-1", "video=x", "cpu=1", "meeting=0,attendee=0", "video=NaN", "voice=1e9"} {
		if _, err := ParseLoadWeights(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}

	mc := newMemCluster()
	loads := &fakeLoads{m: map[string]AgentLoad{}}
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	for _, id := range []string{"a", "b"} {
		mc.MustApply(&fsm.AddBackend{ID: id, URL: "http://127.0.0.1:1/" + id + "/bigbluebutton/api/", Secret: "x"})
		mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
	}
	mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: "a", NodeState: fsm.NodeReady}, {ID: "b", NodeState: fsm.NodeReady}}})
	fe, _ := mc.FSM().Frontend("fe")
	a, _ := mc.FSM().Backend("a")
	b, _ := mc.FSM().Backend("b")
	// a: 20 attendees, all silent, no camera. b: 12 attendees, 10 cameras, 10 microphones.
	loads.set(a.URL, AgentLoad{Meetings: 1, Attendees: 20, Alive: true, BBBUp: true, Updated: time.Now()})
	loads.set(b.URL, AgentLoad{Meetings: 1, Attendees: 12, Videos: 10, Voice: 10, Alive: true, BBBUp: true, Updated: time.Now()})
	for weights, want := range map[string]string{"": "b", "video=1": "a", "voice=1": "a", "video=0.2,voice=0.2": "b"} {
		w, _ := ParseLoadWeights(weights)
		s := newTestControl(Config{Loads: loads, LoadWeights: w}, mc)
		if got, err := s.Place(&fe, nil); err != nil || got.ID != want {
			t.Errorf("weights %q: chose %v, %v; want %s", weights, got, err, want)
		}
	}
}

// The prober reads video streams and voice participants from getMeetings
// (nodes without an agent) and commits them, so every peer's placement
// weighs the same figures; a fresh agent report wins, as for attendees.
func TestProberReportsVideoAndVoice(t *testing.T) {
	answer := `<response><returncode>SUCCESS</returncode><meetings>` +
		`<meeting><meetingID>a</meetingID><participantCount>4</participantCount><voiceParticipantCount>3</voiceParticipantCount><videoCount>2</videoCount></meeting>` +
		`<meeting><meetingID>b</meetingID><participantCount>1</participantCount><voiceParticipantCount>1</voiceParticipantCount><videoCount>5</videoCount></meeting>` +
		`</meetings></response>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, answer) }))
	defer srv.Close()
	mc := newMemCluster()
	loads := &fakeLoads{m: map[string]AgentLoad{}}
	s := newTestControl(Config{Loads: loads}, mc)
	mc.MustApply(&fsm.AddBackend{ID: "x", URL: srv.URL + "/bigbluebutton/api/", Secret: "s"})
	mc.MustApply(&fsm.AddBackend{ID: "y", URL: "http://127.0.0.1:1/y/bigbluebutton/api/", Secret: "s"})
	r := s.probe(&fsm.Backend{ID: "x", URL: srv.URL + "/bigbluebutton/api/", Secret: "s"}, time.Second, true)
	if !r.ok || r.videos != 7 || r.voice != 4 || r.attendees != 5 {
		t.Fatalf("probe: %+v", r)
	}
	cfg := HealthConfig{Interval: time.Second, Timeout: 200 * time.Millisecond, FailAfter: 3, RecoverAfter: 1, LoadEvery: time.Second, EndedGrace: time.Minute}
	mem := map[string]*backendHealth{}
	s.probeRound(context.Background(), cfg, mc.Apply, mem, time.Time{}, true)
	if b, _ := mc.FSM().Backend("x"); b.Videos != 7 || b.Voice != 4 {
		t.Fatalf("state after a listing: videos %d voice %d", b.Videos, b.Voice)
	}
	y, _ := mc.FSM().Backend("y")
	loads.set(y.URL, AgentLoad{Videos: 9, Voice: 8, Alive: true, BBBUp: true, Updated: time.Now()})
	s.loadsCache.mu.Lock()
	s.loadsCache.loads = nil
	s.loadsCache.mu.Unlock()
	s.probeRound(context.Background(), cfg, mc.Apply, mem, time.Time{}, true)
	if b, _ := mc.FSM().Backend("y"); b.Videos != 9 || b.Voice != 8 {
		t.Fatalf("the agent's figures did not reach the state: videos %d voice %d", b.Videos, b.Voice)
	}
}
