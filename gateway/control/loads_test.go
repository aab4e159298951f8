package control

import (
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

type fakeLoads struct {
	mu sync.Mutex
	m  map[string]AgentLoad
}

func (f *fakeLoads) AgentLoads() map[string]AgentLoad {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]AgentLoad{}
	for k, v := range f.m {
		out[k] = v
	}
	return out
}

func (f *fakeLoads) set(url string, l AgentLoad) {
	f.mu.Lock()
	f.m[url] = l
	f.mu.Unlock()
}

// Placement follows the agents' fresh figures; stale, dead or BBB-down
// reports are ignored.
func TestPlacementUsesAgentLoad(t *testing.T) {
	mc := newMemCluster()
	loads := &fakeLoads{m: map[string]AgentLoad{}}
	s := newTestControl(Config{Loads: loads}, mc)
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	for _, id := range []string{"a", "b"} {
		mc.MustApply(&fsm.AddBackend{ID: id, URL: "http://127.0.0.1:1/" + id + "/bigbluebutton/api/", Secret: "x"})
		mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
	}
	// The probe saw nothing on a and b; the agent of a reports it busy.
	mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: "a", NodeState: fsm.NodeReady}, {ID: "b", NodeState: fsm.NodeReady, Attendees: 5}}})
	fe, _ := mc.FSM().Frontend("fe")
	urlA, _ := mc.FSM().Backend("a")
	loads.set(urlA.URL, AgentLoad{Meetings: 3, Attendees: 40, Alive: true, BBBUp: true, Updated: time.Now()})
	forget := func() { s.loadsCache.mu.Lock(); s.loadsCache.loads = nil; s.loadsCache.mu.Unlock() } // reused for 200 ms
	if b, _ := s.Place(&fe, nil); b.ID != "b" {
		t.Fatalf("placement ignored a's agent load: chose %s", b.ID)
	}
	for name, l := range map[string]AgentLoad{
		"stale":    {Meetings: 3, Attendees: 40, Alive: true, BBBUp: true, Updated: time.Now().Add(-time.Minute)},
		"dead":     {Meetings: 3, Attendees: 40, Alive: false, BBBUp: true, Updated: time.Now()},
		"bbb down": {Meetings: 3, Attendees: 40, Alive: true, BBBUp: false, Updated: time.Now()},
	} {
		loads.set(urlA.URL, l)
		forget()
		if b, _ := s.Place(&fe, nil); b.ID != "a" {
			t.Fatalf("%s agent report was used: chose %s", name, b.ID)
		}
	}
	loads.set(urlA.URL, AgentLoad{Alive: false, Updated: time.Now()})
	if !s.agentDead(&urlA) {
		t.Fatal("a dead agent is not seen as dead")
	}
}
