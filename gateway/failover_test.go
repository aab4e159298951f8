package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/test/fakebbb"
)

// waitMeeting polls the state until a meeting satisfies ok.
func waitMeeting(t *testing.T, mc *MemCluster, internal string, within time.Duration, what string, ok func(fsm.Meeting, bool) bool) fsm.Meeting {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, found := mc.FSM().Meeting(internal)
		if ok(m, found) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("meeting %s: not %s within %v: %+v", internal, what, within, m)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func paramsKept(m fsm.Meeting, found bool) bool { return found && m.Create != nil }

// joinLocation joins through the gateway and returns the redirect target.
func joinLocation(t *testing.T, c testClient, query string) *url.URL {
	t.Helper()
	resp, err := noRedirect.Get(c.URL("join", query))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil {
		t.Fatalf("join %s: HTTP %d", query, resp.StatusCode)
	}
	return loc
}

func (r *rig) nodeAt(host string) int {
	for i, a := range r.addrs {
		if a == host {
			return i
		}
	}
	return -1
}

// direct is a client of node i with its own secret.
func (r *rig) direct(i int) testClient {
	return testClient{Base: "http://" + r.addrs[i] + "/bigbluebutton/api", Secret: fmt.Sprintf("node%d-secret", i), Algo: "sha256"}
}

// TestJoinRecreatesMeetingOfDeadNode: the node under a meeting dies; until
// someone joins, the meeting is not running (as BBB answers); the next join
// creates it on a live node with the same ID, passwords, metadata, slides
// and callbacks, and redirects there.
func TestJoinRecreatesMeetingOfDeadNode(t *testing.T) {
	r := newRig(t, 3)
	c := r.client("fe1")
	slides := `<?xml version="1.0"?><modules><module name="presentation"><document url="https://example.org/a.pdf"/></module></modules>`
	if a := fetch(t, c.URL("create", "meetingID=room&name=Room&attendeePW=ap&moderatorPW=mp&meta_course=c7&record=true"), "application/xml", slides); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~room", 2*time.Second, "with its parameters kept", paramsKept)
	dead := r.nodeOf("fe1", "room")
	r.killNode(dead)

	if a := c.Get(t, "isMeetingRunning", "meetingID=room"); a.ReturnCode != "SUCCESS" || a.Running != "false" {
		t.Fatalf("isMeetingRunning of a meeting on a dead node: %s", a.Raw)
	}
	if a := c.Get(t, "getMeetingInfo", "meetingID=room"); a.MessageKey != bbb.KeyNotFound {
		t.Fatalf("getMeetingInfo of a meeting on a dead node: %s", a.Raw)
	}
	// Still bound (with its parameters): the not-running answers forget nothing.
	waitMeeting(t, r.mc, "fe1~room", 0, "kept", paramsKept)

	loc := joinLocation(t, c, "meetingID=room&fullName=Ann&password=ap")
	live := r.nodeAt(loc.Host)
	if live < 0 || live == dead {
		t.Fatalf("join sent to %s (dead node %s)", loc.Host, r.addrs[dead])
	}
	if !bbb.Verify("join", loc.RawQuery, fmt.Sprintf("node%d-secret", live)) {
		t.Fatal("join not signed with the live node's secret")
	}
	info := r.direct(live).Get(t, "getMeetingInfo", "meetingID=fe1~room")
	for _, want := range []string{"<attendeePW>ap</attendeePW>", "<moderatorPW>mp</moderatorPW>", "<course>c7</course>",
		"<meetingName>Room</meetingName>", "<recording>true</recording>"} {
		if !strings.Contains(info.Raw, want) {
			t.Errorf("re-created meeting lacks %s: %s", want, info.Raw)
		}
	}
	if p := r.nodes[live].Presentations("fe1~room"); len(p) != 1 || p[0] != "https://example.org/a.pdf" {
		t.Errorf("slides not re-sent: %v", p)
	}
	// The callbacks follow the meeting: relay URLs signed for the new node.
	if !strings.Contains(info.Raw, "be="+url.QueryEscape(r.ids[live])) || strings.Contains(info.Raw, "be="+url.QueryEscape(r.ids[dead])+"&") {
		t.Errorf("callbacks not re-signed for the new node: %s", info.Raw)
	}
	m, _ := r.mc.FSM().Meeting("fe1~room")
	if m.BackendID != r.ids[live] || m.Down() || m.Recreations != 1 {
		t.Fatalf("binding after re-creation: %+v", m)
	}
	// The follow-up calls reach the new node; the client sees no relay URL.
	if a := c.Get(t, "getMeetingInfo", "meetingID=room"); a.ReturnCode != "SUCCESS" || strings.Contains(a.Raw, callbacks.Prefix) || strings.Contains(a.Raw, "endcallbackurl") {
		t.Fatalf("getMeetingInfo after re-creation: %s", a.Raw)
	}
	// A second join goes straight there, creating nothing.
	creates := r.nodes[live].Requests("create")
	if loc := joinLocation(t, c, "meetingID=room&fullName=Bob&password=mp"); loc.Host != r.addrs[live] || r.nodes[live].Requests("create") != creates {
		t.Fatalf("second join: %s, %d creates", loc.Host, r.nodes[live].Requests("create")-creates)
	}
}

// TestConcurrentJoinsRecreateOnce: 20 joins at once of a meeting whose node
// died make one create on the surviving nodes, and all land there.
func TestConcurrentJoinsRecreateOnce(t *testing.T) {
	r := newRig(t, 3)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=crowd&attendeePW=ap&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~crowd", 2*time.Second, "kept", paramsKept)
	dead := r.nodeOf("fe1", "crowd")
	r.killNode(dead)
	before := 0
	for i, n := range r.nodes {
		if i != dead {
			before += n.Requests("create")
		}
	}
	var wg sync.WaitGroup
	hosts := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := noRedirect.Get(c.URL("join", fmt.Sprintf("meetingID=crowd&fullName=U%d&password=ap", i)))
			if err != nil {
				hosts <- err.Error()
				return
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if loc == nil {
				hosts <- fmt.Sprint("HTTP ", resp.StatusCode)
				return
			}
			hosts <- loc.Host
		}(i)
	}
	wg.Wait()
	close(hosts)
	seen := map[string]int{}
	for h := range hosts {
		seen[h]++
	}
	after := 0
	for i, n := range r.nodes {
		if i != dead {
			after += n.Requests("create")
		}
	}
	if after-before != 1 || len(seen) != 1 {
		t.Fatalf("20 joins made %d creates and went to %v", after-before, seen)
	}
	for h := range seen {
		if n := r.nodeAt(h); n < 0 || n == dead {
			t.Fatalf("joins went to %s", h)
		}
	}
}

