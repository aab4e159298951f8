package control

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/conclave-lb/conclave/fsm"
)

// LoadWeights say what each thing on a node adds to its load. Placement
// picks the backend with the least
//
//	(Meeting×meetings + Attendee×attendees + Video×video streams + Voice×voice participants) × load factor
//
// The defaults keep the weights Conclave always had: an empty meeting
// costs as much as five attendees, and video streams and voice
// participants add nothing on their own (Scalelite's load is attendees ×
// load multiplier; b3scale's is max(15×meetings, attendees) × load
// factor; neither counts them). Operators whose nodes are bound by
// cameras or microphones raise Video and Voice (docs/PRODUCTION.md).
type LoadWeights struct {
	Meeting, Attendee, Video, Voice float64
}

// DefaultLoadWeights are the weights when none are configured.
var DefaultLoadWeights = LoadWeights{Meeting: 5, Attendee: 1}

// MeetingWeight is the default weight of one meeting.
const MeetingWeight = 5

// String renders the weights as ParseLoadWeights reads them.
func (w LoadWeights) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return "meeting=" + f(w.Meeting) + ",attendee=" + f(w.Attendee) + ",video=" + f(w.Video) + ",voice=" + f(w.Voice)
}

// ParseLoadWeights reads "meeting=5,attendee=1,video=2,voice=1". Names
// left out keep their default; each weight is a number from 0 to 1000.
func ParseLoadWeights(s string) (LoadWeights, error) {
	w := DefaultLoadWeights
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return w, fmt.Errorf("load weight %q: want name=number", part)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 1000 {
			return w, fmt.Errorf("load weight %q: want a number from 0 to 1000", part)
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "meeting", "meetings":
			w.Meeting = v
		case "attendee", "attendees":
			w.Attendee = v
		case "video", "videos":
			w.Video = v
		case "voice":
			w.Voice = v
		default:
			return w, fmt.Errorf("load weight %q: the names are meeting, attendee, video and voice", part)
		}
	}
	if w == (LoadWeights{}) {
		return w, errors.New("load weights: at least one must be above 0")
	}
	return w, nil
}

var (
	ErrNoBackend    = errors.New("no backend is available for new meetings")
	ErrNoTaggedNode = errors.New("no available backend carries every tag this frontend requires")
)

// ErrServerTagUnavailable is a create whose required meta_server-tag no
// available backend matches; it is answered with Scalelite's messageKey.
type ErrServerTagUnavailable struct{ tags string }

func (e ErrServerTagUnavailable) Error() string {
	return "There is no available server with the required tag=" + e.tags + "."
}

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

// nodeLoad is what a node runs, as its agent or the prober saw it.
type nodeLoad struct {
	meetings, attendees, videos, voice int
}

// backendLoad weighs a node's load and multiplies it by its load factor.
// The meeting count is the larger of what the node reported and what the
// state has bound to it (a placement counts at once), plus pending
// placements.
func (w LoadWeights) backendLoad(l nodeLoad, bound, pending int, loadFactor float64) float64 {
	meetings := max(l.meetings, bound) + pending
	return (w.Meeting*float64(meetings) + w.Attendee*float64(l.attendees) +
		w.Video*float64(l.videos) + w.Voice*float64(l.voice)) * loadFactor
}

// loadWeights are the configured weights (the defaults when unset).
func (c *Control) loadWeights() LoadWeights {
	if c.cfg.LoadWeights == (LoadWeights{}) {
		return DefaultLoadWeights
	}
	return c.cfg.LoadWeights
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

// Place picks the backend for a new meeting of frontend fe that names no
// server tags: see PlaceTagged.
func (c *Control) Place(fe *fsm.Frontend, exclude map[string]bool) (*fsm.Backend, error) {
	return c.PlaceTagged(fe, exclude, ServerTags{})
}

// AddPending counts d placements on backend id as chosen by this peer and
// not yet committed (-d once the claim is answered).
func (c *Control) AddPending(id string, d int) { c.pending.add(id, d) }

// PlaceTagged picks the backend for a new meeting of frontend fe:
// placeable (AdminState and NodeState ready), carrying every tag the
// frontend requires, not in exclude, least loaded; ties go to the lower ID
// so choices are stable. A create's meta_server-tag (st) narrows that
// choice as Scalelite does: the least loaded of the allowed backends that
// match one of its tags ("none": a backend without tags); when none
// matches, required tags fail with ErrServerTagUnavailable and optional
// ones fall back to every allowed backend. Without st, tags on a backend
// do not reserve it (b3scale).
func (c *Control) PlaceTagged(fe *fsm.Frontend, exclude map[string]bool, st ServerTags) (*fsm.Backend, error) {
	state := c.cluster.FSM()
	loads := c.agentLoads()
	pending := c.pending.snapshot()
	w := c.loadWeights()
	var best, bestTagged fsm.Backend
	found, foundTagged, anyPlaceable := false, false, false
	bestLoad, bestTaggedLoad := 0.0, 0.0
	state.EachBackend(func(b *fsm.Backend, bound int) {
		if !b.Placeable() || exclude[b.ID] {
			return
		}
		anyPlaceable = true
		if !hasTags(b, fe.Settings.RequiredTags) {
			return
		}
		l := nodeLoad{meetings: b.Meetings, attendees: b.Attendees, videos: b.Videos, voice: b.Voice}
		if a, ok := loads[b.URL]; ok { // the agent's figures are fresher
			l = nodeLoad{meetings: a.Meetings, attendees: a.Attendees, videos: a.Videos, voice: a.Voice}
		}
		load := w.backendLoad(l, bound, pending[b.ID], b.LoadFactor())
		if !found || load < bestLoad || (load == bestLoad && b.ID < best.ID) {
			best, bestLoad, found = *b, load, true
		}
		if st.any() && st.matches(b) &&
			(!foundTagged || load < bestTaggedLoad || (load == bestTaggedLoad && b.ID < bestTagged.ID)) {
			bestTagged, bestTaggedLoad, foundTagged = *b, load, true
		}
	})
	switch {
	case foundTagged:
		return &bestTagged, nil
	case st.required && (found || anyPlaceable):
		return nil, ErrServerTagUnavailable{tags: st.raw}
	case !found && anyPlaceable && len(fe.Settings.RequiredTags) > 0:
		return nil, ErrNoTaggedNode
	case !found:
		return nil, ErrNoBackend
	}
	return &best, nil
}
