// Package fsm is Conclave's replicated state machine: backends, frontends,
// meetings and peers, changed only by commands from the Raft log.
//
// Apply is deterministic: no clock, no randomness, no I/O. Time and IDs are
// chosen by the proposer and travel inside the command, so every peer that
// applies the same log reaches the same state. Values stored in the state
// are never mutated in place (copy on write), so readers may keep them and a
// snapshot is a shallow copy of the maps.
package fsm

import "sort"

// AdminState is what the operator wants of a backend (b3scale's names).
type AdminState string

const (
	AdminInit           AdminState = "init"
	AdminReady          AdminState = "ready"
	AdminStopped        AdminState = "stopped"
	AdminDecommissioned AdminState = "decommissioned"
)

// NodeState is what the cluster observes of a backend.
type NodeState string

const (
	NodeInit           NodeState = "init"
	NodeReady          NodeState = "ready"
	NodeStopped        NodeState = "stopped"
	NodeError          NodeState = "error"
	NodeDecommissioned NodeState = "decommissioned"
)

// ValidAdminState reports whether s may be requested by an operator.
func ValidAdminState(s AdminState) bool {
	switch s {
	case AdminInit, AdminReady, AdminStopped, AdminDecommissioned:
		return true
	}
	return false
}

// ValidNodeState reports whether s is a known observed state.
func ValidNodeState(s NodeState) bool {
	switch s {
	case NodeInit, NodeReady, NodeStopped, NodeError, NodeDecommissioned:
		return true
	}
	return false
}

// Backend is one BBB server.
type Backend struct {
	ID       string          `json:"id"`
	URL      string          `json:"url"` // API base, ending in /bigbluebutton/api/
	Secret   string          `json:"secret"`
	Settings BackendSettings `json:"settings"`

	AdminState AdminState `json:"admin_state"`
	NodeState  NodeState  `json:"node_state"`

	// Last reported load and probe result (from the health prober or an agent).
	Meetings  int    `json:"meetings"`
	Attendees int    `json:"attendees"`
	Videos    int    `json:"videos,omitempty"` // video streams (ReportStreams)
	Voice     int    `json:"voice,omitempty"`  // voice participants (ReportStreams)
	LatencyNs int64  `json:"latency_ns"`
	LastError string `json:"last_error,omitempty"`

	CreatedAt      int64 `json:"created_at"`       // unix nanoseconds, from the command
	StateChangedAt int64 `json:"state_changed_at"` // last NodeState change
}

// Placeable reports whether new meetings may go to the backend.
func (b *Backend) Placeable() bool {
	return b.AdminState == AdminReady && b.NodeState == NodeReady
}

// LoadFactor is the effective load factor (1 when unset).
func (b *Backend) LoadFactor() float64 {
	if b.Settings.LoadFactor == nil {
		return 1
	}
	return *b.Settings.LoadFactor
}

// Frontend is a tenant: an LMS or portal with its own secret.
type Frontend struct {
	Key       string           `json:"key"`
	Secret    string           `json:"secret"`
	Settings  FrontendSettings `json:"settings"`
	CreatedAt int64            `json:"created_at"`
}

// Meeting binds a frontend's meeting to the one backend that runs it.
type Meeting struct {
	InternalID string `json:"internal_id"` // the ID the backend sees; unique across frontends
	Frontend   string `json:"frontend"`
	MeetingID  string `json:"meeting_id"` // the ID the frontend uses
	BackendID  string `json:"backend_id"`
	CreatedAt  int64  `json:"created_at"`
	// VoiceBridge is the dial-in conference number, unique among the
	// meetings on its backend (BBB requires that per node).
	VoiceBridge int `json:"voice_bridge,omitempty"`

	// Failover (gateway/bbbapi/failover.go); all absent from older snapshots.
	// Create is what the meeting keeps of its create, to create it again.
	Create *CreateParams `json:"create,omitempty"`
	// Lost: its backend, alive, no longer lists it (restarted empty); since LostAt.
	Lost   bool  `json:"lost,omitempty"`
	LostAt int64 `json:"lost_at,omitempty"`
	// Recreating: when a failover claim moved it here (0 once the
	// re-creation is confirmed), under RecreateToken.
	Recreating    int64  `json:"recreating,omitempty"`
	RecreateToken string `json:"recreate_token,omitempty"`
	RecreatedAt   int64  `json:"recreated_at,omitempty"`
	Recreations   int    `json:"recreations,omitempty"`
}

