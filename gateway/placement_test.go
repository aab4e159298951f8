package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/bbbapi"
)

// Through the BBB API: the tag chooses the node, reaches the node as the
// client sent it, and a required tag no node carries gets Scalelite's
// FAILED serverTagUnavailable (HTTP 200).
func TestCreateWithServerTag(t *testing.T) {
	r := newRig(t, 3)
	r.mc.MustApply(&fsm.SetBackendSettings{ID: r.ids[2], Patch: []byte(`{"tags":["foo"]}`)})
	c := r.client("fe1")
	for i, tc := range []struct{ tag, want string }{{"foo", "2"}, {"foo!", "2"}, {"none", "01"}, {"none!", "01"}, {"Foo", "012"}} {
		id := fmt.Sprintf("m%d", i)
		a := c.Get(t, "create", "meetingID="+id+"&meta_server-tag="+tc.tag)
		if a.ReturnCode != "SUCCESS" {
			t.Fatalf("%s: %s", tc.tag, a.Raw)
		}
		if n := r.nodeOf("fe1", id); !strings.Contains(tc.want, fmt.Sprint(n)) {
			t.Fatalf("meta_server-tag=%s: on node %d, want one of %s", tc.tag, n, tc.want)
		}
		info := c.Get(t, "getMeetingInfo", "meetingID="+id)
		if !strings.Contains(info.Raw, "<server-tag>"+tc.tag+"</server-tag>") {
			t.Fatalf("meta_server-tag=%s did not reach the node: %s", tc.tag, info.Raw)
		}
	}
	u := c.URL("create", "meetingID=xx&meta_server-tag=bar,baz!")
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	a := c.Get(t, "create", "meetingID=xx&meta_server-tag=bar,baz!")
	if a.ReturnCode != "FAILED" || a.MessageKey != bbb.KeyServerTagUnavailable || !strings.Contains(a.Raw, "bar,baz") {
		t.Fatalf("required tag no node has: %s", a.Raw)
	}
	if _, ok := r.mc.FSM().Meeting(bbbapi.InternalMeetingID("fe1", "xx")); ok {
		t.Fatal("a refused create left a claim")
	}
	// A frontend's create_override_params may set the tag for all its creates.
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe2", Patch: []byte(`{"create_override_params":{"meta_server-tag":"foo!"}}`)})
	if a := r.client("fe2").Get(t, "create", "meetingID=yy&meta_server-tag=none"); a.ReturnCode != "SUCCESS" || r.nodeOf("fe2", "yy") != 2 {
		t.Fatalf("override tag: node %d: %s", r.nodeOf("fe2", "yy"), a.Raw)
	}
}

// default_presentation without force fills in for a create without
// slides; with force it replaces the client's slides (b3scale).
func TestDefaultPresentationForce(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	slides := `<?xml version="1.0"?><modules><module name="presentation"><document url="https://client.example/own.pdf"/></module></modules>`
	post := func(id string) {
		t.Helper()
		a := fetch(t, c.URL("create", "meetingID="+id), "application/xml", slides)
		if a.ReturnCode != "SUCCESS" {
			t.Fatalf("create %s: %s", id, a.Raw)
		}
	}
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe1", Patch: []byte(`{"default_presentation":{"url":"https://lb.example/default.pdf"}}`)})
	post("own")
	if p := r.nodes[0].Presentations("fe1~own"); fmt.Sprint(p) != "[https://client.example/own.pdf]" {
		t.Fatalf("without force the client's slides must stay: %v", p)
	}
	if a := fetch(t, c.URL("create", "meetingID=form"), "application/x-www-form-urlencoded", "name=x"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if p := r.nodes[0].Presentations("fe1~form"); fmt.Sprint(p) != "[https://lb.example/default.pdf]" {
		t.Fatalf("a form create carries no slides: the default applies: %v", p)
	}
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe1", Patch: []byte(`{"default_presentation":{"force":true}}`)})
	if fe, _ := r.mc.FSM().Frontend("fe1"); fe.Settings.DefaultPresentation == nil || !fe.Settings.DefaultPresentation.Force {
		t.Fatalf("force not stored: %+v", fe.Settings.DefaultPresentation)
	}
	post("forced")
	if p := r.nodes[0].Presentations("fe1~forced"); fmt.Sprint(p) != "[https://lb.example/default.pdf]" {
		t.Fatalf("force must replace the client's slides: %v", p)
	}
	c.Get(t, "create", "meetingID=plain")
	if p := r.nodes[0].Presentations("fe1~plain"); fmt.Sprint(p) != "[https://lb.example/default.pdf]" {
		t.Fatalf("forced default, GET create: %v", p)
	}
}

// The agent's load-factor PATCH (its backend named by its escaped API URL)
// is accepted with its own agent token and refused for another node.
func TestAgentPatchesItsOwnLoadFactor(t *testing.T) {
	mc := NewMemCluster()
	s := New(Config{JWTSecret: "jwt-s3cret"}, mc)
	api := "https://node1.example.org/bigbluebutton/api/"
	mc.MustApply(&fsm.AddBackend{ID: "b1", URL: api, Secret: "x"})
	mc.MustApply(&fsm.AddBackend{ID: "b2", URL: "https://node2.example.org/bigbluebutton/api/", Secret: "x"})
	mine, _ := auth.Mint("jwt-s3cret", "node1.example.org:443", []string{auth.ScopeAgent}, 0)
	path := "/api/v1/backends/" + url.PathEscape(api)
	if r := do(s, "10.0.0.1", "PATCH", path, mine, `{"load_factor":2.5}`); r.StatusCode() != 200 {
		t.Fatalf("agent PATCH of its own backend: %d %s", r.StatusCode(), r.Body())
	}
	if b, _ := mc.FSM().Backend("b1"); b.LoadFactor() != 2.5 {
		t.Fatalf("load factor %v", b.LoadFactor())
	}
	other := "/api/v1/backends/" + url.PathEscape("https://node2.example.org/bigbluebutton/api/")
	if r := do(s, "10.0.0.1", "PATCH", other, mine, `{"load_factor":9}`); r.StatusCode() != 403 {
		t.Fatalf("agent PATCH of another backend: %d %s", r.StatusCode(), r.Body())
	}
}
