package gateway

import (
	"errors"
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

func (p *pendingPlacements) get(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[id]
}

// backendLoad is (attendees + MeetingWeight × meetings) × load factor. The
// meeting count is the larger of what the node reported and what the state
// has bound to it (a placement counts at once), plus pending placements.
func backendLoad(b *fsm.Backend, bound, pending int) float64 {
	meetings := max(b.Meetings, bound) + pending
	return float64(b.Attendees+MeetingWeight*meetings) * b.LoadFactor()
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
	counts := st.MeetingCounts()
	loads := s.agentLoads()
	var best *fsm.Backend
	bestLoad := 0.0
	anyPlaceable := false
	for _, b := range st.Backends() {
		if !b.Placeable() || exclude[b.ID] {
			continue
		}
		anyPlaceable = true
		if !hasTags(&b, fe.Settings.RequiredTags) {
			continue
		}
		b := withAgentLoad(b, loads)
		load := backendLoad(&b, counts[b.ID], s.pending.get(b.ID))
		if best == nil || load < bestLoad {
			b := b
			best, bestLoad = &b, load
		}
	}
	if best == nil {
		if anyPlaceable && len(fe.Settings.RequiredTags) > 0 {
			return nil, errNoTaggedNode
		}
		return nil, errNoBackend
	}
	return best, nil
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}
