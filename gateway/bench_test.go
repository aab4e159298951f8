package gateway

import (
	"fmt"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
)

func benchCluster(b *testing.B, backends int) *MemCluster {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "frontend-secret"})
	for i := 0; i < backends; i++ {
		id := fmt.Sprintf("b%04d", i)
		mc.MustApply(&fsm.AddBackend{ID: id, URL: fmt.Sprintf("https://n%d.example.org/bigbluebutton/api/", i), Secret: "node-secret"})
		mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
		mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: id, NodeState: fsm.NodeReady, Attendees: int64(i % 7)}}})
	}
	return mc
}

// BenchmarkJoinRedirect is the most frequent call: checksum, local lookup,
// re-signed 302. No network: the handler alone.
func BenchmarkJoinRedirect(b *testing.B) {
	mc := benchCluster(b, 10)
	mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe~room", Frontend: "fe", MeetingID: "room", BackendID: "b0003"})
	s := New(Config{}, mc)
	q := bbb.SignQuery(bbb.SHA256, "join", "fullName=Alice+Smith&meetingID=room&password=mp&redirect=true", "frontend-secret")
	var req fasthttp.Request
	req.SetRequestURI("/bigbluebutton/api/join?" + q)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, addr, nil)
		s.Handle(&ctx)
		if ctx.Response.StatusCode() != 302 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func BenchmarkChecksumVerify(b *testing.B) {
	q := bbb.SignQuery(bbb.SHA256, "join", "fullName=Alice+Smith&meetingID=room&password=mp", "frontend-secret")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !bbb.Verify("join", q, "frontend-secret") {
			b.Fatal("no")
		}
	}
}

func BenchmarkPlacement(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("backends=%d", n), func(b *testing.B) {
			s := New(Config{}, benchCluster(b, n))
			fe, _ := s.cluster.FSM().Frontend("fe")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.place(&fe, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
