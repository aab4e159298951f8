package cluster

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
)

// TestPlacementServerTags: meta_server-tag through the real binaries, as
// Scalelite places it. Node 0 is untagged, node 1 carries foo, node 2 bar.
func TestPlacementServerTags(t *testing.T) {
	c := startBBBCluster(t, 3)
	for i, tags := range map[int]string{1: `{"tags":["foo"]}`, 2: `{"tags":["bar"]}`} {
		if _, err := c.Ctl(c.Peers[i], "set", "backend", "-j", tags, c.hosts[i]); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitConverged(5 * time.Second)
	cases := []struct {
		tag   string
		nodes string // where it may land; "" = refused with serverTagUnavailable
	}{
		{"foo", "1"},       // the only match, although more loaded after a few creates
		{"foo!", "1"},      //
		{"none", "0"},      // untagged nodes only
		{"none!", "0"},     //
		{"bar,foo!", "12"}, // one of the listed tags
		{"bar;foo", "12"},  // Scalelite's separator
		{"baz", "012"},     // unknown, optional: any allowed node
		{"baz!", ""},       // unknown, required: refused
		{"!", "012"},       // Scalelite: no tag at all
	}
	for round := 0; round < 2; round++ { // the second round with load on every node
		for i, tc := range cases {
			p := c.Peers[(i+round)%3]
			mid := fmt.Sprintf("tag-%d-%d", round, i)
			ans := c.client(p).Get(t, "create", "meetingID="+mid+"&moderatorPW=mp&meta_server-tag="+url.QueryEscape(tc.tag))
			if tc.nodes == "" {
				if ans.ReturnCode != "FAILED" || ans.MessageKey != "serverTagUnavailable" {
					t.Fatalf("meta_server-tag=%s on %s: %s", tc.tag, p.ID, ans.Raw)
				}
				continue
			}
			if ans.ReturnCode != "SUCCESS" {
				t.Fatalf("meta_server-tag=%s on %s: %s", tc.tag, p.ID, ans.Raw)
			}
			n := c.nodeRunningMeeting(mid)
			if n < 0 || !strings.Contains(tc.nodes, fmt.Sprint(n)) {
				t.Fatalf("meta_server-tag=%s: meeting on node %d, want one of %s", tc.tag, n, tc.nodes)
			}
			// The parameter reaches the node as the client sent it.
			info := c.client(c.Peers[(i+round+1)%3]).Get(t, "getMeetingInfo", "meetingID="+mid)
			if !strings.Contains(info.Raw, "<server-tag>"+xmlEscape(tc.tag)+"</server-tag>") {
				t.Fatalf("meta_server-tag=%s not passed on: %s", tc.tag, info.Raw)
			}
		}
	}
	// Without the parameter, tags reserve nothing: new meetings spread over
	// all three nodes.
	before := []int{c.nodes[0].MeetingCount(), c.nodes[1].MeetingCount(), c.nodes[2].MeetingCount()}
	for i := 0; i < 9; i++ {
		if ans := c.client(c.Peers[i%3]).Get(t, "create", fmt.Sprintf("meetingID=plain-%d", i)); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	for i := range c.nodes {
		if c.nodes[i].MeetingCount() == before[i] {
			t.Fatalf("node %d got none of 9 untagged creates (before %v)", i, before)
		}
	}
}

// nodeRunningMeeting is the index of the fake node that runs a moodle meeting.
func (c *bbbCluster) nodeRunningMeeting(mid string) int {
	for i, n := range c.nodes {
		for _, id := range n.MeetingIDs() {
			if id == "moodle~"+mid {
				return i
			}
		}
	}
	return -1
}

// TestPlacementAgentLoadFactor: an agent started with CONCLAVE_LOAD_FACTOR
// beside a node that is already a backend writes the factor into the
// backend's settings, and placement follows it; an operator's later
// setting holds while the agent runs.
func TestPlacementAgentLoadFactor(t *testing.T) {
	c := harness.StartCluster(t, 3)
	dir := t.TempDir()
	heavy, light := newFakeNode(t, dir, "heavy"), newFakeNode(t, dir, "light")
	// heavy is registered before its agent starts (load factor 1).
	if err := c.API(c.Peers[2], "POST", "/api/v1/backends", adminapi.AddBackendRequest{URL: heavy.api, Secret: heavy.secret}, nil); err != nil {
		t.Fatal(err)
	}
	startAgent(t, c, heavy, "CONCLAVE_LOAD_FACTOR=10")
	startAgent(t, c, light)
	within(t, 10*time.Second, "both registered", func() bool {
		_, a := backendByHost(t, c, heavy.host)
		_, b := backendByHost(t, c, light.host)
		return a && b
	})
	for _, n := range []*fakeNode{heavy, light} {
		if _, err := c.Ctl(c.Peers[1], "enable", "backend", n.host); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "moodle", Secret: frontendSecret}, nil); err != nil {
		t.Fatal(err)
	}
	took := within(t, 10*time.Second, "heavy's load factor 10 in the state, both ready", func() bool {
		h, _ := backendByHost(t, c, heavy.host)
		l, _ := backendByHost(t, c, light.host)
		return h.LoadFactor == 10 && l.LoadFactor == 1 && h.NodeState == "ready" && l.NodeState == "ready"
	})
	t.Logf("PLACEMENT: the agent's load factor reached the state %v after enable", took.Round(10*time.Millisecond))
	if out, err := c.Ctl(c.Peers[2], "show", "backend", heavy.host); err != nil || !strings.Contains(out, "LoadFactor:  10") {
		t.Fatalf("show backend: %s %v", out, err)
	}
	c.WaitConverged(5 * time.Second)
	// Each meeting weighs 5: after the first, heavy's load is 50 per
	// meeting and light's 5, so light takes nearly all.
	cl := harness.BBBClient{Base: "http://" + c.Peers[0].HTTP + "/bigbluebutton/api", Secret: frontendSecret}
	for i := 0; i < 8; i++ {
		if ans := cl.Get(t, "create", fmt.Sprintf("meetingID=lf-%d", i)); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	if h, l := heavy.srv.MeetingCount(), light.srv.MeetingCount(); h > 1 || l < 7 {
		t.Fatalf("placement ignored the agent's load factor: heavy %d, light %d of 8", h, l)
	}
	// The operator's word holds until the agent starts again.
	if _, err := c.Ctl(c.Peers[0], "set", "backend", "-j", `{"load_factor":2}`, heavy.host); err != nil {
		t.Fatal(err)
	}
	testwait.AssertUntilEvery(t, 2*time.Second, 200*time.Millisecond, func() error {
		if h, _ := backendByHost(t, c, heavy.host); h.LoadFactor != 2 {
			return fmt.Errorf("the running agent overwrote the operator's load factor: %v", h.LoadFactor)
		}
		return nil
	})
}

// TestPlacementDefaultPresentationForce: b3scale's force option replaces
// the client's slides; without it they stay.
func TestPlacementDefaultPresentationForce(t *testing.T) {
	c := startBBBCluster(t, 1)
	slides := `<?xml version="1.0"?><modules><module name="presentation"><document url="https://lms.example/own.pdf"/></module></modules>`
	set := func(settings string) {
		t.Helper()
		if _, err := c.Ctl(c.Peers[1], "set", "frontend", "-j", settings, "moodle"); err != nil {
			t.Fatal(err)
		}
		c.WaitConverged(5 * time.Second)
	}
	create := func(p *harness.Peer, mid string) []string {
		t.Helper()
		if a := harness.Fetch(t, c.client(p).URL("create", "meetingID="+mid), "application/xml", slides); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create %s: %s", mid, a.Raw)
		}
		return c.nodes[0].Presentations("moodle~" + mid)
	}
	set(`{"default_presentation":{"url":"https://lb.example/default.pdf"}}`)
	if p := create(c.Peers[0], "own-slides"); fmt.Sprint(p) != "[https://lms.example/own.pdf]" {
		t.Fatalf("without force: %v", p)
	}
	set(`{"default_presentation":{"url":"https://lb.example/default.pdf","force":true}}`)
	if p := create(c.Peers[2], "forced"); fmt.Sprint(p) != "[https://lb.example/default.pdf]" {
		t.Fatalf("with force: %v", p)
	}
	var fe adminapi.Frontend
	var st fsm.FrontendSettings
	err := c.API(c.Peers[1], "GET", "/api/v1/frontends/moodle", nil, &fe)
	if err == nil {
		err = json.Unmarshal(fe.Settings, &st)
	}
	if err != nil || st.DefaultPresentation == nil || !st.DefaultPresentation.Force {
		t.Fatalf("force not shown by the admin API: settings %s, %v", fe.Settings, err)
	}
}
