package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Two places refuse a command, and the rule that splits the checks between
// them keeps every peer's state equal across upgrades:
//
//   - Before the log (Validate, FSM.Check; the leader runs them on every
//     command, its own and forwarded bytes alike): the command must decode,
//     its type must be known, and it must pass every check that does not
//     depend on the state (sizes, limits, field formats). A refused command
//     never enters the log; the caller gets the error. These checks may be
//     made stricter in any release: they judge only new commands.
//
//   - When applied (State.apply): the last line, for what depends on the
//     state (not found, exists, conflicts) and for the checks the command
//     has had since its type was introduced. An apply-time check may never
//     become stricter, nor a new one be added to an existing command: a log
//     entry that an older release applied successfully must replay to the
//     same state in this one (a new peer replays the whole log, an upgraded
//     one the entries after its snapshot), or peers diverge. A new limit
//     goes here in Validate. So the settings and recording metadata limits
//     (MaxSettingsJSON and its siblings), added after the first release,
//     are checked before the log, not by Apply.
//
// An entry that once failed to apply must keep failing the same way, too:
// a released apply-time check is not relaxed either (a new command type
// can carry new rules). The settings limits were apply-time checks for a
// few hours of unreleased work before they moved here; no release refused
// an entry with them.

// Validate runs the checks of a command that do not depend on the state.
// The error is an *Error (CodeInvalid).
func Validate(c Command) error {
	switch c := c.(type) {
	case *AddBackend:
		if !ValidKey(c.ID) {
			return invalid("backend ID %q: want 1-64 of [A-Za-z0-9._-]", c.ID)
		}
		if _, err := NormalizeBackendURL(c.URL); err != nil {
			return err
		}
		if c.Secret == "" || len(c.Secret) > maxSecretLen {
			return invalid("a backend needs a secret of 1 to %d characters", maxSecretLen)
		}
		return CheckBackendSettings(BackendSettings{}, c.Settings)
	case *SetBackendSettings:
		return checkPatch(c.Patch, false)
	case *SetBackendAdminState:
		if !ValidAdminState(c.State) || c.State == AdminDecommissioned {
			return invalid("admin state %q cannot be set directly (use delete to decommission)", c.State)
		}
	case *AddFrontend:
		if !ValidKey(c.Key) {
			return invalid("frontend key %q: want 1-64 of [A-Za-z0-9._-]", c.Key)
		}
		if c.Secret == "" || len(c.Secret) > maxSecretLen {
			return invalid("a frontend needs a secret of 1 to %d characters", maxSecretLen)
		}
		return CheckFrontendSettings(FrontendSettings{}, c.Settings)
	case *SetFrontendSettings:
		return checkPatch(c.Patch, true)
	case *ClaimMeeting:
		if c.InternalID == "" || len(c.InternalID) > maxMeetingID || c.MeetingID == "" || len(c.MeetingID) > maxMeetingID {
			return invalid("meeting IDs must have 1 to %d characters", maxMeetingID)
		}
	case *SetPeer:
		if c.ID == "" || len(c.ID) > 128 || len(c.RaftAddr) > 256 || len(c.HTTPAddr) > 256 || len(c.GossipAddr) > 256 {
			return invalid("bad peer record")
		}
	case *PutRecordings:
		for _, r := range c.Recordings {
			if err := validParams("meta", r.Meta); err != nil {
				return invalid("recording %.64q: %v", r.RecordID, err)
			}
		}
	case *SetClusterKey:
		if len(c.Key) != ClusterKeyLen {
			return invalid("a cluster key is %d bytes, not %d", ClusterKeyLen, len(c.Key))
		}
	case *SetMeetingParams:
		if !c.Params.valid() {
			return invalid("create parameters over their bounds (query %d bytes, slides %d bytes)", MaxCreateQuery, MaxCreateSlides)
		}
	case *FailoverMeeting:
		if c.Token == "" || len(c.Token) > maxIDLen {
			return invalid("a failover claim needs a token of 1 to %d characters", maxIDLen)
		}
	}
	return nil
}

// checkPatch checks a settings patch on its own: its size, that it is a
// JSON object, and (frontends) the limits of the entries it sets. Whether
// it merges into valid settings depends on the state.
func checkPatch(patch []byte, frontend bool) error {
	if len(patch) > MaxSettingsJSON {
		return invalid("settings: %d bytes of JSON, over the limit of %d", len(patch), MaxSettingsJSON)
	}
	var p struct {
		Default  map[string]*string `json:"create_default_params"`
		Override map[string]*string `json:"create_override_params"`
		Pres     *struct {
			URL string `json:"url"`
		} `json:"default_presentation"`
	}
	var obj map[string]json.RawMessage
	if len(bytes.TrimSpace(patch)) > 0 {
		if err := json.Unmarshal(patch, &obj); err != nil {
			return invalid("settings must be a JSON object: %v", err)
		}
	}
	if !frontend || obj == nil {
		return nil
	}
	if json.Unmarshal(patch, &p) != nil {
		return nil // wrong types: Apply says so, with the current settings
	}
	set := func(m map[string]*string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if v != nil {
				out[k] = *v
			}
		}
		return out
	}
	if err := validParams("create_default_params", set(p.Default)); err != nil {
		return err
	}
	if err := validParams("create_override_params", set(p.Override)); err != nil {
		return err
	}
	if p.Pres != nil && len(p.Pres.URL) > MaxSettingsValueLen {
		return invalid("default_presentation.url: at most %d bytes", MaxSettingsValueLen)
	}
	return nil
}

// Check is the leader's gate before the log: data must decode as a command
// this FSM knows and pass Validate; a settings patch must also keep the
// settings it changes, as they stand now, within the limits. Bytes a later
// release appended to a known command pass (they are ignored). A type this
// release does not know is refused, skippable or not: the leader cannot
// check it. During a rolling upgrade, a newer peer's new commands fail with
// that error until the leader runs the newer release too.
func (f *FSM) Check(data []byte) (Command, error) {
	c, err := decodeKnown(data, f.unknown)
	if len(data) > 0 && (errors.Is(err, ErrSkipped) || errors.As(err, new(*UnknownCommandError))) {
		return nil, &Error{Code: CodeInvalid, Msg: fmt.Sprintf(
			"command type %d (0x%02x) is unknown to the leader (an older release?): refused before the log", data[0], data[0])}
	}
	if err != nil {
		return nil, invalid("%v", err)
	}
	if err := Validate(c); err != nil {
		return nil, err
	}
	switch c := c.(type) {
	case *SetFrontendSettings:
		if fe, ok := f.Frontend(c.Key); ok {
			err = CheckFrontendSettings(fe.Settings, c.Patch)
		}
	case *SetBackendSettings:
		if b, ok := f.Backend(c.ID); ok {
			err = CheckBackendSettings(b.Settings, c.Patch)
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
