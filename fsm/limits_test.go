package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestStoredSizesAreBounded: commands that would store oversized settings
// or metadata are refused before the log (FSM.Check, which the leader runs
// on every command, forwarded ones included), whoever proposed them.
func TestStoredSizesAreBounded(t *testing.T) {
	t.Parallel()
	f := New()
	idx := uint64(0)
	apply := func(c Command) *Result {
		if _, err := f.Check(Encode(c)); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T: Check's error is a %T", c, err)
			}
			return fail(e)
		}
		idx++
		return f.Apply(idx, Encode(c))
	}
	big := func(n int) string { return strings.Repeat("x", n) }
	many := map[string]string{}
	for i := 0; i <= MaxSettingsKeys; i++ {
		many[fmt.Sprint("k", i)] = "v"
	}
	manyJSON, _ := json.Marshal(map[string]any{"create_override_params": many})
	for i, s := range []string{
		`{"create_default_params":{"welcome":"` + big(20<<20) + `"}}`, // issue 13's 20 MB
		`{"create_default_params":{"welcome":"` + big(MaxSettingsValueLen+1) + `"}}`,
		`{"create_default_params":{"` + big(MaxSettingsKeyLen+1) + `":"v"}}`,
		`{"create_default_params":{"":"v"}}`,
		string(manyJSON),
		`{"default_presentation":{"url":"` + big(MaxSettingsValueLen+1) + `"}}`,
	} {
		if r := apply(&AddFrontend{Key: fmt.Sprint("f", i), Secret: "s", Settings: json.RawMessage(s)}); r.Error == nil || r.Error.Code != CodeInvalid {
			t.Errorf("settings %d accepted: %v", i, r.Error)
		}
		if r := apply(&SetFrontendSettings{Key: "ok", Patch: json.RawMessage(s)}); r.Error == nil || r.Error.Code != CodeInvalid {
			t.Errorf("settings patch %d accepted: %v", i, r.Error)
		}
	}
	if r := apply(&AddFrontend{Key: "ok", Secret: "s", Settings: json.RawMessage(`{"create_default_params":{"a":"` + big(4000) + `"}}`)}); r.Error != nil {
		t.Fatal(r.Error)
	}
	for i := 0; i < 10; i++ { // patches that each fit, until the merged settings would not
		r := apply(&SetFrontendSettings{Key: "ok", Patch: []byte(fmt.Sprintf(`{"create_override_params":{"p%d":"%s"}}`, i, big(4000)))})
		if r.Error != nil {
			if !strings.Contains(r.Error.Msg, "once merged") || i != 3 {
				t.Fatalf("patch %d: %v", i, r.Error)
			}
			break
		}
	}
	if fe, _ := f.Frontend("ok"); len(fe.Settings.CreateOverrideParams) != 3 {
		t.Fatalf("%d override params stored", len(fe.Settings.CreateOverrideParams))
	}
	if r := apply(&AddBackend{ID: "b", URL: "https://n.example.org/bigbluebutton/api/", Secret: "s", Settings: json.RawMessage(`{"tags":["` + big(MaxSettingsJSON) + `"]}`)}); r.Error == nil {
		t.Fatal("oversized backend settings accepted")
	}
	apply(&AddBackend{ID: "b", URL: "https://n.example.org/bigbluebutton/api/", Secret: "s"})
	if r := apply(&SetBackendSettings{ID: "b", Patch: []byte(`{"tags":["` + big(MaxSettingsJSON) + `"]}`)}); r.Error == nil {
		t.Fatal("oversized backend settings patch accepted")
	}
	if r := apply(&PutRecordings{Recordings: []Recording{
		{RecordID: "big-meta", Frontend: "ok", XML: "<recording/>", Meta: map[string]string{"k": big(MaxSettingsValueLen + 1)}},
	}}); r.Error == nil {
		t.Fatal("a recording with oversized metadata passed the check")
	}
	if _, ok := f.Recording("big-meta"); ok {
		t.Fatal("a recording with oversized metadata was stored")
	}
}

// TestOlderEntriesReplayTheSame: entries an older release applied before
// the settings and metadata limits existed (it logged forwarded bytes
// unchecked) apply the same way in this one: the limits are checked before
// the log, never at apply time, so replaying an old log cannot diverge.
func TestOlderEntriesReplayTheSame(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", MaxSettingsValueLen+1)
	log := [][]byte{
		Encode(&AddFrontend{Key: "fe", Secret: "s", Settings: json.RawMessage(`{"create_default_params":{"welcome":"` + big + `"}}`)}),
		Encode(&SetFrontendSettings{Key: "fe", Patch: json.RawMessage(`{"default_presentation":{"url":"` + big + `"}}`)}),
		Encode(&PutRecordings{Recordings: []Recording{{RecordID: "r", Frontend: "fe", XML: "<recording/>", Meta: map[string]string{"k": big}}}}),
	}
	f := New()
	for i, data := range log {
		if _, err := f.Check(data); err == nil {
			t.Errorf("entry %d passes the check: not a test of old entries", i)
		}
		if r := f.Apply(uint64(i+1), data); r.Error != nil {
			t.Fatalf("entry %d, which the release before the limits applied, fails now: %v", i, r.Error)
		}
	}
	fe, _ := f.Frontend("fe")
	if fe.Settings.CreateDefaultParams["welcome"] != big || fe.Settings.DefaultPresentation == nil {
		t.Fatalf("settings not applied: %+v", fe.Settings)
	}
	if r, ok := f.Recording("r"); !ok || r.Meta["k"] != big {
		t.Fatal("recording with large metadata not indexed as the older release did")
	}
}
