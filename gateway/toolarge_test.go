package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
)

// hugeNode answers getMeetings with a SUCCESS envelope over the 16 MiB
// limit (one meeting padded with metadata) while huge is set, and
// isMeetingRunning small.
func hugeNode(t *testing.T, huge *atomic.Bool) *httptest.Server {
	pad := strings.Repeat("x", control.MaxBackendResponse+1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/getMeetings") && huge.Load():
			w.Write([]byte("<response><returncode>SUCCESS</returncode><meetings><meeting><meetingID>fe1~big</meetingID>" +
				"<participantCount>1</participantCount><metadata><pad>" + pad + "</pad></metadata></meeting></meetings></response>"))
		case strings.HasSuffix(r.URL.Path, "/getMeetings"):
			w.Write([]byte("<response><returncode>SUCCESS</returncode><meetings><meeting><meetingID>fe1~big</meetingID>" +
				"<participantCount>1</participantCount></meeting></meetings></response>"))
		case strings.HasSuffix(r.URL.Path, "/getMeetingInfo") && r.URL.Query().Get("meetingID") == "fe1~big":
			w.Write([]byte("<response><returncode>SUCCESS</returncode><meetingName>fe1~big</meetingName><meetingID>fe1~big</meetingID>" +
				"<participantCount>1</participantCount><metadata><pad>small</pad></metadata></response>"))
		case strings.HasSuffix(r.URL.Path, "/getMeetingInfo"):
			w.Write([]byte("<response><returncode>FAILED</returncode><messageKey>notFound</messageKey><message>x</message></response>"))
		default:
			w.Write([]byte("<response><returncode>SUCCESS</returncode><running>false</running></response>"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A node whose getMeetings answer is over the limit is not dropped
// silently: it is counted, held in NodeState error with a clear reason,
// and its meetings stay bound (the sweep does not take them).
func TestTooLargeAnswerHoldsNodeInErrorAndKeepsMeetings(t *testing.T) {
	var huge atomic.Bool
	huge.Store(true)
	node := hugeNode(t, &huge)
	mc := NewMemCluster()
	s := New(Config{}, mc)
	mc.MustAddReadyBackend("big", node.URL+"/bigbluebutton/api/", "s")
	mc.MustApply(&fsm.AddFrontend{Key: "fe1", Secret: "fe1-secret"})
	mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~big", Frontend: "fe1", MeetingID: "big", BackendID: "big"})

	cfg := HealthConfig{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, FailAfter: 3, RecoverAfter: 2,
		LoadEvery: 200 * time.Millisecond, EndedGrace: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.RunHealth(ctx, cfg)
	waitBackend(t, mc, "big", 5*time.Second, "error for its too large answer", func(b fsm.Backend) bool {
		return b.NodeState == fsm.NodeError && strings.Contains(b.LastError, "larger than 16 MiB")
	})
	if n := counterValue(s.metrics.TooLarge.WithLabelValues("big")); n < 1 {
		t.Fatalf("conclave_backend_answers_too_large_total{backend=big} = %v", n)
	}
	// Ping rounds in between succeed; the node must stay in error, and
	// its meeting bound, well past the grace.
	time.Sleep(time.Second)
	b, _ := mc.FSM().Backend("big")
	if b.NodeState != fsm.NodeError {
		t.Fatalf("a node whose answer is too large went back to %s (%s)", b.NodeState, b.LastError)
	}
	if _, ok := mc.FSM().Meeting("fe1~big"); !ok {
		t.Fatal("the meeting of a node with a too large answer vanished from the state")
	}
	// The answer shrinks: the node recovers, the meeting is still there.
	huge.Store(false)
	waitBackend(t, mc, "big", 5*time.Second, "ready again", func(b fsm.Backend) bool { return b.NodeState == fsm.NodeReady })
	if _, ok := mc.FSM().Meeting("fe1~big"); !ok {
		t.Fatal("meeting gone after recovery")
	}
}

// The aggregated getMeetings counts a node whose answer is too large, and
// still lists the frontend's meetings there, asked one by one.
func TestAggregatedGetMeetingsCountsTooLargeAnswer(t *testing.T) {
	var huge atomic.Bool
	huge.Store(true)
	r := newRig(t, 0)
	node := hugeNode(t, &huge)
	r.mc.MustAddReadyBackend("big", node.URL+"/bigbluebutton/api/", "s")
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~big", Frontend: "fe1", MeetingID: "big", BackendID: "big"})
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~gone", Frontend: "fe1", MeetingID: "gone", BackendID: "big"})
	a := r.client("fe1").Get(t, "getMeetings", "")
	if n := counterValue(r.srv.metrics.TooLarge.WithLabelValues("big")); n != 1 {
		t.Fatalf("conclave_backend_answers_too_large_total{backend=big} = %v after one getMeetings", n)
	}
	want := "<meetings><meeting><meetingName>big</meetingName><meetingID>big</meetingID><participantCount>1</participantCount>" +
		"<metadata><pad>small</pad></metadata></meeting></meetings>"
	if !strings.Contains(a.Raw, want) {
		t.Fatalf("the too large node's meeting is missing from getMeetings (or not as getMeetings shows it): %s", a.Raw)
	}
	huge.Store(false)
	if a := r.client("fe1").Get(t, "getMeetings", ""); !strings.Contains(a.Raw, "<meetingID>big</meetingID>") {
		t.Fatalf("getMeetings: %s", a.Raw)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
