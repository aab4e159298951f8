package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/recordings"
)

// FuzzGetRecordingsPaging throws arbitrary offset and limit values (and
// any other parameter) at a signed getRecordings: the answer is always
// BBB's SUCCESS with at most a page of recordings, and nothing panics.
func FuzzGetRecordingsPaging(f *testing.F) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	const total = 7
	for i := 0; i < total; i++ {
		mc.MustApply(&fsm.PutRecordings{Recordings: []fsm.Recording{{RecordID: fmt.Sprintf("r%d", i), Frontend: "fe", MeetingID: "m",
			BackendID: "b", State: "published", XML: fmt.Sprintf("<recording><recordID>r%d</recordID></recording>", i)}}})
	}
	s := New(Config{}, mc)
	for _, seed := range [][2]string{{"0", "5"}, {"99999999999999999999", "5"}, {"9223372036854775800", "5"},
		{"-1", "-1"}, {"2147483647", "2147483647"}, {"", ""}, {"3", ""}, {"0x10", "1e3"}, {"+4", " 2"}} {
		f.Add(seed[0], seed[1], "")
	}
	f.Add("1", "2", "state=any&meta_x=%25")
	f.Fuzz(func(t *testing.T, offset, limit, extra string) {
		q := "offset=" + url.QueryEscape(offset) + "&limit=" + url.QueryEscape(limit)
		for _, kv := range strings.Split(extra, "&") { // more parameters, each escaped
			if k, v, _ := strings.Cut(kv, "="); k != "" {
				q += "&" + url.QueryEscape(k) + "=" + url.QueryEscape(v)
			}
		}
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI("/bigbluebutton/api/getRecordings?" + bbb.SignQuery(bbb.SHA256, "getRecordings", q, "s"))
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}, nil)
		s.Handle(&ctx)
		body := string(ctx.Response.Body())
		if guardCounter(s.guard.Panics) != 0 {
			t.Fatalf("offset=%q limit=%q: a handler panicked: %s", offset, limit, body)
		}
		if ctx.Response.StatusCode() != 200 || !strings.Contains(body, "<returncode>") {
			t.Fatalf("offset=%q limit=%q: %d %s", offset, limit, ctx.Response.StatusCode(), body)
		}
		if !strings.Contains(body, "SUCCESS") {
			return // e.g. a duplicated recordID in extra: a validationError
		}
		o, l, paged := recordings.PagingParams([]byte(ctx.QueryArgs().Peek("offset")), []byte(ctx.QueryArgs().Peek("limit")))
		if n := strings.Count(body, "<recording>"); paged && n > l || paged && o >= total && n != 0 || n > total {
			t.Fatalf("offset=%q limit=%q: %d recordings for offset %d limit %d: %s", offset, limit, n, o, l, body)
		}
	})
}

// FuzzAdminAPI feeds arbitrary methods, paths and bodies to the admin API
// of an in-memory cluster: nothing panics, every answer is JSON, and every
// error is a JSON error with an HTTP error status.
func FuzzAdminAPI(f *testing.F) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	mc.MustApply(&fsm.AddBackend{ID: "b1", URL: "https://n1.example.org/bigbluebutton/api/", Secret: "x"})
	s := New(Config{}, mc)
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"}
	f.Add(uint8(1), "frontends", `{"key":"k","secret":"s","settings":{"create_default_params":{"a":"b"}}}`)
	f.Add(uint8(2), "frontends/fe", `{"create_override_params":{"x":null},"required_tags":["a"]}`)
	f.Add(uint8(2), "frontends/fe", `{"default_presentation":{"url":""}}`)
	f.Add(uint8(1), "backends", `{"url":"https://n2.example.org","secret":"x","settings":{"load_factor":1e309}}`)
	f.Add(uint8(2), "backends/b1", `{"tags":[1,2]}`)
	f.Add(uint8(2), "backends/n1.example.org", `[]`)
	f.Add(uint8(1), "backends/b1/enable", ``)
	f.Add(uint8(3), "backends/b1", ``)
	f.Add(uint8(1), "peers", `{"id":"x","raft_addr":"127.0.0.1:1"}`)
	f.Add(uint8(0), "recordings", ``)
	f.Add(uint8(1), "frontends", `{"key":"k2","secret":"s","settings":{"create_default_params":{"":"`+strings.Repeat("v", 5000)+`"}}}`)
	f.Add(uint8(2), "frontends/fe", "\x00{")
	f.Fuzz(func(t *testing.T, m uint8, path, body string) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.SetMethod(methods[int(m)%len(methods)])
		req.SetRequestURI("/api/v1/" + path)
		if body != "" {
			req.SetBodyString(body)
			req.Header.SetContentType("application/json")
		}
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
		s.Handle(&ctx)
		status, answer := ctx.Response.StatusCode(), ctx.Response.Body()
		if guardCounter(s.guard.Panics) != 0 {
			t.Fatalf("%s %q %q: a handler panicked: %d %s", req.Header.Method(), path, body, status, answer)
		}
		if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
			if ctx.IsHead() || !strings.HasPrefix(string(ctx.Path()), "/api/v1/") {
				return // not routed to the admin API (the path left it)
			}
			t.Fatalf("%s %q: content type %q: %s", req.Header.Method(), path, ct, answer)
		}
		if !json.Valid(answer) {
			t.Fatalf("%s %q %q: not JSON: %d %s", req.Header.Method(), path, body, status, answer)
		}
		if status >= 400 {
			var e adminapi.Error
			if json.Unmarshal(answer, &e) != nil || e.Error == "" || e.Code == "" {
				t.Fatalf("%s %q %q: error %d without a JSON error: %s", req.Header.Method(), path, body, status, answer)
			}
		} else if status < 200 || status > 299 {
			t.Fatalf("%s %q %q: status %d", req.Header.Method(), path, body, status)
		}
	})
}
