// Package adminapi holds the JSON shapes of Conclave's admin REST API
// (/api/v1, see docs/API.md): what the gateway's admin API writes and
// reads, what conclavectl and the test harness decode. One definition, so
// the server and its clients cannot drift apart. It imports nothing of
// Conclave: settings stay raw JSON, so every key the server knows survives
// a round trip through a client that does not.
package adminapi

import "encoding/json"

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"` // human-readable
	Code  string `json:"code"`  // invalid, not_found, exists, conflict, unauthorized, forbidden, unavailable, internal
}

// Status is GET /api/v1/status: the answering peer's Raft view of itself.
type Status struct {
	ID           string `json:"id"`
	RaftAddr     string `json:"raft_addr"`
	HTTPAddr     string `json:"http_addr"`
	State        string `json:"state"` // Leader, Follower, Candidate, Shutdown
	Term         uint64 `json:"term"`
	LeaderID     string `json:"leader_id"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContact is how long ago a follower heard from the leader (0 on the leader).
	LastContact string `json:"last_contact"`
	Ready       bool   `json:"ready"`
	NotReady    string `json:"not_ready,omitempty"`
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

// Backend is a backend (BBB server) as the admin API shows it: no secret.
type Backend struct {
	ID             string          `json:"id"`
	URL            string          `json:"url"`
	Settings       json.RawMessage `json:"settings"` // {"tags":[..],"load_factor":n}
	AdminState     string          `json:"admin_state"`
	NodeState      string          `json:"node_state"`
	Meetings       int             `json:"meetings"`  // last reported by the node
	Attendees      int             `json:"attendees"` // last reported by the node
	Videos         int             `json:"videos"`    // video streams, last reported
	Voice          int             `json:"voice"`     // voice participants, last reported
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

// Meeting binds a frontend's meeting to the backend that runs it. The
// create parameters kept for failover (passwords, relay URLs) are never
// shown.
type Meeting struct {
	InternalID  string `json:"internal_id"` // the meeting ID the backend sees
	Frontend    string `json:"frontend"`
	MeetingID   string `json:"meeting_id"` // the meeting ID the frontend uses
	BackendID   string `json:"backend_id"`
	CreatedAt   int64  `json:"created_at"` // unix nanoseconds
	VoiceBridge int    `json:"voice_bridge,omitempty"`
	// Failover: lost by its node (since LostAt), being re-created (since
	// Recreating), re-created (last at RecreatedAt, Recreations times).
	Lost        bool  `json:"lost,omitempty"`
	LostAt      int64 `json:"lost_at,omitempty"`
	Recreating  int64 `json:"recreating,omitempty"`
	RecreatedAt int64 `json:"recreated_at,omitempty"`
	Recreations int   `json:"recreations,omitempty"`
}

// Recording is one entry of the recordings index, without its XML.
type Recording struct {
	RecordID  string `json:"record_id"`
	Frontend  string `json:"frontend"`
	MeetingID string `json:"meeting_id"`
	BackendID string `json:"backend_id"`
	// BackendPresent is false when its backend was removed: the entry
	// keeps the last known URLs.
	BackendPresent bool              `json:"backend_present"`
	State          string            `json:"state"`
	StartTime      int64             `json:"start_time"`
	Meta           map[string]string `json:"meta,omitempty"`
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
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// LoadKeyRequest is the body of POST /api/v1/agent/load-key.
type LoadKeyRequest struct {
	URL string `json:"url"` // the agent's BBB API URL
}

// LoadKeyAnswer is its answer.
type LoadKeyAnswer struct {
	Key      string `json:"key"`       // base64, 32 bytes
	HostPort string `json:"host_port"` // what the key is for
}
