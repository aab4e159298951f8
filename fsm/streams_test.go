package fsm

import "testing"

func TestReportStreams(t *testing.T) {
	t.Parallel()
	s := New()
	mustApply(t, s, &AddBackend{ID: "a", URL: "http://a.example/bigbluebutton/api/", Secret: "x"})
	c := &ReportStreams{Reports: []StreamReport{{ID: "a", Videos: 7, Voice: 3}, {ID: "gone", Videos: 1}, {ID: "a", Videos: -5, Voice: 2}}}
	back, err := Decode(Encode(c))
	if err != nil {
		t.Fatal(err)
	}
	if back.Type() != CmdReportStreams || back.Type()&FlagSkippable == 0 {
		t.Fatalf("type %x", back.Type())
	}
	mustApply(t, s, back)
	b, _ := s.Backend("a")
	if b.Videos != 0 || b.Voice != 2 {
		t.Fatalf("videos %d voice %d (the last report wins, negative counts are 0)", b.Videos, b.Voice)
	}
	mustApply(t, s, &ReportStreams{Reports: []StreamReport{{ID: "a", Videos: 4, Voice: 1}}})
	if b, _ = s.Backend("a"); b.Videos != 4 || b.Voice != 1 {
		t.Fatalf("%+v", b)
	}
	if _, err := Decode(Encode(c)[:5]); err == nil {
		t.Fatal("truncated command decoded")
	}
}
