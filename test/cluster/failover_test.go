package cluster

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

func (c *bbbCluster) boundMeetings(t *testing.T, p *harness.Peer) map[string]adminapi.Meeting {
	t.Helper()
	var ms []adminapi.Meeting
	if err := c.API(p, "GET", "/api/v1/meetings", nil, &ms); err != nil {
		t.Fatal(err)
	}
	out := map[string]adminapi.Meeting{}
	for _, m := range ms {
		out[m.InternalID] = m
	}
	return out
}

// runningOn is the index of the node that runs a meeting (-1: none),
// leaving out node skip (a closed fake node keeps its meetings in memory).
func (c *bbbCluster) runningOn(internal string, skip int) int {
	for i, n := range c.nodes {
		if i == skip {
			continue
		}
		for _, id := range n.MeetingIDs() {
			if id == internal {
				return i
			}
		}
	}
	return -1
}

func (c *bbbCluster) hostIndex(host string) int {
	for i, h := range c.hosts {
		if h == host {
			return i
		}
	}
	return -1
}

// tryJoin joins through p and returns the redirect's host ("" and the
// answer's body when there is no redirect).
func (c *bbbCluster) failoverJoin(p *harness.Peer, query string) (host string, status int, err error) {
	resp, err := harness.NoRedirect.Get(c.client(p).URL("join", query))
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil {
		return "", resp.StatusCode, nil
	}
	return loc.Host, resp.StatusCode, nil
}

func (c *bbbCluster) createsExcept(skip int) int {
	n := 0
	for i, node := range c.nodes {
		if i != skip {
			n += node.Requests("create")
		}
	}
	return n
}

// TestFailoverDeadNode: the node under running meetings is killed. Once
// the cluster declares it dead, joins through every peer land on one
// re-created meeting on a live node with the same parameters; until then
// isMeetingRunning and getMeetingInfo answer as BBB does for a meeting it
// does not run; 20 concurrent joins through the three peers make exactly one
// create. It measures the time from the node's death to the first user sent
// to a live node.
func TestFailoverDeadNode(t *testing.T) {
	c := startBBBCluster(t, 3)
	// Two meetings per node: the killed node runs "lecture-0" and another.
	for i := 0; i < 6; i++ {
		q := fmt.Sprintf("meetingID=lecture-%d&name=Lecture+%d&attendeePW=ap%d&moderatorPW=mp%d&meta_course=c%d", i, i, i, i, i)
		if a := c.client(c.Peers[i%3]).Get(t, "create", q); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
	}
	dead := c.runningOn("moodle~lecture-0", -1)
	other := ""
	for _, id := range c.nodes[dead].MeetingIDs() {
		if id != "moodle~lecture-0" {
			other = strings.TrimPrefix(id, "moodle~")
		}
	}
	if dead < 0 || other == "" {
		t.Fatalf("placement: lecture-0 on node %d, with %v", dead, c.nodes[dead].MeetingIDs())
	}
	testwait.Sleep(500 * time.Millisecond) // the create parameters are committed in the background (nothing shows it)

	killed := time.Now()
	c.nodes[dead].Close()
	var first time.Duration
	var via string
	i := 0
	testwait.Eventually(t, 30*time.Second, func() error {
		p := c.Peers[i%3]
		i++
		host, _, err := c.failoverJoin(p, "meetingID=lecture-0&fullName=Ann&password=ap0")
		if err == nil && host != "" && host != c.hosts[dead] {
			first, via = time.Since(killed), p.ID
			return nil
		}
		return fmt.Errorf("no join was sent to a live node since the node's death (last: %q %v)", host, err)
	})
	t.Logf("FAILOVER: node killed -> first user redirected to a live node: %v (through %s)", first.Round(time.Millisecond), via)

	live := c.runningOn("moodle~lecture-0", dead)
	if live < 0 || live == dead {
		t.Fatalf("lecture-0 runs on node %d after failover", live)
	}
	for _, p := range c.Peers {
		if host, status, err := c.failoverJoin(p, "meetingID=lecture-0&fullName=Bob&password=mp0"); err != nil || host != c.hosts[live] {
			t.Fatalf("join through %s: %q HTTP %d %v, want node %s", p.ID, host, status, err, c.hosts[live])
		}
	}
	direct := harness.BBBClient{Base: "http://" + c.hosts[live] + "/bigbluebutton/api", Secret: c.secrets[live]}
	info := direct.Get(t, "getMeetingInfo", "meetingID=moodle~lecture-0")
	for _, want := range []string{"<meetingID>moodle~lecture-0</meetingID>", "<attendeePW>ap0</attendeePW>",
		"<moderatorPW>mp0</moderatorPW>", "<course>c0</course>", "<meetingName>Lecture 0</meetingName>", "/conclave/callback/end?"} {
		if !strings.Contains(info.Raw, want) {
			t.Errorf("re-created meeting lacks %s: %s", want, info.Raw)
		}
	}
	holders := 0
	for i, n := range c.nodes {
		if i != dead && n.MeetingCount() > 0 {
			for _, id := range n.MeetingIDs() {
				if id == "moodle~lecture-0" {
					holders++
				}
			}
		}
	}
	if holders != 1 {
		t.Fatalf("lecture-0 runs on %d live nodes", holders)
	}

	// The other meeting of the dead node: not running, as BBB answers,
	// until someone joins (the node is declared dead by now).
	for _, p := range c.Peers {
		if a := c.client(p).Get(t, "isMeetingRunning", "meetingID="+other); a.ReturnCode != "SUCCESS" || a.Running != "false" {
			t.Fatalf("isMeetingRunning through %s of a meeting on a dead node: %s", p.ID, a.Raw)
		}
		if a := c.client(p).Get(t, "getMeetingInfo", "meetingID="+other); a.ReturnCode != "FAILED" || a.MessageKey != bbb.KeyNotFound {
			t.Fatalf("getMeetingInfo through %s of a meeting on a dead node: %s", p.ID, a.Raw)
		}
	}
	// 20 users rejoin at once through the three peers: one create.
	before := c.createsExcept(dead)
	var wg sync.WaitGroup
	hosts := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			host, status, err := c.failoverJoin(c.Peers[i%3], fmt.Sprintf("meetingID=%s&fullName=U%d&role=viewer", other, i))
			if host == "" {
				host = fmt.Sprintf("no redirect: HTTP %d %v", status, err)
			}
			if host == c.hosts[dead] {
				t.Logf("join %d through %s went to the dead node", i, c.Peers[i%3].ID)
			}
			hosts <- host
		}(i)
	}
	wg.Wait()
	close(hosts)
	seen := map[string]int{}
	for h := range hosts {
		seen[h]++
	}
	if made := c.createsExcept(dead) - before; made != 1 || len(seen) != 1 {
		t.Fatalf("20 concurrent joins made %d creates, went to %v (dead node %s; %s runs on node %d; hosts %v)", made, seen, c.hosts[dead], other, c.runningOn("moodle~"+other, dead), c.hosts)
	}
	for h := range seen {
		if n := c.hostIndex(h); n < 0 || n == dead || c.runningOn("moodle~"+other, dead) != n {
			t.Fatalf("joins sent to %s; %s runs on node %d", h, other, c.runningOn("moodle~"+other, dead))
		}
	}
	ms := c.boundMeetings(t, c.Peers[1])
	if m := ms["moodle~"+other]; m.Recreations != 1 || m.Recreating != 0 || m.Lost {
		t.Fatalf("state after the concurrent re-creation: %+v", m)
	}
}

