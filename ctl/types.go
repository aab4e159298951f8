package ctl

import "encoding/json"

// Backend is a backend as the admin API shows it.
type Backend struct {
	ID             string          `json:"id"`
	URL            string          `json:"url"`
	Settings       json.RawMessage `json:"settings"`
	AdminState     string          `json:"admin_state"`
	NodeState      string          `json:"node_state"`
	Meetings       int             `json:"meetings"`
	Attendees      int             `json:"attendees"`
	LatencyNs      int64           `json:"latency_ns"`
	LoadFactor     float64         `json:"load_factor"`
	LastError      string          `json:"last_error,omitempty"`
	CreatedAt      int64           `json:"created_at"`
	StateChangedAt int64           `json:"state_changed_at"`
	BoundMeetings  int             `json:"bound_meetings"`
}

// Frontend is a tenant as the admin API shows it.
type Frontend struct {
	Key       string          `json:"key"`
	Secret    string          `json:"secret"`
	Settings  json.RawMessage `json:"settings"`
	CreatedAt int64           `json:"created_at"`
	Meetings  int             `json:"meetings"`
}

// Meeting is one bound meeting.
type Meeting struct {
	InternalID string `json:"internal_id"`
	Frontend   string `json:"frontend"`
	MeetingID  string `json:"meeting_id"`
	BackendID  string `json:"backend_id"`
	CreatedAt  int64  `json:"created_at"`
}

// Peer is one Raft member.
type Peer struct {
	ID           string `json:"id"`
	RaftAddr     string `json:"raft_addr"`
	HTTPAddr     string `json:"http_addr"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	State        string `json:"state"`
	LastContact  string `json:"last_contact"`
	AppliedIndex uint64 `json:"applied_index"`
	Reachable    bool   `json:"reachable"`
	Error        string `json:"error,omitempty"`
}
