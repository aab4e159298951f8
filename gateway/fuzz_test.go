package gateway

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
)

// FuzzBBBRequest throws arbitrary paths, queries and bodies at the gateway:
// nothing may panic, and BBB API paths always answer HTTP 200 XML.
func FuzzBBBRequest(f *testing.F) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	// A backend that is never reachable: calls to it fail fast.
	mc.MustApply(&fsm.AddBackend{ID: "b", URL: "http://127.0.0.1:1/bigbluebutton/api/", Secret: "x"})
	s := New(Config{}, mc)
	sign := func(call, q string) string { return bbb.SignQuery(bbb.SHA1, call, q, "s") }
	f.Add("GET", "/bigbluebutton/api/create", sign("create", "meetingID=m1&name=a+b"), "", "")
	f.Add("GET", "/bigbluebutton/api/join", sign("join", "meetingID=m1&fullName=x"), "", "")
	f.Add("POST", "/bbb/fe/bigbluebutton/api/insertDocument", sign("insertDocument", "meetingID=m1"), "application/xml", "<modules/>")
	f.Add("GET", "/bigbluebutton/api/getMeetings", "checksum=zz&&&=", "", "")
	f.Add("GET", "/bbb//bigbluebutton/api/", "%zz", "", "")
	f.Add("POST", "/api/v1/backends", "", "application/json", `{"url":1}`)
	f.Fuzz(func(t *testing.T, method, path, query, ctype, body string) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.SetMethod(method)
		req.SetRequestURI(path + "?" + query)
		req.Header.SetContentType(ctype)
		req.SetBodyString(body)
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
		s.Handle(&ctx)
		if len(path) > 0 && string(ctx.Path()) != "" && ctx.Response.StatusCode() == 0 {
			t.Fatal("no status")
		}
	})
}
