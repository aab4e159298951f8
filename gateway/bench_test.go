package gateway

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/internal/admit"
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
	// Its create parameters are kept: the gateway checks the password itself.
	mc.MustApply(&fsm.SetMeetingParams{InternalID: "fe~room", BackendID: "b0003", Params: fsm.CreateParams{
		Query: "meetingID=fe~room&attendeePW=ap&moderatorPW=mp", AttendeePW: "ap", ModeratorPW: "mp"}})
	s := New(Config{}, mc)
	q := bbb.SignQuery(bbb.SHA256, "join", "fullName=Alice+Smith&meetingID=room&password=mp&redirect=true", "frontend-secret")
	var req fasthttp.Request
	req.SetRequestURI("/bigbluebutton/api/join?" + q)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	// One request context for all iterations, as fasthttp's server reuses
	// its contexts: what is counted is the handler's own allocations.
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, addr, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Response.Reset()
		s.Handle(&ctx)
		if ctx.Response.StatusCode() != 302 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkShedRead is a read refused because the peer is at its bound
// of reads in flight: what shedding costs the peer, next to
// BenchmarkJoinRedirect (a join is shed the same way, after its wait).
func BenchmarkShedRead(b *testing.B) {
	s := New(Config{MaxReads: 1}, benchCluster(b, 10))
	s.gate.Enter(admit.Read) // the one read slot, taken
	q := bbb.SignQuery(bbb.SHA256, "getMeetingInfo", "meetingID=room", "frontend-secret")
	var req fasthttp.Request
	req.SetRequestURI("/bigbluebutton/api/getMeetingInfo?" + q)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Response.Reset()
		s.Handle(&ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusServiceUnavailable {
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
				if _, err := s.ctl.Place(&fe, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGetRecordings10k: a filtered getRecordings over an index of
// 10 000 recordings (100 frontends' worth on one), answered locally.
func BenchmarkGetRecordings10k(b *testing.B) {
	mc := benchCluster(b, 10)
	var recs []fsm.Recording
	for i := 0; i < 10000; i++ {
		mid := fmt.Sprintf("m%d", i%2000)
		recs = append(recs, fsm.Recording{RecordID: fmt.Sprintf("%040d-%d", i, 1700000000000+i), Frontend: "fe", MeetingID: mid,
			InternalID: "fe~" + mid, BackendID: "b0001", State: "published", StartTime: int64(i),
			Meta: map[string]string{"course": fmt.Sprint(i % 50)},
			XML:  "<recording><recordID>x</recordID><meetingID>" + mid + "</meetingID><playback/></recording>"})
	}
	for i := 0; i < len(recs); i += 500 {
		mc.MustApply(&fsm.PutRecordings{Recordings: recs[i:min(i+500, len(recs))]})
	}
	s := New(Config{}, mc)
	for name, q := range map[string]string{"meetingID": "meetingID=m42,m43", "meta": "meta_course=7&limit=20", "recordID": "recordID=0000000000000000000000000000000000000042"} {
		b.Run(name, func(b *testing.B) {
			var req fasthttp.Request
			req.SetRequestURI("/bigbluebutton/api/getRecordings?" + bbb.SignQuery(bbb.SHA256, "getRecordings", q, "frontend-secret"))
			addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var ctx fasthttp.RequestCtx
				ctx.Init(&req, addr, nil)
				s.Handle(&ctx)
				if !strings.Contains(string(ctx.Response.Body()), "<recording>") {
					b.Fatalf("%s", ctx.Response.Body())
				}
			}
		})
	}
}