// Down reports whether a meeting is not running where it is bound: lost by
// its node, or being re-created there.
func (m *Meeting) Down() bool { return m.Lost || m.Recreating != 0 }

// Peer records how to reach a Raft member: HTTP for forwarding, gossip so
// peers can join each other's memberlist.
type Peer struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// State is the whole replicated state.
type State struct {
	Backends  map[string]*Backend  `json:"-"`
	Frontends map[string]*Frontend `json:"-"`
	Meetings  map[string]*Meeting  `json:"-"`
	Peers     map[string]*Peer     `json:"-"`
	// Recordings is the recordings index, by record ID.
	Recordings map[string]*Recording `json:"-"`
	// ClusterKey signs callback relay URLs (see SetClusterKey); nil until
	// the leader has committed one.
	ClusterKey []byte `json:"-"`

	// Derived, rebuilt on restore: the meetings on each backend (the prober
	// reads one backend's meetings each second per backend: no scan of all),
	// and the voice bridges in use on each backend.
	onBackend map[string]map[string]*Meeting
	bridges   map[string]map[int]bool
}

func newState() *State {
	return &State{
		Backends:   map[string]*Backend{},
		Frontends:  map[string]*Frontend{},
		Meetings:   map[string]*Meeting{},
		Peers:      map[string]*Peer{},
		Recordings: map[string]*Recording{},
		onBackend:  map[string]map[string]*Meeting{},
		bridges:    map[string]map[int]bool{},
	}
}

func (s *State) putMeeting(m *Meeting) {
	s.dropMeeting(m.InternalID)
	s.Meetings[m.InternalID] = m
	if s.onBackend[m.BackendID] == nil {
		s.onBackend[m.BackendID] = map[string]*Meeting{}
	}
	s.onBackend[m.BackendID][m.InternalID] = m
	if m.VoiceBridge != 0 {
		if s.bridges[m.BackendID] == nil {
			s.bridges[m.BackendID] = map[int]bool{}
		}
		s.bridges[m.BackendID][m.VoiceBridge] = true
	}
}

func (s *State) dropMeeting(id string) {
	if old, ok := s.Meetings[id]; ok {
		delete(s.Meetings, id)
		if on := s.onBackend[old.BackendID]; on != nil {
			delete(on, id)
			if len(on) == 0 {
				delete(s.onBackend, old.BackendID)
			}
		}
		if b := s.bridges[old.BackendID]; b != nil {
			delete(b, old.VoiceBridge)
			if len(b) == 0 {
				delete(s.bridges, old.BackendID)
			}
		}
	}
}

// Voice bridges are five-digit numbers, as BBB's own.
const (
	minBridge = 10000
	nBridges  = 90000
)

// allocBridge picks a voice bridge free on backend: from a hash of the
// meeting ID (stable, like Scalelite's), probing upward past taken ones.
func (s *State) allocBridge(backend, internalID string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(internalID); i++ {
		h = (h ^ uint32(internalID[i])) * 16777619
	}
	used := s.bridges[backend]
	if len(used) >= nBridges {
		return 0
	}
	for i := 0; i < nBridges; i++ {
		v := minBridge + int((h+uint32(i))%nBridges)
		if !used[v] {
			return v
		}
	}
	return 0 // 90 000 meetings on one node: let BBB choose
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
