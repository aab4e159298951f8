package gateway

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/conclave-lb/conclave/fsm"
)

// MeetingWeight is what one meeting adds to a backend's load besides its
// attendees: an empty meeting still costs a BBB server something.
const MeetingWeight = 5

var (
	errNoBackend    = errors.New("no backend is available for new meetings")
	errNoTaggedNode = errors.New("no available backend carries every tag this frontend requires")
)

// pendingPlacements counts placements this peer has chosen but not yet
// seen committed, so simultaneous creates spread out instead of all
// picking the same least-loaded node.
type pendingPlacements struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *pendingPlacements) add(id string, d int) {
	p.mu.Lock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	p.n[id] += d
	if p.n[id] <= 0 {
		delete(p.n, id)
	}
	p.mu.Unlock()
}

// snapshot copies the counts (few: placements in flight on this peer).
func (p *pendingPlacements) snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.n) == 0 {
		return nil
	}
	return maps.Clone(p.n)
}

// backendLoad is (attendees + MeetingWeight × meetings) × load factor. The
// meeting count is the larger of what the node reported and what the state
// has bound to it (a placement counts at once), plus pending placements.
func backendLoad(reportedMeetings, attendees, bound, pending int, loadFactor float64) float64 {
	meetings := max(reportedMeetings, bound) + pending
	return float64(attendees+MeetingWeight*meetings) * loadFactor
}

// hasTags reports whether the backend carries every required tag.
func hasTags(b *fsm.Backend, required []string) bool {
	for _, t := range required {
		if !slices.Contains(b.Settings.Tags, t) {
			return false
		}
	}
	return true
}

// place picks the backend for a new meeting of frontend fe: placeable
// (AdminState and NodeState ready), carrying the required tags, not in
// exclude, least loaded; ties go to the lower ID so choices are stable.
func (s *Server) place(fe *fsm.Frontend, exclude map[string]bool) (*fsm.Backend, error) {
	st := s.cluster.FSM()
	loads := s.agentLoads()
	pending := s.pending.snapshot()
	var best fsm.Backend
	found, anyPlaceable := false, false
	bestLoad := 0.0
	st.EachBackend(func(b *fsm.Backend, bound int) {
		if !b.Placeable() || exclude[b.ID] {
			return
		}
		anyPlaceable = true
		if !hasTags(b, fe.Settings.RequiredTags) {
			return
		}
		meetings, attendees := b.Meetings, b.Attendees
		if l, ok := loads[b.URL]; ok { // the agent's figures are fresher
			meetings, attendees = l.Meetings, l.Attendees
		}
		load := backendLoad(meetings, attendees, bound, pending[b.ID], b.LoadFactor())
		if !found || load < bestLoad || (load == bestLoad && b.ID < best.ID) {
			best, bestLoad, found = *b, load, true
		}
	})
	if !found {
		if anyPlaceable && len(fe.Settings.RequiredTags) > 0 {
			return nil, errNoTaggedNode
		}
		return nil, errNoBackend
	}
	return &best, nil
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}
