package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
)

// countingTransport stands for the network: it counts the relays that
// would have gone out and answers 200 to each.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

// FuzzCallback throws arbitrary kinds, queries and bodies at the callback
// relay: nothing may panic, and nothing is queued for delivery unless the
// query carries a valid signature under the cluster key for a meeting of
// that backend.
func FuzzCallback(f *testing.F) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	mc.MustAddReadyBackend("b", "http://127.0.0.1:1/bigbluebutton/api/", "x")
	mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe~m", Frontend: "fe", MeetingID: "m", BackendID: "b"})
	s := New(Config{}, mc)
	key := s.relay.ClusterKey(context.Background())
	ct := &countingTransport{}
	saved := callbacks.Client.Transport
	callbacks.Client.Transport = ct
	f.Cleanup(func() { callbacks.Client.Transport = saved })

	valid := relayURL("", key, "end", "fe", "fe~m", "m", "b", "http://lms.example.org/end")
	_, validQuery, _ := strings.Cut(valid, "?")
	f.Add("end", validQuery+"&meetingID=fe~m", "")
	f.Add("recording-ready", validQuery, "signed_parameters=eyJhbGciOiJIUzI1NiJ9.e30.x")
	f.Add("end", "fe=fe&m=fe~m&mid=m&be=b&url=http%3A%2F%2F127.0.0.1%3A1%2F&sig=00", "")
	f.Add("end", "fe=fe&be=b&url=http%3A%2F%2Fx&sig=zz&meetingID=fe~m", "")
	f.Add("../admin", "%zz&&=", "\x00")
	f.Fuzz(func(t *testing.T, kind, query, body string) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI(callbacks.Prefix + kind + "?" + query)
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBodyString(body)
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
		before := s.relay.Queued()
		s.relay.Serve(&ctx, kind)
		if s.relay.Queued() == before {
			return
		}
		// Something was queued: the query must verify on its own.
		q := ctx.QueryArgs()
		sig := callbacks.Sign(key, kind, string(q.Peek("fe")), string(q.Peek("m")), string(q.Peek("mid")), string(q.Peek("be")), string(q.Peek("url")), string(q.Peek("at")))
		if string(q.Peek("sig")) != sig || string(q.Peek("be")) != "b" || string(q.Peek("m")) != "fe~m" {
			t.Fatalf("relay queued for an unsigned or foreign request: %s %s", kind, query)
		}
		if ctx.Response.StatusCode() != 200 || string(ctx.Response.Body()) != "ok" {
			t.Fatalf("a queued relay answered %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	})
}