// TestJoinRecreatesLostMeetingOnSameNode: a node restarts empty; the
// prober's listing marks its meetings lost (even one created just before
// the restart), and the next join creates the meeting there again.
func TestJoinRecreatesLostMeetingOnSameNode(t *testing.T) {
	r := newRig(t, 2)
	cfg := HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, FailAfter: 3, RecoverAfter: 2,
		LoadEvery: 100 * time.Millisecond, EndedGrace: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.srv.RunHealth(ctx, cfg)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=fresh&attendeePW=ap&moderatorPW=mp&meta_x=1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~fresh", 2*time.Second, "kept", paramsKept)
	n := r.nodeOf("fe1", "fresh")
	time.Sleep(300 * time.Millisecond) // listed at least once
	// The node restarts with no meetings, on the same address, faster than
	// the prober declares it dead.
	r.nodes[n].Close()
	restarted := fakebbb.New(fmt.Sprintf("node%d-secret", n))
	if _, err := restarted.Start(r.addrs[n]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Close() })
	waitMeeting(t, r.mc, "fe1~fresh", 3*time.Second, "lost", func(m fsm.Meeting, ok bool) bool { return ok && m.Lost })
	if a := c.Get(t, "isMeetingRunning", "meetingID=fresh"); a.Running != "false" {
		t.Fatalf("isMeetingRunning of a lost meeting: %s", a.Raw)
	}
	loc := joinLocation(t, c, "meetingID=fresh&fullName=Ann&password=mp")
	if loc.Host != r.addrs[n] {
		t.Fatalf("lost meeting re-created on %s, not on its restarted node %s", loc.Host, r.addrs[n])
	}
	if ids := restarted.MeetingIDs(); len(ids) != 1 || ids[0] != "fe1~fresh" {
		t.Fatalf("restarted node runs %v", ids)
	}
	if info := r.direct(n).Get(t, "getMeetingInfo", "meetingID=fe1~fresh"); !strings.Contains(info.Raw, "<moderatorPW>mp</moderatorPW>") || !strings.Contains(info.Raw, "<x>1</x>") {
		t.Fatalf("re-created meeting: %s", info.Raw)
	}
	if m, _ := r.mc.FSM().Meeting("fe1~fresh"); m.Down() {
		t.Fatalf("still down: %+v", m)
	}
}

