package gateway

import (
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// AgentLoad is a BBB node's load as its agent gossips it.
type AgentLoad struct {
	Meetings, Attendees int
	Alive               bool // memberlist considers the agent alive
	BBBUp               bool // the agent reached its BBB API on its last poll
	Updated             time.Time
}

// LoadSource gives the agents' latest loads, keyed by normalised BBB API
// URL. The gossip layer implements it; it is optional.
type LoadSource interface {
	AgentLoads() map[string]AgentLoad
}

// AgentLoadFresh is how old a gossiped load may be and still be used.
const AgentLoadFresh = 10 * time.Second

// agentLoads returns the fresh loads of live agents (nil without a source).
func (s *Server) agentLoads() map[string]AgentLoad {
	if s.cfg.Loads == nil {
		return nil
	}
	all := s.cfg.Loads.AgentLoads()
	out := make(map[string]AgentLoad, len(all))
	for url, l := range all {
		if l.Alive && l.BBBUp && time.Since(l.Updated) < AgentLoadFresh {
			out[url] = l
		}
	}
	return out
}

// agentDead reports whether the backend's agent is known and not alive:
// then one failed probe is enough to call the node dead.
func (s *Server) agentDead(b *fsm.Backend) bool {
	if s.cfg.Loads == nil {
		return false
	}
	l, ok := s.cfg.Loads.AgentLoads()[b.URL]
	return ok && !l.Alive
}

// withAgentLoad returns b with the agent's fresher load figures, if any.
func withAgentLoad(b fsm.Backend, loads map[string]AgentLoad) fsm.Backend {
	if l, ok := loads[b.URL]; ok {
		b.Meetings, b.Attendees = l.Meetings, l.Attendees
	}
	return b
}
