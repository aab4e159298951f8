package fsm

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestStoredSizesAreBounded: commands that would store oversized settings
// or metadata are refused when applied, whoever proposed them.
func TestStoredSizesAreBounded(t *testing.T) {
	f := New()
	idx := uint64(0)
	apply := func(c Command) *Result { idx++; return f.Apply(idx, Encode(c)) }
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
	}
	if r := apply(&AddFrontend{Key: "ok", Secret: "s", Settings: json.RawMessage(`{"create_default_params":{"a":"` + big(4000) + `"}}`)}); r.Error != nil {
		t.Fatal(r.Error)
	}
	for i := 0; ; i++ { // patches that each fit, until the merged settings would not
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
	apply(&PutRecordings{Recordings: []Recording{
		{RecordID: "big-meta", Frontend: "ok", XML: "<recording/>", Meta: map[string]string{"k": big(MaxSettingsValueLen + 1)}},
		{RecordID: "fine", Frontend: "ok", XML: "<recording/>", Meta: map[string]string{"k": "v"}},
	}})
	if _, ok := f.Recording("big-meta"); ok {
		t.Fatal("a recording with oversized metadata was stored")
	}
	if _, ok := f.Recording("fine"); !ok {
		t.Fatal("the recording next to it was not stored")
	}
}