// TestJoinErrorsAsBBB: join's own errors are answered by the gateway with
// bbb-web's keys (HTTP 200, FAILED), without sending the user to a node.
func TestJoinErrorsAsBBB(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=room&attendeePW=ap&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~room", 2*time.Second, "kept", paramsKept)
	for q, key := range map[string]string{
		"meetingID=nosuch&fullName=Ann&password=ap": bbb.KeyInvalidMeetingID,
		"meetingID=room&fullName=Ann&password=zz":   bbb.KeyMissingParamPassword,
		"meetingID=room&fullName=Ann":               bbb.KeyMissingParamPassword,
		"meetingID=room&fullName=Ann&role=boss":     bbb.KeyMissingParamPassword,
		"meetingID=room&password=ap":                bbb.KeyMissingParamFullName,
		"meetingID=room&fullName=+&password=ap":     bbb.KeyMissingParamFullName,
		"fullName=Ann&password=ap":                  bbb.KeyMissingParamMeetingID,
	} {
		resp, err := noRedirect.Get(c.URL("join", q))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("join %s: HTTP %d, want BBB's 200", q, resp.StatusCode)
			continue
		}
		if a := c.Get(t, "join", q); a.ReturnCode != "FAILED" || a.MessageKey != key {
			t.Errorf("join %s: %s, want %s", q, a.Raw, key)
		}
	}
	if n := r.nodes[0].Requests("join"); n != 0 {
		t.Fatalf("%d refused joins reached the node", n)
	}
	// BBB 2.6+: role= replaces the password, and wins over a wrong one.
	for _, q := range []string{"meetingID=room&fullName=Ann&role=MODERATOR", "meetingID=room&fullName=Ann&role=viewer&password=zz",
		"meetingID=room&fullName=Ann&password=mp"} {
		if loc := joinLocation(t, c, q); loc.Host != r.addrs[0] {
			t.Fatalf("join %s went to %s", q, loc.Host)
		}
	}
}

