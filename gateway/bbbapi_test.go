package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/bbbapi"
	"github.com/conclave-lb/conclave/gateway/getmeetings"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

type testClient = harness.BBBClient

var noRedirect = harness.NoRedirect

func fetch(t *testing.T, u, contentType, body string) harness.Answer {
	t.Helper()
	return harness.Fetch(t, u, contentType, body)
}

type rig struct {
	t     *testing.T
	mc    *MemCluster
	srv   *Server
	base  string // http://host:port
	nodes []*fakebbb.Server
	ids   []string // backend IDs, same order as nodes
	addrs []string
}

// newRig runs a gateway over an in-memory cluster with n fake BBB nodes,
// all ready, and two frontends fe1/fe2.
func newRig(t *testing.T, n int) *rig { return newRigWith(t, n, Config{}) }

// newRigWith is newRig with a server configured by cfg (CallbackBase is
// the rig's own).
func newRigWith(t *testing.T, n int, cfg Config) *rig {
	r := &rig{t: t, mc: NewMemCluster()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.base = "http://" + ln.Addr().String()
	cfg.CallbackBase = r.base
	r.srv = New(cfg, r.mc)
	go r.srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	for i := 0; i < n; i++ {
		node, api, host := fakebbb.StartTest(t, fmt.Sprintf("node%d-secret", i))
		id := fmt.Sprintf("b%d", i)
		r.mc.MustApply(&fsm.AddBackend{ID: id, URL: api, Secret: fmt.Sprintf("node%d-secret", i)})
		r.mc.MustApply(&fsm.SetBackendAdminState{ID: id, State: fsm.AdminReady})
		r.nodes, r.ids = append(r.nodes, node), append(r.ids, id)
		r.addrs = append(r.addrs, host)
	}
	r.setReady(r.ids...)
	r.mc.MustApply(&fsm.AddFrontend{Key: "fe1", Secret: "fe1-secret"})
	r.mc.MustApply(&fsm.AddFrontend{Key: "fe2", Secret: "fe2-secret"})
	return r
}

func (r *rig) setReady(ids ...string) {
	var reps []fsm.BackendReport
	for _, id := range ids {
		reps = append(reps, fsm.BackendReport{ID: id, NodeState: fsm.NodeReady})
	}
	r.mc.MustApply(&fsm.ReportBackends{Reports: reps})
}

func (r *rig) client(fe string) testClient {
	return testClient{Base: r.base + "/bigbluebutton/api", Secret: fe + "-secret", Algo: "sha256"}
}

// nodeOf returns the index of the node running a frontend's meeting.
func (r *rig) nodeOf(fe, meetingID string) int {
	m, ok := r.mc.FSM().Meeting(bbbapi.InternalMeetingID(fe, meetingID))
	if !ok {
		return -1
	}
	for i, id := range r.ids {
		if id == m.BackendID {
			return i
		}
	}
	return -1
}

func TestChecksumsEncodingsAndErrors(t *testing.T) {
	r := newRig(t, 1)
	for i, algo := range []string{"sha1", "sha256", "sha384", "sha512"} {
		for j, space := range []string{"+", "%20"} {
			c := r.client("fe1")
			c.Algo = algo
			q := fmt.Sprintf("name=Test%sMeeting&meetingID=m-%d-%d&attendeePW=ap&moderatorPW=mp", space, i, j)
			if a := c.Get(t, "create", q); a.ReturnCode != "SUCCESS" {
				t.Fatalf("%s with %q: %s", algo, space, a.Raw)
			}
		}
	}
	bad := r.client("fe1")
	bad.Secret = "wrong"
	if a := bad.Get(t, "create", "meetingID=x1"); a.MessageKey != bbb.KeyChecksumError {
		t.Fatalf("wrong secret: %s", a.Raw)
	}
	if a := fetch(t, r.base+"/bigbluebutton/api/create?meetingID=x1", "", ""); a.MessageKey != bbb.KeyChecksumError {
		t.Fatalf("no checksum: %s", a.Raw)
	}
	// Checksum errors win over parameter errors.
	if a := bad.Get(t, "create", ""); a.MessageKey != bbb.KeyChecksumError {
		t.Fatalf("wrong secret and no meetingID: %s", a.Raw)
	}
	if a := r.client("fe1").Get(t, "frobnicate", "a=1"); a.MessageKey != bbb.KeyUnsupportedRequest {
		t.Fatalf("unknown call: %s", a.Raw)
	}
	if a := r.client("fe1").Get(t, "create", "name=x"); a.MessageKey != bbb.KeyMissingParamMeetingID {
		t.Fatalf("no meetingID: %s", a.Raw)
	}
	if a := fetch(t, r.base+"/bigbluebutton/api", "", ""); a.ReturnCode != "SUCCESS" || a.Version != "2.0" {
		t.Fatalf("API root: %s", a.Raw)
	}
	// The multi-tenant route takes only its own frontend's secret.
	tenant := testClient{Base: r.base + "/bbb/fe2/bigbluebutton/api", Secret: "fe1-secret"}
	if a := tenant.Get(t, "getMeetings", ""); a.MessageKey != bbb.KeyChecksumError {
		t.Fatalf("fe1's secret on fe2's route: %s", a.Raw)
	}
	tenant.Secret = "fe2-secret"
	if a := tenant.Get(t, "getMeetings", ""); a.ReturnCode != "SUCCESS" {
		t.Fatalf("fe2's route: %s", a.Raw)
	}
}

// The reference vector of REFERENCE.md, through the gateway.
func TestReferenceVectorThroughGateway(t *testing.T) {
	r := newRig(t, 1)
	r.mc.MustApply(&fsm.AddFrontend{Key: "ref", Secret: "639259d4-9dd8-4b25-bf01-95f9567eaf4b"})
	u := r.base + "/bbb/ref/bigbluebutton/api/create?name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444&checksum=1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
	if a := fetch(t, u, "", ""); a.ReturnCode != "SUCCESS" || a.MeetingID != "abc123" {
		t.Fatalf("%s", a.Raw)
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	r := newRig(t, 2)
	for _, fe := range []string{"fe1", "fe2"} {
		if a := r.client(fe).Get(t, "create", "meetingID=m1&name=x&moderatorPW=mp"); a.ReturnCode != "SUCCESS" || a.MeetingID != "m1" {
			t.Fatalf("%s create: %s", fe, a.Raw)
		}
	}
	total := 0
	for _, n := range r.nodes {
		total += n.MeetingCount()
	}
	if total != 2 {
		t.Fatalf("two tenants' m1 should be two meetings, backends hold %d", total)
	}
	for _, fe := range []string{"fe1", "fe2"} {
		a := r.client(fe).Get(t, "getMeetings", "")
		if len(a.Meetings) != 1 || a.Meetings[0].MeetingID != "m1" {
			t.Fatalf("%s sees %s", fe, a.Raw)
		}
	}
	r.client("fe1").Get(t, "end", "meetingID=m1&password=mp")
	if a := r.client("fe2").Get(t, "getMeetingInfo", "meetingID=m1"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("ending fe1's m1 touched fe2's: %s", a.Raw)
	}
}

func TestJoinRedirectsToTheNodeSignedWithItsSecret(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=room&attendeePW=ap&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	node := r.nodeOf("fe1", "room")
	resp, err := noRedirect.Get(c.URL("join", "meetingID=room&fullName=Alice+Smith&password=mp"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc == nil || loc.Host != r.addrs[node] || !strings.HasSuffix(loc.Path, "/bigbluebutton/api/join") {
		t.Fatalf("join: %d %s (meeting on %s)", resp.StatusCode, resp.Header.Get("Location"), r.addrs[node])
	}
	if !bbb.Verify("join", loc.RawQuery, fmt.Sprintf("node%d-secret", node)) {
		t.Fatalf("join URL not signed with the node's secret: %s", loc)
	}
	if loc.Query().Get("meetingID") != "fe1~room" || loc.Query().Get("fullName") != "Alice Smith" {
		t.Fatalf("join parameters: %s", loc.RawQuery)
	}
	// Following the redirect lands on the node, which counts the attendee.
	resp, err = http.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r.nodes[node].AttendeeCount() != 1 {
		t.Fatalf("attendee not counted on the node: %d", r.nodes[node].AttendeeCount())
	}
	// redirect=false gives BBB's XML answer.
	if a := c.Get(t, "join", "meetingID=room&fullName=Bob&password=ap&redirect=false"); a.ReturnCode != "SUCCESS" || !strings.Contains(a.Raw, "<url>") {
		t.Fatalf("redirect=false: %s", a.Raw)
	}
	if a := c.Get(t, "join", "meetingID=nosuch&fullName=Bob&password=ap"); a.MessageKey != bbb.KeyInvalidMeetingID {
		t.Fatalf("join unknown meeting: %s", a.Raw)
	}
}

func TestMeetingCallsForwarded(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	if a := c.Get(t, "isMeetingRunning", "meetingID=lecture"); a.ReturnCode != "SUCCESS" || a.Running != "false" {
		t.Fatalf("isMeetingRunning on unknown: %s", a.Raw)
	}
	if a := c.Get(t, "getMeetingInfo", "meetingID=lecture"); a.MessageKey != bbb.KeyNotFound {
		t.Fatalf("getMeetingInfo on unknown: %s", a.Raw)
	}
	slides := `<?xml version="1.0"?><modules><module name="presentation"><document url="https://example.org/a.pdf"/></module></modules>`
	if a := fetch(t, c.URL("create", "meetingID=lecture&name=Lecture&moderatorPW=mp&attendeePW=ap"), "application/xml", slides); a.ReturnCode != "SUCCESS" || a.MeetingID != "lecture" {
		t.Fatalf("POST create with slides: %s", a.Raw)
	}
	node := r.nodes[r.nodeOf("fe1", "lecture")]
	if p := node.Presentations("fe1~lecture"); len(p) != 1 || p[0] != "https://example.org/a.pdf" {
		t.Fatalf("slides did not reach the node: %v", p)
	}
	if a := c.Get(t, "create", "meetingID=lecture&name=Lecture&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" || a.MessageKey != bbb.KeyDuplicateWarning {
		t.Fatalf("duplicate create: %s", a.Raw)
	}
	m, _ := r.mc.FSM().Meeting("fe1~lecture")
	if info := c.Get(t, "getMeetingInfo", "meetingID=lecture"); m.VoiceBridge == 0 || !strings.Contains(info.Raw, fmt.Sprintf("<voiceBridge>%d</voiceBridge>", m.VoiceBridge)) {
		t.Fatalf("the cluster's voice bridge %d did not reach the node: %s", m.VoiceBridge, info.Raw)
	}
	// A meeting runs once a user's browser arrived (as on BBB).
	if resp, err := http.Get(c.URL("join", "meetingID=lecture&fullName=Ann&password=ap")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if a := c.Get(t, "isMeetingRunning", "meetingID=lecture"); a.Running != "true" {
		t.Fatalf("isMeetingRunning: %s", a.Raw)
	}
	if a := c.Get(t, "getMeetingInfo", "meetingID=lecture"); a.ReturnCode != "SUCCESS" || a.MeetingID != "lecture" || strings.Contains(a.Raw, "fe1~") {
		t.Fatalf("getMeetingInfo: %s", a.Raw)
	}
	if a := fetch(t, c.URL("insertDocument", "meetingID=lecture"), "application/xml", slides); a.ReturnCode != "SUCCESS" {
		t.Fatalf("insertDocument: %s", a.Raw)
	}
	if a := fetch(t, c.URL("insertDocument", "meetingID=lecture"), "text/plain", "hello"); a.MessageKey != bbb.KeyUnsupportedContentType {
		t.Fatalf("insertDocument with text: %s", a.Raw)
	}
	if a := c.Get(t, "sendChatMessage", "meetingID=lecture&message=hello+all"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("sendChatMessage: %s", a.Raw)
	}
	if a := c.Get(t, "getMeetings", ""); len(a.Meetings) != 1 || a.Meetings[0].MeetingID != "lecture" {
		t.Fatalf("getMeetings: %s", a.Raw)
	}
	if a := c.Get(t, "end", "meetingID=lecture&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("end: %s", a.Raw)
	}
	if _, ok := r.mc.FSM().Meeting("fe1~lecture"); ok {
		t.Fatal("ended meeting still bound")
	}
	if a := c.Get(t, "getMeetings", ""); a.MessageKey != bbb.KeyNoMeetings {
		t.Fatalf("getMeetings after end: %s", a.Raw)
	}
}

func TestGetMeetingsSurvivesADeadBackend(t *testing.T) {
	r := newRig(t, 3)
	c := r.client("fe1")
	for i := 0; i < 6; i++ {
		if a := c.Get(t, "create", fmt.Sprintf("meetingID=m%d", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
	}
	for i, n := range r.nodes {
		if n.MeetingCount() != 2 {
			t.Fatalf("placement did not spread: node %d has %d", i, n.MeetingCount())
		}
	}
	r.nodes[1].Close()
	start := time.Now()
	a := c.Get(t, "getMeetings", "")
	if took := time.Since(start); took > getmeetings.NodeTimeout+2*time.Second {
		t.Fatalf("getMeetings took %v with a dead backend", took)
	}
	if len(a.Meetings) != 4 {
		t.Fatalf("want the 4 meetings of the live backends, got %s", a.Raw)
	}
}

func TestFrontendSettingsAndTags(t *testing.T) {
	r := newRig(t, 2)
	r.mc.MustApply(&fsm.SetBackendSettings{ID: r.ids[1], Patch: []byte(`{"tags":["gpu"]}`)})
	r.mc.MustApply(&fsm.SetFrontendSettings{Key: "fe1", Patch: []byte(`{
		"required_tags":["gpu"],
		"default_presentation":{"url":"https://example.org/default.pdf"},
		"create_default_params":{"record":"true","welcome":"hi"},
		"create_override_params":{"maxParticipants":"50"}}`)})
	c := r.client("fe1")
	for i := 0; i < 4; i++ {
		if a := c.Get(t, "create", fmt.Sprintf("meetingID=t%d&welcome=mine&maxParticipants=999", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
		if n := r.nodeOf("fe1", fmt.Sprintf("t%d", i)); n != 1 {
			t.Fatalf("meeting placed on untagged node %d", n)
		}
	}
	if p := r.nodes[1].Presentations("fe1~t0"); len(p) != 1 || p[0] != "https://example.org/default.pdf" {
		t.Fatalf("default presentation: %v", p)
	}
	// The override beat the client's 999; the default filled in nothing the
	// client set (its own welcome stays), and record came from the defaults.
	info := c.Get(t, "getMeetingInfo", "meetingID=t0")
	if !strings.Contains(info.Raw, "<maxUsers>50</maxUsers>") {
		t.Fatalf("create_override_params not applied: %s", info.Raw)
	}
	if !strings.Contains(info.Raw, "<recording>true</recording>") {
		t.Fatalf("create_default_params not applied: %s", info.Raw)
	}
	if rec := r.nodes[1].Requests("create"); rec == 0 {
		t.Fatal("no create reached the tagged node")
	}
	r.mc.MustApply(&fsm.SetBackendAdminState{ID: r.ids[1], State: fsm.AdminStopped})
	if a := c.Get(t, "create", "meetingID=t9"); a.ReturnCode != "FAILED" || a.MessageKey != bbb.KeyNoBackendAvailable {
		t.Fatalf("create with no tagged node left: %s", a.Raw)
	}
	// fe2 has no required tags and still gets the untagged node.
	if a := r.client("fe2").Get(t, "create", "meetingID=xx"); a.ReturnCode != "SUCCESS" || r.nodeOf("fe2", "xx") != 0 {
		t.Fatalf("fe2: %s", a.Raw)
	}
}

// A backend that fails the create must not keep the meeting: it is
// released and placed on the next backend.
func TestFailedCreateIsReplaced(t *testing.T) {
	r := newRig(t, 2)
	r.nodes[0].Close() // still "ready" in the state: the prober has not noticed yet
	c := r.client("fe1")
	for i := 0; i < 3; i++ {
		if a := c.Get(t, "create", fmt.Sprintf("meetingID=f%d", i)); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create with one dead node: %s", a.Raw)
		}
		if n := r.nodeOf("fe1", fmt.Sprintf("f%d", i)); n != 1 {
			t.Fatalf("meeting bound to node %d", n)
		}
	}
	// Failover: the node of a meeting dies and is marked error; a new
	// create moves the meeting to a live node.
	r.nodes[0].Start(r.addrs[0])
	r.mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: r.ids[1], NodeState: fsm.NodeError}}})
	if a := c.Get(t, "create", "meetingID=f0"); a.ReturnCode != "SUCCESS" || r.nodeOf("fe1", "f0") != 0 {
		t.Fatalf("meeting of a dead node was not re-placed: %s (on %d)", a.Raw, r.nodeOf("fe1", "f0"))
	}
}

// A meeting made directly on a node (outside the cluster) holds the voice
// bridge the state would choose: the create still succeeds, on a bridge the
// node picks, and the node's meeting keeps its own.
func TestCreateWhenNodeHoldsTheChosenVoiceBridge(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=probe&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	m, _ := r.mc.FSM().Meeting("fe1~probe")
	bridge := m.VoiceBridge
	if a := c.Get(t, "end", "meetingID=probe&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	direct := testClient{Base: "http://" + r.addrs[0] + "/bigbluebutton/api", Secret: "node0-secret", Algo: "sha256"}
	if a := direct.Get(t, "create", fmt.Sprintf("meetingID=outside&moderatorPW=mp&voiceBridge=%d", bridge)); a.ReturnCode != "SUCCESS" {
		t.Fatalf("direct create: %s", a.Raw)
	}
	// Same meeting ID, so the state picks the same bridge again.
	if a := c.Get(t, "create", "meetingID=probe&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("create on a node holding the bridge: %s", a.Raw)
	}
	if m, _ := r.mc.FSM().Meeting("fe1~probe"); m.VoiceBridge != bridge {
		t.Fatalf("test premise: the state chose %d, not %d again", m.VoiceBridge, bridge)
	}
	info := c.Get(t, "getMeetingInfo", "meetingID=probe")
	if info.ReturnCode != "SUCCESS" || strings.Contains(info.Raw, fmt.Sprintf("<voiceBridge>%d<", bridge)) {
		t.Fatalf("meeting should run on another bridge: %s", info.Raw)
	}
	// A bridge the client chose itself is its own business: BBB's error.
	if a := c.Get(t, "create", fmt.Sprintf("meetingID=mine&moderatorPW=mp&voiceBridge=%d", bridge)); a.MessageKey != bbb.KeyNonUniqueVoiceBridge {
		t.Fatalf("client's taken bridge: %s", a.Raw)
	}
}

// A draining peer tells health checks it is going (/readyz 503) and closes
// every connection after its answer, while still answering.
func TestDrainTurnsReadyzOffAndClosesConnections(t *testing.T) {
	r := newRig(t, 1)
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get("/readyz"); resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("before drain: /readyz %d, close %v", resp.StatusCode, resp.Close)
	}
	r.srv.Drain()
	if resp := get("/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("draining: /readyz %d", resp.StatusCode)
	}
	c := r.client("fe1")
	resp := get(strings.TrimPrefix(c.URL("create", "meetingID=late&moderatorPW=mp"), r.base))
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("draining: create %d, Connection: close %v", resp.StatusCode, resp.Close)
	}
}

// A follower whose replica lags (ConsistentRead: ErrBehind) hands a lookup
// to the leader and relays its answer; a handed-over request is never
// handed on again.
func TestLaggingReplicaAsksTheLeader(t *testing.T) {
	leader := newRig(t, 1)
	c := leader.client("fe1")
	if a := c.Get(t, "create", "meetingID=fresh&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	// A user in it, so that the node says it runs (as BBB does).
	if resp, err := http.Get(c.URL("join", "meetingID=fresh&fullName=Bob&password=mp")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	// The follower knows the frontend and the backend, not the meeting.
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe1", Secret: "fe1-secret"})
	behind := fmt.Errorf("test: %w", raftnode.ErrBehind)
	mc.SetFollower(strings.TrimPrefix(leader.base, "http://"), behind)
	follower := New(Config{}, mc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go follower.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	fc := testClient{Base: "http://" + ln.Addr().String() + "/bigbluebutton/api", Secret: "fe1-secret", Algo: "sha256"}

	if a := fc.Get(t, "isMeetingRunning", "meetingID=fresh"); a.Running != "true" {
		t.Fatalf("isMeetingRunning through a lagging follower: %s", a.Raw)
	}
	resp, err := noRedirect.Get(fc.URL("join", "meetingID=fresh&fullName=Ann&password=ap"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, leader.addrs[0]) {
		t.Fatalf("join through a lagging follower: %d %q", resp.StatusCode, loc)
	}
	// Already handed over once: the follower answers itself.
	req, _ := http.NewRequest("GET", fc.URL("getMeetingInfo", "meetingID=fresh"), nil)
	req.Header.Set(bbbapi.HeaderVia, "1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), bbb.KeyServerUnavailable) {
		t.Fatalf("a handed-over request was handed on: %s", body)
	}
	// No leader known: serverUnavailable, as before.
	mc.SetFollower("", behind)
	if a := fc.Get(t, "getMeetingInfo", "meetingID=fresh"); a.MessageKey != bbb.KeyServerUnavailable {
		t.Fatalf("no leader: %s", a.Raw)
	}
}

// Request state is pooled and meeting IDs are views of pooled buffers:
// concurrent requests for different meetings must each see their own.
func TestConcurrentRequestsKeepTheirOwnMeetingIDs(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	const meetings = 16
	for i := 0; i < meetings; i++ {
		if a := c.Get(t, "create", fmt.Sprintf("meetingID=room-%d&moderatorPW=mp&attendeePW=ap", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, meetings*20)
	for i := 0; i < meetings; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			want := fmt.Sprintf("room-%d", i)
			for k := 0; k < 20; k++ {
				var a harness.Answer
				var err error
				if k%2 == 0 {
					a, err = c.TryGet("getMeetingInfo", "meetingID="+want)
				} else {
					a, err = c.TryGet("join", "meetingID="+want+"&fullName=U&password=ap&redirect=false")
				}
				if err != nil || a.ReturnCode != "SUCCESS" || (k%2 == 0 && a.MeetingID != want) || strings.Contains(a.Raw, "fe1~") {
					errs <- fmt.Sprintf("%s: %v %s", want, err, a.Raw)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
