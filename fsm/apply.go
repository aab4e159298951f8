package fsm

import (
	"slices"

	"github.com/conclave-lb/conclave/bbb"
)

// Result is what applying a command produced. It travels back to the
// proposer, possibly over the network, so it is plain JSON-able data.
type Result struct {
	Error    *Error    `json:"error,omitempty"`
	Backend  *Backend  `json:"backend,omitempty"`
	Frontend *Frontend `json:"frontend,omitempty"`
	Meeting  *Meeting  `json:"meeting,omitempty"`
	// Created: the meeting claim is new (or moved from a dead backend), so
	// the caller must create it on the backend.
	Created bool `json:"created,omitempty"`
	// PreviousBackend is where a re-placed meeting was bound before.
	PreviousBackend string `json:"previous_backend,omitempty"`
	Removed         bool   `json:"removed,omitempty"`
	Skipped         bool   `json:"skipped,omitempty"`
	// PreviousCopy is the version of a central copy MarkCentral replaced.
	PreviousCopy string `json:"previous_copy,omitempty"`
}

func fail(e *Error) *Result { return &Result{Error: e} }

// Limits on identifiers and secrets, so no command can bloat the state.
const (
	maxIDLen     = 64
	maxSecretLen = 256
	maxMeetingID = 256
)

