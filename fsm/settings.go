package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// BackendSettings are an operator's settings for a backend.
type BackendSettings struct {
	Tags       []string `json:"tags,omitempty"`
	LoadFactor *float64 `json:"load_factor,omitempty"`
}

// Presentation is a frontend's default slide deck (b3scale's setting).
// Without Force it is sent only with a create that carries no slides of
// its own; with Force it replaces the client's slides on every create.
type Presentation struct {
	URL   string `json:"url"`
	Force bool   `json:"force,omitempty"`
}

// FrontendSettings are an operator's settings for a tenant.
type FrontendSettings struct {
	RequiredTags         []string          `json:"required_tags,omitempty"`
	DefaultPresentation  *Presentation     `json:"default_presentation,omitempty"`
	CreateDefaultParams  map[string]string `json:"create_default_params,omitempty"`
	CreateOverrideParams map[string]string `json:"create_override_params,omitempty"`
	// ProtectRecordings makes every recording of the tenant play only
	// through signed, expiring links (as BBB's protect=true does for one).
	ProtectRecordings bool `json:"protect_recordings,omitempty"`
}

// Limits on settings. They came after the first release, so they are
// checked before a command enters the log (Validate, FSM.Check, and the
// admin API through CheckFrontendSettings / CheckBackendSettings), not when
// it is applied: an entry an older release applied must apply the same way
// in this one (see validate.go). docs/API.md lists them.
const (
	// MaxSettingsJSON bounds a settings patch and the merged settings, as JSON.
	MaxSettingsJSON = 16 << 10
	// MaxSettingsKeys bounds each parameter map (create_default_params,
	// create_override_params) and a recording's metadata.
	MaxSettingsKeys = 100
	// MaxSettingsKeyLen and MaxSettingsValueLen bound one map entry; the
	// default presentation's URL is a value too.
	MaxSettingsKeyLen   = 256
	MaxSettingsValueLen = 4 << 10
)

// CheckFrontendSettings reports whether patch, merged into cur, gives
// valid frontend settings within the limits.
func CheckFrontendSettings(cur FrontendSettings, patch []byte) error {
	var st FrontendSettings
	if err := mergeWithinLimits(cur, patch, &st); err != nil {
		return err
	}
	if err := st.validate(); err != nil {
		return err
	}
	return st.limits()
}

// CheckBackendSettings is CheckFrontendSettings for a backend.
func CheckBackendSettings(cur BackendSettings, patch []byte) error {
	var st BackendSettings
	if err := mergeWithinLimits(cur, patch, &st); err != nil {
		return err
	}
	return st.validate()
}

// mergeWithinLimits is mergeSettings with the size limits on the patch and
// on the merged settings.
func mergeWithinLimits(current any, patch []byte, out any) error {
	if len(patch) > MaxSettingsJSON {
		return invalid("settings: %d bytes of JSON, over the limit of %d", len(patch), MaxSettingsJSON)
	}
	n, err := mergeSettingsJSON(current, patch, out)
	if err != nil {
		return err
	}
	if n > MaxSettingsJSON {
		return invalid("settings: %d bytes of JSON once merged, over the limit of %d", n, MaxSettingsJSON)
	}
	return nil
}

// mergeSettings applies an RFC 7396 JSON merge patch (null unsets) to the
// current settings and decodes the result strictly into out, so unknown keys
// and wrong types are errors. Deterministic: same inputs, same output. It
// is what Apply runs: no size limits (they are checked before the log).
func mergeSettings(current any, patch []byte, out any) error {
	_, err := mergeSettingsJSON(current, patch, out)
	return err
}