// TestEndAndRecordingReachStateWithoutClientCallbacks: the gateway asks the
// node for both callbacks even when the client gave none, so a meeting that
// ends on the node is forgotten, and its recording indexed, at once (not at
// the next probe or sync).
func TestEndAndRecordingReachStateWithoutClientCallbacks(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=talk&record=true&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if info := r.direct(0).Get(t, "getMeetingInfo", "meetingID=fe1~talk"); !strings.Contains(info.Raw, callbacks.Prefix+"end") || !strings.Contains(info.Raw, callbacks.Prefix+"recording-ready") {
		t.Fatalf("the node was not asked for callbacks: %s", info.Raw)
	}
	if a := c.Get(t, "getMeetingInfo", "meetingID=talk"); strings.Contains(a.Raw, "endcallbackurl") || strings.Contains(a.Raw, "recording-ready-url") {
		t.Fatalf("the client sees callbacks it did not ask for: %s", a.Raw)
	}
	// The meeting ends on the node itself (a moderator ends it in the client).
	if a := r.direct(0).Get(t, "end", "meetingID=fe1~talk&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	start := time.Now()
	waitMeeting(t, r.mc, "fe1~talk", 3*time.Second, "released", func(_ fsm.Meeting, ok bool) bool { return !ok })
	ended := time.Since(start)
	deadline := time.Now().Add(3 * time.Second)
	for len(r.mc.FSM().RecordingsOf("fe1", nil)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the new recording was not indexed without a sync")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("CALLBACKS: meeting released %v and recording indexed %v after the node ended it", ended.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestRecreationKeepsPlacementRules: a meeting whose create required a
// server tag is re-created on another node with that tag, never elsewhere.
func TestRecreationKeepsPlacementRules(t *testing.T) {
	r := newRig(t, 3)
	for _, i := range []int{0, 2} {
		r.mc.MustApply(&fsm.SetBackendSettings{ID: r.ids[i], Patch: []byte(`{"tags":["gpu"]}`)})
	}
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=render&moderatorPW=mp&meta_server-tag=gpu!"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~render", 2*time.Second, "kept", paramsKept)
	dead := r.nodeOf("fe1", "render")
	if dead == 1 {
		t.Fatal("placed on the untagged node")
	}
	r.killNode(dead)
	loc := joinLocation(t, c, "meetingID=render&fullName=Ann&password=mp")
	if want := r.addrs[2-dead]; loc.Host != want {
		t.Fatalf("re-created on %s, want the other gpu node %s", loc.Host, want)
	}
}

// TestStaleCopyEndedWhenDeadNodeReturns: a node declared dead comes back
// with the meeting that was re-created elsewhere meanwhile; the prober ends
// its stale copy, and the moved meeting stays bound where it runs.
func TestStaleCopyEndedWhenDeadNodeReturns(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=split&attendeePW=ap&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	waitMeeting(t, r.mc, "fe1~split", 2*time.Second, "kept", paramsKept)
	old := r.nodeOf("fe1", "split")
	r.killNode(old) // cut off: keeps its meetings
	loc := joinLocation(t, c, "meetingID=split&fullName=Ann&password=ap")
	if loc.Host != r.addrs[1-old] {
		t.Fatalf("re-created on %s", loc.Host)
	}
	if _, err := r.nodes[old].Start(r.addrs[old]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.srv.RunHealth(ctx, HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, FailAfter: 3,
		RecoverAfter: 2, LoadEvery: 100 * time.Millisecond, EndedGrace: 30 * time.Second})
	deadline := time.Now().Add(3 * time.Second)
	for r.nodes[old].MeetingCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stale copy still runs on the returned node: %v", r.nodes[old].MeetingIDs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // its end callback arrives and is refused
	if m, ok := r.mc.FSM().Meeting("fe1~split"); !ok || m.BackendID != r.ids[1-old] || r.nodes[1-old].MeetingCount() != 1 {
		t.Fatalf("the moved meeting after the stale copy ended: %+v %v", m, ok)
	}
}

// TestKeptParamsHoldClientCallbacksNotRelays: a meeting's kept create
// keeps the client's own callback URL and none of the relay URLs the node
// got (they are signed anew on re-creation; two per meeting in the state
// would more than double its size), and a re-created meeting still gets
// relays, to the client's URL.
func TestKeptParamsHoldClientCallbacksNotRelays(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	lms := "https://lms.example.org/ended?room=7"
	if a := c.Get(t, "create", "meetingID=kept&moderatorPW=mp&attendeePW=ap&meta_endCallbackUrl="+url.QueryEscape(lms)); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if a := c.Get(t, "create", "meetingID=plain&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	kept := waitMeeting(t, r.mc, "fe1~kept", 3*time.Second, "kept", paramsKept)
	q, err := url.ParseQuery(kept.Create.Query)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(kept.Create.Query, callbacks.Prefix) || q.Get("meta_endCallbackUrl") != lms {
		t.Fatalf("kept query holds relays or lost the client's URL: %s", kept.Create.Query)
	}
	plain := waitMeeting(t, r.mc, "fe1~plain", 3*time.Second, "kept", paramsKept)
	if strings.Contains(strings.ToLower(plain.Create.Query), "callback") || strings.Contains(plain.Create.Query, "recording-ready") {
		t.Fatalf("kept query of a create without callbacks holds some: %s", plain.Create.Query)
	}

	// The node dies: the re-created meeting asks its new node for relays
	// again, the end relay carrying the client's URL.
	dead := r.nodeOf("fe1", "kept")
	r.killNode(dead)
	live := r.nodeAt(joinLocation(t, c, "meetingID=kept&fullName=Ann&password=ap").Host)
	if live < 0 || live == dead {
		t.Fatalf("not re-created on the live node (dead %d, joined %d)", dead, live)
	}
	info := r.direct(live).Get(t, "getMeetingInfo", "meetingID=fe1~kept")
	if !strings.Contains(info.Raw, callbacks.Prefix+"end") || !strings.Contains(info.Raw, callbacks.Prefix+"recording-ready") ||
		!strings.Contains(info.Raw, url.QueryEscape(lms)) {
		t.Fatalf("the re-created meeting has no relays to the client's URL: %s", info.Raw)
	}
}