// ValidKey reports whether s may name a frontend or backend ID: 1–64 of
// [A-Za-z0-9._-]. Frontend keys appear in URLs and internal meeting IDs.
func ValidKey(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// NormalizeBackendURL is bbb.NormalizeAPIURL with its error as an
// invalid-command *Error, for the FSM and the admin API.
func NormalizeBackendURL(raw string) (string, error) {
	u, err := bbb.NormalizeAPIURL(raw)
	if err != nil {
		return "", invalid("%s", err.Error())
	}
	return u, nil
}

func (s *State) apply(c Command) *Result {
	switch c := c.(type) {
	case *AddBackend:
		return s.addBackend(c)
	case *SetBackendSettings:
		return s.setBackendSettings(c)
	case *SetBackendAdminState:
		return s.setBackendAdminState(c)
	case *RemoveBackend:
		return s.removeBackend(c)
	case *ReportBackends:
		return s.reportBackends(c)
	case *AddFrontend:
		return s.addFrontend(c)
	case *SetFrontendSettings:
		return s.setFrontendSettings(c)
	case *RemoveFrontend:
		return s.removeFrontend(c)
	case *ClaimMeeting:
		return s.claimMeeting(c)
	case *ReleaseMeetings:
		return s.releaseMeetings(c)
	case *SetPeer:
		return s.setPeer(c)
	case *SetClusterKey:
		return s.setClusterKey(c)
	case *RemovePeer:
		delete(s.Peers, c.ID)
		return &Result{Removed: true}
	case *SetMeetingParams:
		return s.setMeetingParams(c)
	case *FailoverMeeting:
		return s.failoverMeeting(c)
	case *MeetingRecreated:
		return s.meetingRecreated(c)
	case *MarkMeetingsLost:
		return s.markMeetingsLost(c)
	case *ReportStreams:
		return s.reportStreams(c)
	case *PutRecordings:
		return s.putRecordings(c)
	case *DropRecordings:
		return s.dropRecordings(c)
	case *MarkCentral:
		return s.markCentral(c)
	case *SetRecordingsPublished:
		return s.setRecordingsPublished(c)
	}
	return fail(invalid("unknown command"))
}

func (s *State) backendByURL(u string) *Backend {
	for _, b := range s.Backends {
		if b.URL == u {
			return b
		}
	}
	return nil
}

func (s *State) addBackend(c *AddBackend) *Result {
	if !ValidKey(c.ID) {
		return fail(invalid("backend ID %q: want 1-64 of [A-Za-z0-9._-]", c.ID))
	}
	u, err := NormalizeBackendURL(c.URL)
	if err != nil {
		return fail(err.(*Error))
	}
	if c.Secret == "" || len(c.Secret) > maxSecretLen {
		return fail(invalid("a backend needs a secret of 1 to %d characters", maxSecretLen))
	}
	if old := s.backendByURL(u); old != nil {
		if c.IfAbsent {
			return &Result{Backend: old}
		}
		return fail(exists("backend %s already has URL %s", old.ID, u))
	}
	if _, ok := s.Backends[c.ID]; ok {
		return fail(exists("backend ID %s is taken", c.ID))
	}
	var st BackendSettings
	if err := mergeSettings(BackendSettings{}, c.Settings, &st); err != nil {
		return fail(err.(*Error))
	}
	if err := st.validate(); err != nil {
		return fail(err.(*Error))
	}
	b := &Backend{
		ID: c.ID, URL: u, Secret: c.Secret, Settings: st,
		AdminState: AdminInit, NodeState: NodeInit,
		CreatedAt: c.Now, StateChangedAt: c.Now,
	}
	s.Backends[b.ID] = b
	return &Result{Backend: b}
}

func (s *State) setBackendSettings(c *SetBackendSettings) *Result {
	old, ok := s.Backends[c.ID]
	if !ok {
		return fail(notFound("no backend %s", c.ID))
	}
	var st BackendSettings
	if err := mergeSettings(old.Settings, c.Patch, &st); err != nil {
		return fail(err.(*Error))
	}
	if err := st.validate(); err != nil {
		return fail(err.(*Error))
	}
	b := *old
	b.Settings = st
	s.Backends[b.ID] = &b
	return &Result{Backend: &b}
}

func (s *State) setBackendAdminState(c *SetBackendAdminState) *Result {
	old, ok := s.Backends[c.ID]
	if !ok {
		return fail(notFound("no backend %s", c.ID))
	}
	if !ValidAdminState(c.State) || c.State == AdminDecommissioned {
		return fail(invalid("admin state %q cannot be set directly (use delete to decommission)", c.State))
	}
	if old.AdminState == AdminDecommissioned {
		return fail(conflict("backend %s is being decommissioned", c.ID))
	}
	b := *old
	b.AdminState = c.State
	s.Backends[b.ID] = &b
	return &Result{Backend: &b}
}

func (s *State) removeBackend(c *RemoveBackend) *Result {
	old, ok := s.Backends[c.ID]
	if !ok {
		return fail(notFound("no backend %s", c.ID))
	}
	if c.Force || len(s.onBackend[c.ID]) == 0 {
		for _, id := range sortedKeys(s.onBackend[c.ID]) {
			s.dropMeeting(id)
		}
		delete(s.Backends, c.ID)
		return &Result{Backend: old, Removed: true}
	}
	b := *old
	b.AdminState = AdminDecommissioned
	s.Backends[b.ID] = &b
	return &Result{Backend: &b}
}

func (s *State) reportBackends(c *ReportBackends) *Result {
	for _, r := range c.Reports {
		old, ok := s.Backends[r.ID]
		if !ok || !ValidNodeState(r.NodeState) {
			continue // removed meanwhile, or garbage: reports are advisory
		}
		b := *old
		if b.NodeState != r.NodeState {
			b.StateChangedAt = c.Now
		}
		b.NodeState = r.NodeState
		b.Meetings, b.Attendees = int(max(r.Meetings, 0)), int(max(r.Attendees, 0))
		b.LatencyNs = r.LatencyNs
		b.LastError = truncate(r.Error, 256)
		s.Backends[b.ID] = &b
	}
	return &Result{}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *State) addFrontend(c *AddFrontend) *Result {
	if !ValidKey(c.Key) {
		return fail(invalid("frontend key %q: want 1-64 of [A-Za-z0-9._-]", c.Key))
	}
	if c.Secret == "" || len(c.Secret) > maxSecretLen {
		return fail(invalid("a frontend needs a secret of 1 to %d characters", maxSecretLen))
	}
	if _, ok := s.Frontends[c.Key]; ok {
		return fail(exists("frontend %s exists", c.Key))
	}
	var st FrontendSettings
	if err := mergeSettings(FrontendSettings{}, c.Settings, &st); err != nil {
		return fail(err.(*Error))
	}
	if err := st.validate(); err != nil {
		return fail(err.(*Error))
	}
	f := &Frontend{Key: c.Key, Secret: c.Secret, Settings: st, CreatedAt: c.Now}
	s.Frontends[f.Key] = f
	return &Result{Frontend: f}
}

func (s *State) setFrontendSettings(c *SetFrontendSettings) *Result {
	old, ok := s.Frontends[c.Key]
	if !ok {
		return fail(notFound("no frontend %s", c.Key))
	}
	var st FrontendSettings
	if err := mergeSettings(old.Settings, c.Patch, &st); err != nil {
		return fail(err.(*Error))
	}
	if err := st.validate(); err != nil {
		return fail(err.(*Error))
	}
	f := *old
	f.Settings = st
	s.Frontends[f.Key] = &f
	return &Result{Frontend: &f}
}

func (s *State) removeFrontend(c *RemoveFrontend) *Result {
	old, ok := s.Frontends[c.Key]
	if !ok {
		return fail(notFound("no frontend %s", c.Key))
	}
	for _, id := range sortedKeys(s.Meetings) {
		if s.Meetings[id].Frontend == c.Key {
			s.dropMeeting(id)
		}
	}
	for id, r := range s.Recordings {
		if r.Frontend == c.Key {
			delete(s.Recordings, id)
		}
	}
	delete(s.Frontends, c.Key)
	return &Result{Frontend: old, Removed: true}
}

// claimMeeting is where concurrent creates of one meeting meet: the first
// claim in the log wins and later ones get the same binding back, unless
// the bound backend is gone or in error, when the meeting moves.
func (s *State) claimMeeting(c *ClaimMeeting) *Result {
	if _, ok := s.Frontends[c.Frontend]; !ok {
		return fail(notFound("no frontend %s", c.Frontend))
	}
	if c.InternalID == "" || len(c.InternalID) > maxMeetingID || c.MeetingID == "" || len(c.MeetingID) > maxMeetingID {
		return fail(invalid("meeting IDs must have 1 to %d characters", maxMeetingID))
	}
	var previous string
	if m, ok := s.Meetings[c.InternalID]; ok {
		if m.Frontend != c.Frontend || m.MeetingID != c.MeetingID {
			return fail(conflict("internal meeting ID %s belongs to another meeting", c.InternalID))
		}
		if b, ok := s.Backends[m.BackendID]; ok && b.NodeState != NodeError {
			return &Result{Meeting: m}
		}
		previous = m.BackendID
	}
	b, ok := s.Backends[c.BackendID]
	if !ok {
		return fail(conflict("backend %s is gone", c.BackendID))
	}
	if !b.Placeable() {
		return fail(conflict("backend %s takes no new meetings (admin %s, node %s)", b.ID, b.AdminState, b.NodeState))
	}
	s.dropMeeting(c.InternalID) // a moved meeting frees its old bridge first
	m := &Meeting{
		InternalID: c.InternalID, Frontend: c.Frontend, MeetingID: c.MeetingID,
		BackendID: b.ID, CreatedAt: c.Now, VoiceBridge: s.allocBridge(b.ID, c.InternalID),
	}
	s.putMeeting(m)
	return &Result{Meeting: m, Created: true, PreviousBackend: previous}
}

func (s *State) releaseMeetings(c *ReleaseMeetings) *Result {
	removed := false
	touched := []string{}
	for i, ref := range c.Meetings {
		m, ok := s.Meetings[ref.InternalID]
		if !ok || (ref.BackendID != "" && m.BackendID != ref.BackendID) {
			continue
		}
		if i < len(c.CreatedAt) && c.CreatedAt[i] != 0 && m.CreatedAt != c.CreatedAt[i] {
			continue // another instance of the meeting, claimed since
		}
		s.dropMeeting(ref.InternalID)
		touched = append(touched, m.BackendID)
		removed = true
	}
	// A decommissioned backend goes for good with its last meeting.
	slices.Sort(touched)
	for _, id := range slices.Compact(touched) {
		if b, ok := s.Backends[id]; ok && b.AdminState == AdminDecommissioned && len(s.onBackend[id]) == 0 {
			delete(s.Backends, id)
		}
	}
	return &Result{Removed: removed}
}

func (s *State) setPeer(c *SetPeer) *Result {
	if c.ID == "" || len(c.ID) > 128 || len(c.RaftAddr) > 256 || len(c.HTTPAddr) > 256 || len(c.GossipAddr) > 256 {
		return fail(invalid("bad peer record"))
	}
	s.Peers[c.ID] = &Peer{ID: c.ID, RaftAddr: c.RaftAddr, HTTPAddr: c.HTTPAddr, GossipAddr: c.GossipAddr}
	return &Result{}
}
