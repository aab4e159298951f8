package ctl

import "encoding/json"

// The admin API's JSON shapes (see docs/API.md). Settings stay raw JSON so
// that every key the server knows survives a round trip through the CLI.

// Backend is a backend (BBB server) as the admin API shows it: no secret.
type Backend struct {
	ID             string          `json:"id"`
	URL            string          `json:"url"`
	Settings       json.RawMessage `json:"settings"` // {"tags":[..],"load_factor":n}
	AdminState     string          `json:"admin_state"`
	NodeState      string          `json:"node_state"`
	Meetings       int             `json:"meetings"`  // last reported by the node
	Attendees      int             `json:"attendees"` // last reported by the node
	LatencyNs      int64           `json:"latency_ns"`
	LoadFactor     float64         `json:"load_factor"` // effective: 1 when unset
	LastError      string          `json:"last_error,omitempty"`
	CreatedAt      int64           `json:"created_at"`       // unix nanoseconds
	StateChangedAt int64           `json:"state_changed_at"` // unix nanoseconds
	BoundMeetings  int             `json:"bound_meetings"`   // meetings Conclave placed on it
}

// Ratio is attendees per meeting, as b3scale's MC/AC/R column shows it
// (0 without meetings).
func (b *Backend) Ratio() float64 {
	if b.Meetings <= 0 {
		return 0
	}
	return float64(b.Attendees) / float64(b.Meetings)
}

// BackendRemoval is the answer to DELETE /api/v1/backends/{ref}. Removed is
// false when the backend was only decommissioned: it takes no new meetings
// and goes away when its last meeting ends.
type BackendRemoval struct {
	Removed bool    `json:"removed"`
	Backend Backend `json:"backend"`
}

// Frontend is a tenant as the admin API shows it.
type Frontend struct {
	Key       string          `json:"key"`
	Secret    string          `json:"secret"`
	Settings  json.RawMessage `json:"settings"`
	CreatedAt int64           `json:"created_at"` // unix nanoseconds
	Meetings  int             `json:"meetings"`
}

// Meeting binds a frontend's meeting to the backend that runs it.
type Meeting struct {
	InternalID string `json:"internal_id"` // the meeting ID the backend sees
	Frontend   string `json:"frontend"`
	MeetingID  string `json:"meeting_id"` // the meeting ID the frontend uses
	BackendID  string `json:"backend_id"`
	CreatedAt  int64  `json:"created_at"` // unix nanoseconds
}

// Peer is one Raft member as GET /api/v1/peers lists it.
type Peer struct {
	ID           string `json:"id"`
	RaftAddr     string `json:"raft_addr"`
	HTTPAddr     string `json:"http_addr"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	State        string `json:"state"` // Leader, Follower, Candidate, Shutdown
	LastContact  string `json:"last_contact"`
	AppliedIndex uint64 `json:"applied_index"`
	Reachable    bool   `json:"reachable"`
	Error        string `json:"error,omitempty"`
}

// The request bodies.

// AddBackendRequest is the body of POST /api/v1/backends.
type AddBackendRequest struct {
	URL      string          `json:"url"`
	Secret   string          `json:"secret"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// AddFrontendRequest is the body of POST /api/v1/frontends.
type AddFrontendRequest struct {
	Key      string          `json:"key"`
	Secret   string          `json:"secret"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// JoinPeerRequest is the body of POST /api/v1/peers.
type JoinPeerRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

// Recording is one entry of the recordings index.
type Recording struct {
	RecordID       string            `json:"record_id"`
	Frontend       string            `json:"frontend"`
	MeetingID      string            `json:"meeting_id"`
	BackendID      string            `json:"backend_id"`
	BackendPresent bool              `json:"backend_present"`
	State          string            `json:"state"`
	StartTime      int64             `json:"start_time"`
	Meta           map[string]string `json:"meta,omitempty"`
}