// mergeSettingsJSON is mergeSettings returning the merged JSON's size.
func mergeSettingsJSON(current any, patch []byte, out any) (int, error) {
	if len(bytes.TrimSpace(patch)) == 0 {
		patch = []byte("{}")
	}
	var p any
	if err := json.Unmarshal(patch, &p); err != nil {
		return 0, invalid("settings are not valid JSON: %v", err)
	}
	if _, ok := p.(map[string]any); !ok {
		return 0, invalid("settings must be a JSON object")
	}
	curJSON, err := json.Marshal(current)
	if err != nil {
		return 0, invalid("settings: %v", err)
	}
	var cur any
	if err := json.Unmarshal(curJSON, &cur); err != nil {
		return 0, invalid("settings: %v", err)
	}
	merged, err := json.Marshal(mergePatch(cur, p))
	if err != nil {
		return 0, invalid("settings: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(merged))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return 0, invalid("bad settings: %v", err)
	}
	return len(merged), nil
}

func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

func (s *BackendSettings) validate() error {
	if s.LoadFactor != nil {
		f := *s.LoadFactor
		if math.IsNaN(f) || f <= 0 || f > 1000 {
			return invalid("load_factor must be a number above 0 and at most 1000, got %v", f)
		}
	}
	return validTags("tags", s.Tags)
}

func (s *FrontendSettings) validate() error {
	if s.DefaultPresentation != nil && s.DefaultPresentation.URL == "" {
		return invalid("default_presentation needs a url")
	}
	return validTags("required_tags", s.RequiredTags)
}

// limits checks the frontend settings' size limits (not applied: they came
// later than the command, see MaxSettingsJSON).
func (s *FrontendSettings) limits() error {
	if s.DefaultPresentation != nil && len(s.DefaultPresentation.URL) > MaxSettingsValueLen {
		return invalid("default_presentation.url: at most %d bytes", MaxSettingsValueLen)
	}
	if err := validParams("create_default_params", s.CreateDefaultParams); err != nil {
		return err
	}
	return validParams("create_override_params", s.CreateOverrideParams)
}

// validParams checks a map of BBB parameters against the limits.
func validParams(field string, m map[string]string) error {
	if len(m) > MaxSettingsKeys {
		return invalid("%s: %d entries, over the limit of %d", field, len(m), MaxSettingsKeys)
	}
	for k, v := range m {
		if k == "" || len(k) > MaxSettingsKeyLen {
			return invalid("%s: a name must have 1 to %d bytes", field, MaxSettingsKeyLen)
		}
		if len(v) > MaxSettingsValueLen {
			return invalid("%s: the value of %.64q is over the limit of %d bytes", field, k, MaxSettingsValueLen)
		}
	}
	return nil
}

func validTags(field string, tags []string) error {
	if len(tags) > 64 {
		return invalid("%s: at most 64 tags", field)
	}
	for _, t := range tags {
		if t == "" || len(t) > 64 {
			return invalid("%s: a tag must have 1 to 64 characters", field)
		}
	}
	return nil
}

// Error is a domain error from Apply: the command was valid Raft input but
// the state refused it. Code maps onto HTTP statuses in the admin API.
type Error struct {
	Code string `json:"code"` // invalid, not_found, exists, conflict
	Msg  string `json:"message"`
}

func (e *Error) Error() string { return e.Msg }

// Error codes.
const (
	CodeInvalid  = "invalid"
	CodeNotFound = "not_found"
	CodeExists   = "exists"
	CodeConflict = "conflict"
	// CodeUnknownCommand: a log entry of a type this release does not know
	// and may not skip; the peer stops (FSM.Halted).
	CodeUnknownCommand = "unknown_command"
)

func invalid(format string, a ...any) *Error {
	return &Error{Code: CodeInvalid, Msg: fmt.Sprintf(format, a...)}
}
func notFound(format string, a ...any) *Error {
	return &Error{Code: CodeNotFound, Msg: fmt.Sprintf(format, a...)}
}
func exists(format string, a ...any) *Error {
	return &Error{Code: CodeExists, Msg: fmt.Sprintf(format, a...)}
}
func conflict(format string, a ...any) *Error {
	return &Error{Code: CodeConflict, Msg: fmt.Sprintf(format, a...)}
}
