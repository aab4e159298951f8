package cluster

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

func (c *bbbCluster) backends(t *testing.T) map[string]adminapi.Backend {
	t.Helper()
	out, err := c.Ctl(c.Peers[0], "show", "backends", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var bs []adminapi.Backend
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatal(err)
	}
	m := map[string]adminapi.Backend{}
	for _, b := range bs {
		u, _ := url.Parse(b.URL)
		m[u.Host] = b
	}
	return m
}

// joinHost returns the host a join redirect for meeting mid points at.
func (c *bbbCluster) joinHost(t *testing.T, p *harness.Peer, mid string) string {
	t.Helper()
	resp, err := harness.NoRedirect.Get(c.client(p).URL("join", "meetingID="+mid+"&fullName=X&password=ap"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 {
		return ""
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Host
}

func (c *bbbCluster) create(t *testing.T, p *harness.Peer, mid string) harness.Answer {
	t.Helper()
	return c.client(p).Get(t, "create", "meetingID="+mid+"&moderatorPW=mp&attendeePW=ap")
}

// TestBackendLifecycle: an added-but-not-enabled node gets nothing; a
// cordoned node keeps its meetings but takes no new ones; placement over
// two equal nodes is even; decommission waits for the last meeting.
func TestBackendLifecycle(t *testing.T) {
	c := startBBBCluster(t, 2) // B and C, enabled
	a, apiA, _ := fakebbb.StartTest(t, "node-a-secret")
	if _, err := c.Ctl(c.Peers[1], "add", "backend", apiA, "--secret", "node-a-secret"); err != nil {
		t.Fatal(err)
	}
	hostA, hostB, hostC := strings.TrimSuffix(strings.TrimPrefix(apiA, "http://"), "/bigbluebutton/api/"), c.hosts[0], c.hosts[1]

	// show backends: the block format, every field in -o json.
	out, err := c.Ctl(c.Peers[2], "show", "backends")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Host:        " + apiA, "AdminState:  init", "NodeState:   ready    AdminState:  ready", "MC/AC/R:     0/0/0.00", "LoadFactor:  1", "Latency:     "} {
		if !strings.Contains(out, want) {
			t.Fatalf("show backends lacks %q:\n%s", want, out)
		}
	}

	// 40 creates over B and C land 40–60 % on each; none on A.
	for i := 0; i < 40; i++ {
		if ans := c.create(t, c.Peers[i%3], fmt.Sprintf("even%d", i)); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	if a.MeetingCount() != 0 {
		t.Fatalf("%d meetings landed on a backend that was never enabled", a.MeetingCount())
	}
	nb, nc := c.nodes[0].MeetingCount(), c.nodes[1].MeetingCount()
	t.Logf("PLACEMENT: 40 creates -> %d on B, %d on C", nb, nc)
	if nb < 16 || nb > 24 || nb+nc != 40 {
		t.Fatalf("uneven placement: B %d, C %d", nb, nc)
	}

	// Cordon B: new meetings go to C, B's meetings are still joined on B.
	var onB string
	for _, id := range c.nodes[0].MeetingIDs() {
		onB = strings.TrimPrefix(id, "moodle~")
		break
	}
	if _, err := c.Ctl(c.Peers[0], "disable", "backend", hostB); err != nil {
		t.Fatal(err)
	}
	before := c.nodes[1].MeetingCount()
	for i := 0; i < 6; i++ {
		c.create(t, c.Peers[i%3], fmt.Sprintf("after-cordon%d", i))
	}
	if c.nodes[1].MeetingCount() != before+6 || a.MeetingCount() != 0 {
		t.Fatalf("after cordoning B, new meetings should all go to C")
	}
	for _, p := range c.Peers {
		if h := c.joinHost(t, p, onB); h != hostB {
			t.Fatalf("a meeting on cordoned B joined via %s to %q", p.ID, h)
		}
	}

	// enable A: it becomes placeable.
	if _, err := c.Ctl(c.Peers[0], "enable", "backend", hostA); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if b := c.backends(t)[hostA]; b.NodeState != "ready" || b.AdminState != "ready" {
			return fmt.Errorf("A: NodeState %q, AdminState %q", b.NodeState, b.AdminState)
		}
		return nil
	})
	c.create(t, c.Peers[0], "to-a")
	if a.MeetingCount() != 1 {
		t.Fatal("the least loaded, enabled node A did not get the new meeting")
	}

	// Decommission C while it runs meetings: it serves them, takes no new
	// ones, and leaves the cluster when the last one ends.
	if out, err := c.Ctl(c.Peers[1], "delete", "backend", hostC); err != nil || !strings.Contains(out, "decommissioned") {
		t.Fatalf("delete: %v %s", err, out)
	}
	if c.backends(t)[hostC].AdminState != "decommissioned" {
		t.Fatal("C not decommissioned")
	}
	onC := c.nodes[1].MeetingIDs()
	if h := c.joinHost(t, c.Peers[2], strings.TrimPrefix(onC[0], "moodle~")); h != hostC {
		t.Fatalf("a decommissioned node's meeting joined to %q", h)
	}
	c.create(t, c.Peers[2], "not-on-c")
	if c.nodes[1].MeetingCount() != len(onC) {
		t.Fatal("a new meeting went to a decommissioned node")
	}
	for i, id := range onC {
		if ans := c.client(c.Peers[i%3]).Get(t, "end", "meetingID="+strings.TrimPrefix(id, "moodle~")+"&password=mp"); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	harness.Eventually(t, 5*time.Second, func() error {
		if _, ok := c.backends(t)[hostC]; ok {
			return fmt.Errorf("C still listed after its last meeting ended")
		}
		return nil
	})

	// --force removes at once, meetings and all; their next call is notFound.
	if _, err := c.Ctl(c.Peers[0], "delete", "backend", hostB, "--force"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.backends(t)[hostB]; ok {
		t.Fatal("--force left B listed")
	}
	// Peers read their own replica: a follower learns of the removal from
	// the leader's next append, a few milliseconds later.
	c.WaitConverged(5 * time.Second)
	if ans := c.client(c.Peers[1]).Get(t, "getMeetingInfo", "meetingID="+onB); ans.MessageKey != bbb.KeyNotFound {
		t.Fatalf("a force-removed node's meeting: %s", ans.Raw)
	}
	if ans := c.create(t, c.Peers[1], onB); ans.ReturnCode != "SUCCESS" || c.joinHost(t, c.Peers[0], onB) != hostA {
		t.Fatalf("re-create of a force-removed node's meeting: %s", ans.Raw)
	}
}

// TestNodeDeathAndFailover: a dead node is `error` within the prober's
// bound, ready again when it returns; its meeting is re-placed by a create.
func TestNodeDeathAndFailover(t *testing.T) {
	c := startBBBCluster(t, 2)
	if ans := c.create(t, c.Peers[0], "lecture"); ans.ReturnCode != "SUCCESS" {
		t.Fatal(ans.Raw)
	}
	dead := 0
	if len(c.nodes[1].MeetingIDs()) == 1 {
		dead = 1
	}
	h := gateway.DefaultHealth
	bound := h.Interval*time.Duration(h.FailAfter) + h.Timeout
	c.nodes[dead].Close()
	start := time.Now()
	harness.Eventually(t, bound+2*time.Second, func() error {
		if b := c.backends(t)[c.hosts[dead]]; b.NodeState != "error" {
			return fmt.Errorf("NodeState %s", b.NodeState)
		}
		return nil
	})
	t.Logf("HEALTH: NodeState error %v after the node died (bound %v)", time.Since(start).Round(100*time.Millisecond), bound)

	// The meeting of the dead node: a new create moves it to the live one.
	if ans := c.create(t, c.Peers[2], "lecture"); ans.ReturnCode != "SUCCESS" {
		t.Fatal(ans.Raw)
	}
	if hst := c.joinHost(t, c.Peers[1], "lecture"); hst != c.hosts[1-dead] {
		t.Fatalf("after failover the meeting joins to %q, want the live node %s", hst, c.hosts[1-dead])
	}
	if _, err := c.nodes[dead].Start(c.hosts[dead]); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if b := c.backends(t)[c.hosts[dead]]; b.NodeState != "ready" {
			return fmt.Errorf("NodeState %s", b.NodeState)
		}
		return nil
	})
}

// TestRequiredTags: a frontend's meetings go only to nodes with its tags;
// with none available the create fails with a BBB error.
func TestRequiredTags(t *testing.T) {
	c := startBBBCluster(t, 2)
	if _, err := c.Ctl(c.Peers[0], "set", "backend", "-j", `{"tags":["bbb_30","gpu"]}`, c.hosts[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ctl(c.Peers[1], "set", "frontend", "-j", `{"required_tags":["gpu"]}`, "moodle"); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(5 * time.Second)
	for i := 0; i < 6; i++ {
		if ans := c.create(t, c.Peers[i%3], fmt.Sprintf("tagged%d", i)); ans.ReturnCode != "SUCCESS" {
			t.Fatal(ans.Raw)
		}
	}
	if c.nodes[0].MeetingCount() != 0 || c.nodes[1].MeetingCount() != 6 {
		t.Fatalf("tagged placement: untagged node %d, tagged node %d", c.nodes[0].MeetingCount(), c.nodes[1].MeetingCount())
	}
	if _, err := c.Ctl(c.Peers[0], "disable", "backend", c.hosts[1]); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(5 * time.Second)
	ans := c.create(t, c.Peers[2], "no-gpu-left")
	if ans.ReturnCode != "FAILED" || ans.MessageKey == "" {
		t.Fatalf("create with no tagged node available: %s", ans.Raw)
	}
}
