package gateway

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/test/harness"
)

func waitBackend(t *testing.T, mc *MemCluster, id string, within time.Duration, what string, ok func(fsm.Backend) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if b, found := mc.FSM().Backend(id); found && ok(b) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := mc.FSM().Backend(id)
	t.Fatalf("backend %s: not %s within %v: %+v", id, what, within, b)
	return 0
}

// The prober's bound: Interval×FailAfter + Timeout. Here 200ms×3 + 200ms.
func TestHealthProberStatesLoadAndEndedMeetings(t *testing.T) {
	r := newRig(t, 2)
	// Start from init, as a freshly added backend would.
	r.mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: r.ids[0], NodeState: fsm.NodeInit}, {ID: r.ids[1], NodeState: fsm.NodeInit}}})
	cfg := HealthConfig{Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, FailAfter: 3, RecoverAfter: 2,
		LoadEvery: 200 * time.Millisecond, EndedGrace: 400 * time.Millisecond}
	bound := cfg.Interval*time.Duration(cfg.FailAfter) + cfg.Timeout
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.srv.RunHealth(ctx, cfg)

	for _, id := range r.ids {
		waitBackend(t, r.mc, id, 2*time.Second, "ready", func(b fsm.Backend) bool { return b.NodeState == fsm.NodeReady && b.LatencyNs > 0 })
	}
	// Load: a meeting and an attendee show up in the reported figures.
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=load1&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	n := r.nodeOf("fe1", "load1")
	resp, err := harness.NoRedirect.Get(c.URL("join", "meetingID=load1&fullName=A&password=mp"))
	if err != nil {
		t.Fatal(err)
	}
	landing, err := http.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	landing.Body.Close()
	waitBackend(t, r.mc, r.ids[n], 3*time.Second, "loaded 1/1", func(b fsm.Backend) bool { return b.Meetings == 1 && b.Attendees == 1 })

	// A meeting that ends on the node itself is forgotten after the grace.
	r.nodes[n].Close()
	took := waitBackend(t, r.mc, r.ids[n], bound+time.Second, "error", func(b fsm.Backend) bool { return b.NodeState == fsm.NodeError })
	t.Logf("HEALTH: NodeState error %v after the node died (bound %v at these settings)", took.Round(time.Millisecond), bound)
	if _, err := r.nodes[n].Start(r.addrs[n]); err != nil {
		t.Fatal(err)
	}
	waitBackend(t, r.mc, r.ids[n], 3*time.Second, "ready again", func(b fsm.Backend) bool { return b.NodeState == fsm.NodeReady })

	// The backend ends the meeting by itself (not through us): the binding goes.
	direct := fmt.Sprintf("node%d-secret", n)
	end := testClient{Base: "http://" + r.addrs[n] + "/bigbluebutton/api", Secret: direct}
	if a := end.Get(t, "end", "meetingID=fe1~load1&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := r.mc.FSM().Meeting("fe1~load1"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a meeting that ended on its backend stayed bound")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Between listings (LoadEvery), the prober only pings each backend with a
// small signed call: the load it listed stays, and a ping that fails still
// counts toward error.
func TestProberListsMeetingsEveryLoadEveryAndPingsBetween(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=busy&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	cfg := HealthConfig{Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, FailAfter: 3, RecoverAfter: 2,
		LoadEvery: time.Second, EndedGrace: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lists0, pings0 := r.nodes[0].Requests("getMeetings"), r.nodes[0].Requests("isMeetingRunning")
	go r.srv.RunHealth(ctx, cfg)
	waitBackend(t, r.mc, r.ids[0], 2*time.Second, "listed 1 meeting", func(b fsm.Backend) bool { return b.Meetings == 1 })
	time.Sleep(1500 * time.Millisecond)
	lists, pings := r.nodes[0].Requests("getMeetings")-lists0, r.nodes[0].Requests("isMeetingRunning")-pings0
	if lists < 1 || lists > 3 || pings < 5 {
		t.Fatalf("in ~1.6 s at LoadEvery 1 s and Interval 100 ms: %d listings, %d pings", lists, pings)
	}
	if b, _ := r.mc.FSM().Backend(r.ids[0]); b.Meetings != 1 || b.NodeState != fsm.NodeReady {
		t.Fatalf("after ping rounds: %d meetings, %s", b.Meetings, b.NodeState)
	}
	r.nodes[0].Close()
	waitBackend(t, r.mc, r.ids[0], 2*time.Second, "error from failed pings", func(b fsm.Backend) bool { return b.NodeState == fsm.NodeError })
}