// TestFailoverNodeRestartedEmpty: a node restarts without its meetings
// (faster than the cluster would declare it dead); the prober's listing
// marks them lost, and the next join creates each again on that node.
func TestFailoverNodeRestartedEmpty(t *testing.T) {
	c := startBBBCluster(t, 2)
	if a := c.client(c.Peers[0]).Get(t, "create", "meetingID=seminar&attendeePW=ap&moderatorPW=mp&meta_room=r1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	n := c.runningOn("moodle~seminar", -1)
	testwait.Sleep(500 * time.Millisecond) // parameters committed; a few seconds old at most (the old 30 s grace never ended)
	c.nodes[n].Close()
	restarted := fakebbb.New(c.secrets[n])
	if _, err := restarted.Start(c.hosts[n]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Close() })
	start := time.Now()
	harness.Eventually(t, 15*time.Second, func() error {
		if m := c.boundMeetings(t, c.Peers[2])["moodle~seminar"]; !m.Lost {
			return fmt.Errorf("not lost yet: %+v", m)
		}
		return nil
	})
	t.Logf("RESTART: meeting marked lost %v after its node restarted empty", time.Since(start).Round(time.Millisecond))
	if a := c.client(c.Peers[1]).Get(t, "isMeetingRunning", "meetingID=seminar"); a.Running != "false" {
		t.Fatalf("isMeetingRunning of a lost meeting: %s", a.Raw)
	}
	host, status, err := c.failoverJoin(c.Peers[1], "meetingID=seminar&fullName=Ann&password=ap")
	if err != nil || host != c.hosts[n] {
		t.Fatalf("join of a lost meeting: %q HTTP %d %v, want its restarted node %s", host, status, err, c.hosts[n])
	}
	if ids := restarted.MeetingIDs(); len(ids) != 1 || ids[0] != "moodle~seminar" {
		t.Fatalf("restarted node runs %v", ids)
	}
	direct := harness.BBBClient{Base: "http://" + c.hosts[n] + "/bigbluebutton/api", Secret: c.secrets[n]}
	if info := direct.Get(t, "getMeetingInfo", "meetingID=moodle~seminar"); !strings.Contains(info.Raw, "<moderatorPW>mp</moderatorPW>") || !strings.Contains(info.Raw, "<room>r1</room>") {
		t.Fatalf("re-created meeting: %s", info.Raw)
	}
}

