package control

import (
	"sync"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// AgentLoad is a BBB node's load as its agent gossips it.
type AgentLoad struct {
	Meetings, Attendees int
	Videos, Voice       int  // video streams, voice participants
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
// Every create reads them; they change every second or two, so an answer
// up to agentLoadsReuse old is reused rather than rebuilt from the member
// table. The map is shared: callers must not change it.
func (c *Control) agentLoads() map[string]AgentLoad {
	if c.cfg.Loads == nil {
		return nil
	}
	lc := &c.loadsCache
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.loads != nil && time.Since(lc.at) < agentLoadsReuse {
		return lc.loads
	}
	all := c.cfg.Loads.AgentLoads()
	out := make(map[string]AgentLoad, len(all))
	for url, l := range all {
		if l.Alive && l.BBBUp && time.Since(l.Updated) < AgentLoadFresh {
			out[url] = l
		}
	}
	lc.loads, lc.at = out, time.Now()
	return out
}

const agentLoadsReuse = 200 * time.Millisecond

type agentLoadsCache struct {
	mu    sync.Mutex
	at    time.Time
	loads map[string]AgentLoad
}

// agentDead reports whether the backend's agent is known and not alive:
// then one failed probe is enough to call the node dead.
func (c *Control) agentDead(b *fsm.Backend) bool {
	if c.cfg.Loads == nil {
		return false
	}
	l, ok := c.cfg.Loads.AgentLoads()[b.URL]
	return ok && !l.Alive
}