// TestFailoverJoinErrorsAndCallbacks: join's errors come from the gateway
// with bbb-web's keys (HTTP 200), and a meeting that ends on its node, and
// its new recording, reach the state within a second although the client
// gave no callback URL.
func TestFailoverJoinErrorsAndCallbacks(t *testing.T) {
	c := startBBBCluster(t, 1)
	cl := c.client(c.Peers[0])
	if a := cl.Get(t, "create", "meetingID=talk&attendeePW=ap&moderatorPW=mp&record=true"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	testwait.Sleep(300 * time.Millisecond)
	for _, p := range c.Peers {
		for q, key := range map[string]string{
			"meetingID=nosuch&fullName=Ann&password=ap": bbb.KeyInvalidMeetingID,
			"meetingID=talk&fullName=Ann&password=nope": bbb.KeyMissingParamPassword,
			"meetingID=talk&password=ap":                bbb.KeyMissingParamFullName,
		} {
			host, status, err := c.failoverJoin(p, q)
			if err != nil || host != "" || status != http.StatusOK {
				t.Fatalf("join %s through %s: redirect %q HTTP %d %v", q, p.ID, host, status, err)
			}
			if a := c.client(p).Get(t, "join", q); a.ReturnCode != "FAILED" || a.MessageKey != key {
				t.Fatalf("join %s through %s: %s, want %s", q, p.ID, a.Raw, key)
			}
		}
	}
	if n := c.nodes[0].Requests("join"); n != 0 {
		t.Fatalf("%d refused joins reached the node", n)
	}
	if host, _, _ := c.failoverJoin(c.Peers[2], "meetingID=talk&fullName=Ann&role=moderator"); host != c.hosts[0] {
		t.Fatalf("join with role=moderator (BBB 2.6+) went to %q", host)
	}
	// The meeting ends on the node itself, with no callback from the client.
	direct := harness.BBBClient{Base: "http://" + c.hosts[0] + "/bigbluebutton/api", Secret: c.secrets[0]}
	if a := direct.Get(t, "end", "meetingID=moodle~talk&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	ended := time.Now()
	var released, indexed time.Duration
	testwait.Eventually(t, 10*time.Second, func() error {
		if _, ok := c.boundMeetings(t, c.Peers[1])["moodle~talk"]; !ok && released == 0 {
			released = time.Since(ended)
		}
		var recs []adminapi.Recording
		if err := c.API(c.Peers[1], "GET", "/api/v1/recordings?frontend=moodle", nil, &recs); err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 && indexed == 0 {
			indexed = time.Since(ended)
		}
		if released == 0 || indexed == 0 {
			return fmt.Errorf("released %v, indexed %v (the sync runs every 30 s)", released, indexed)
		}
		return nil
	})
	t.Logf("CALLBACKS: meeting ended on its node -> released from the state %v, recording indexed %v", released.Round(time.Millisecond), indexed.Round(time.Millisecond))
}

// TestFailoverHungNode: the node under a meeting hangs (accepts, never
// answers) instead of dying; once the cluster declares it dead, a join
// re-creates the meeting on the live node and sends the user there.
func TestFailoverHungNode(t *testing.T) {
	c := startBBBCluster(t, 2)
	if a := c.client(c.Peers[0]).Get(t, "create", "meetingID=workshop&attendeePW=ap&moderatorPW=mp&meta_group=g1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	hung := c.runningOn("moodle~workshop", -1)
	testwait.Sleep(500 * time.Millisecond) // the create parameters are committed in the background
	hungAt := time.Now()
	c.nodes[hung].Hang()
	t.Cleanup(func() { c.nodes[hung].Resume() })
	i := 0
	testwait.Eventually(t, 30*time.Second, func() error {
		host, _, err := c.failoverJoin(c.Peers[i%3], "meetingID=workshop&fullName=Ann&password=ap")
		i++
		if err == nil && host != "" && host != c.hosts[hung] {
			t.Logf("FAILOVER: node hung -> first user redirected to a live node: %v", time.Since(hungAt).Round(time.Millisecond))
			return nil
		}
		return fmt.Errorf("no join sent to a live node since the node hung (last %q %v)", host, err)
	})
	live := 1 - hung
	direct := harness.BBBClient{Base: "http://" + c.hosts[live] + "/bigbluebutton/api", Secret: c.secrets[live]}
	if info := direct.Get(t, "getMeetingInfo", "meetingID=moodle~workshop"); !strings.Contains(info.Raw, "<attendeePW>ap</attendeePW>") || !strings.Contains(info.Raw, "<group>g1</group>") {
		t.Fatalf("re-created meeting: %s", info.Raw)
	}
	for _, p := range c.Peers {
		if host, status, err := c.failoverJoin(p, "meetingID=workshop&fullName=Bob&password=mp"); host != c.hosts[live] {
			t.Fatalf("join through %s: %q HTTP %d %v", p.ID, host, status, err)
		}
	}
}
