package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

type testAnswer = harness.Answer

// laggingFollower plays a follower at its worst: every command is applied
// by the leader (the embedded MemCluster) at once, and reaches this
// replica only when the replica makes itself consistent (ConsistentRead)
// or waits for its own write (Apply). Commit — what a create's claim uses
// — returns on the leader's answer alone, as raftnode's does.
type laggingFollower struct {
	*MemCluster
	local   *fsm.FSM
	mu      sync.Mutex
	log     [][]byte
	applied int
	// leader: play the leader instead (its replica is the leader's own).
	leader bool
	reads  atomic.Int32
	// readHook, when set, runs in ConsistentRead before the replica
	// catches up.
	readHook func()
}

func newLaggingFollower() *laggingFollower {
	return &laggingFollower{MemCluster: NewMemCluster(), local: fsm.New()}
}

func (l *laggingFollower) FSM() *fsm.FSM {
	if l.leader {
		return l.MemCluster.FSM()
	}
	return l.local
}

func (l *laggingFollower) IsLeader() bool { return l.leader }

func (l *laggingFollower) Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	res, err := l.MemCluster.Apply(ctx, c)
	l.mu.Lock()
	l.log = append(l.log, fsm.Encode(c))
	l.mu.Unlock()
	return res, err
}

func (l *laggingFollower) Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error) {
	res, err := l.Commit(ctx, c)
	l.catchUp()
	return res, err
}

func (l *laggingFollower) ConsistentRead(context.Context) error {
	l.reads.Add(1)
	if l.readHook != nil {
		l.readHook()
	}
	l.catchUp()
	return nil
}

func (l *laggingFollower) catchUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.applied < len(l.log) {
		l.applied++
		l.local.Apply(uint64(l.applied), l.log[l.applied-1])
	}
}

func (l *laggingFollower) must(c fsm.Command) {
	if res, _ := l.Apply(context.Background(), c); res.Error != nil {
		panic(res.Error)
	}
}

// serveOn runs a gateway over cluster c and returns it with a client of
// frontend fe1.
func serveOn(t *testing.T, c Cluster) (*Server, testClient) {
	s := New(Config{}, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return s, testClient{Base: "http://" + ln.Addr().String() + "/bigbluebutton/api", Secret: "fe1-secret", Algo: "sha256"}
}

// followerRig is a gateway over a lagging follower with one fake node
// (backend b0) and frontend fe1.
func followerRig(t *testing.T) (*laggingFollower, *Server, testClient, *fakebbb.Server, string) {
	lf := newLaggingFollower()
	node, api, _ := fakebbb.StartTest(t, "node0-secret")
	lf.must(&fsm.AddBackend{ID: "b0", URL: api, Secret: "node0-secret"})
	lf.must(&fsm.SetBackendAdminState{ID: "b0", State: fsm.AdminReady})
	lf.must(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: "b0", NodeState: fsm.NodeReady}}})
	lf.must(&fsm.AddFrontend{Key: "fe1", Secret: "fe1-secret"})
	s, c := serveOn(t, lf)
	return lf, s, c, node, api
}

func listedIDs(a testAnswer) []string {
	var out []string
	for _, m := range a.Meetings {
		out = append(out, m.MeetingID)
	}
	return out
}

func hasMeeting(a testAnswer, id string) bool {
	for _, m := range listedIDs(a) {
		if m == id {
			return true
		}
	}
	return false
}

// A create answered by a follower, and one committed through another peer,
// are both listed by the follower's next getMeetings, though its replica
// had received neither: it makes itself consistent first.
func TestGetMeetingsReadYourWritesOnFollower(t *testing.T) {
	lf, _, c, _, api := followerRig(t)
	if a := c.Get(t, "create", "meetingID=mine&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if _, ok := lf.local.Meeting("fe1~mine"); ok {
		t.Fatal("test setup: the follower's replica already holds the claim")
	}
	// Another peer's create: its claim committed, the node runs it.
	if res, _ := lf.Commit(context.Background(), &fsm.ClaimMeeting{InternalID: "fe1~theirs", Frontend: "fe1",
		MeetingID: "theirs", BackendID: "b0", Now: time.Now().UnixNano()}); res.Error != nil {
		t.Fatal(res.Error)
	}
	node := testClient{Base: strings.TrimSuffix(api, "/"), Secret: "node0-secret"}
	if a := node.Get(t, "create", "meetingID=fe1~theirs"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	a := c.Get(t, "getMeetings", "")
	if a.ReturnCode != "SUCCESS" || !hasMeeting(a, "mine") || !hasMeeting(a, "theirs") {
		t.Fatalf("getMeetings on a follower right after the creates: want mine and theirs, got %v: %s", listedIDs(a), a.Raw)
	}
	if n := lf.reads.Load(); n != 1 {
		t.Fatalf("one getMeetings made %d read-index waits, want 1", n)
	}
}

// The leader's replica holds every acknowledged create: its getMeetings
// makes no read-index round trip.
func TestGetMeetingsOnLeaderNoRoundTrip(t *testing.T) {
	lf, _, c, _, _ := followerRig(t)
	lf.leader = true
	if a := c.Get(t, "create", "meetingID=m1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	for i := 0; i < 5; i++ {
		if a := c.Get(t, "getMeetings", ""); !hasMeeting(a, "m1") {
			t.Fatalf("getMeetings on the leader: %s", a.Raw)
		}
	}
	if n := lf.reads.Load(); n != 0 {
		t.Fatalf("getMeetings on the leader made %d read-index waits", n)
	}
}

// Concurrent getMeetings on a follower share read-index waits: those that
// arrive while one runs wait together for the next, which starts after
// they arrived.
func TestGetMeetingsShareReadIndex(t *testing.T) {
	lf, s, c, _, _ := followerRig(t)
	if a := c.Get(t, "create", "meetingID=m1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	const n = 20
	var arrived atomic.Int32
	s.beforeRoute = func(*fasthttp.RequestCtx) { arrived.Add(1) }
	release := make(chan struct{})
	var first sync.Once
	lf.readHook = func() { first.Do(func() { <-release }) } // the first wait blocks until all have arrived
	var wg sync.WaitGroup
	var missing atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a, err := c.TryGet("getMeetings", ""); err != nil || !hasMeeting(a, "m1") {
				missing.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < n || lf.reads.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests arrived, %d reads", arrived.Load(), n, lf.reads.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let them reach the barrier
	close(release)
	wg.Wait()
	if missing.Load() > 0 {
		t.Fatalf("%d getMeetings missed the meeting", missing.Load())
	}
	if r := lf.reads.Load(); r > 3 {
		t.Fatalf("%d concurrent getMeetings made %d read-index waits; want them shared (2)", n, r)
	}
	t.Logf("%d concurrent getMeetings on a follower: %d read-index waits", n, lf.reads.Load())
}

// A meeting the state binds to a live node that the node's own list lacks
// (it lists a new meeting late) is asked for by getMeetingInfo and listed;
// an old unlisted one (ended) is not asked for.
func TestGetMeetingsAsksForNewUnlistedMeeting(t *testing.T) {
	var infoOld atomic.Int32
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/getMeetings"):
			w.Write([]byte("<response><returncode>SUCCESS</returncode><meetings><meeting><meetingID>fe1~listed</meetingID>" +
				"<running>true</running></meeting></meetings></response>"))
		case strings.HasSuffix(r.URL.Path, "/getMeetingInfo") && r.URL.Query().Get("meetingID") == "fe1~new":
			w.Write([]byte("<response><returncode>SUCCESS</returncode><meetingName>fe1~new</meetingName><meetingID>fe1~new</meetingID>" +
				"<running>false</running></response>"))
		case strings.HasSuffix(r.URL.Path, "/getMeetingInfo"):
			if r.URL.Query().Get("meetingID") == "fe1~old" {
				infoOld.Add(1)
			}
			w.Write([]byte("<response><returncode>FAILED</returncode><messageKey>notFound</messageKey><message>x</message></response>"))
		default:
			w.Write([]byte("<response><returncode>SUCCESS</returncode><running>false</running></response>"))
		}
	}))
	t.Cleanup(node.Close)
	r := newRig(t, 0)
	r.mc.MustAddReadyBackend("lazy", node.URL+"/bigbluebutton/api/", "s")
	now := time.Now()
	for _, m := range []struct {
		id  string
		now time.Time
	}{{"listed", now.Add(-time.Hour)}, {"new", now}, {"old", now.Add(-time.Hour)}} {
		r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~" + m.id, Frontend: "fe1", MeetingID: m.id, BackendID: "lazy", Now: m.now.UnixNano()})
	}
	a := r.client("fe1").Get(t, "getMeetings", "")
	want := "<meetings><meeting><meetingID>listed</meetingID><running>true</running></meeting>" +
		"<meeting><meetingName>new</meetingName><meetingID>new</meetingID><running>false</running></meeting></meetings>"
	if !strings.Contains(a.Raw, want) {
		t.Fatalf("getMeetings: want the listed and the new meeting, got %s", a.Raw)
	}
	if n := infoOld.Load(); n != 0 {
		t.Fatalf("an old meeting the node does not list was asked for %d times", n)
	}
}

// markError commits what the prober does for a dead node.
func (r *rig) markError(id string) {
	r.mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: id, NodeState: fsm.NodeError, Error: "backend timeout"}},
		Now: time.Now().UnixNano()})
}

// killNode stops node i and commits what the prober does for a dead node.
func (r *rig) killNode(i int) {
	r.nodes[i].Close()
	r.markError(r.ids[i])
}

// A hung node the cluster has marked error is not asked: getMeetings
// answers at once with the live nodes' meetings, the dead node's left out.
func TestGetMeetingsSkipsDeadNode(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	on := map[int][]string{}
	for i := 0; i < 4; i++ {
		mid := fmt.Sprintf("m%d", i)
		if a := c.Get(t, "create", "meetingID="+mid); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
		on[r.nodeOf("fe1", mid)] = append(on[r.nodeOf("fe1", mid)], mid)
	}
	if len(on[0]) != 2 || len(on[1]) != 2 {
		t.Fatalf("placement did not spread: %v", on)
	}
	r.nodes[1].Close()
	accepted := harness.HangAt(t, r.addrs[1])
	r.markError(r.ids[1])
	start := time.Now()
	a := c.Get(t, "getMeetings", "")
	took := time.Since(start)
	t.Logf("getMeetings with a hung node marked error: %v", took)
	got := listedIDs(a)
	if a.ReturnCode != "SUCCESS" || len(got) != 2 || !hasMeeting(a, on[0][0]) || !hasMeeting(a, on[0][1]) {
		t.Fatalf("want the live node's %v, got %v: %s", on[0], got, a.Raw)
	}
	if n := accepted.Load(); n != 0 || took > 2*time.Second {
		t.Fatalf("getMeetings went to a node marked error (%d connections, %v)", n, took)
	}
}

// A node held in error only because its getMeetings answer is too large is
// alive: its meetings are still listed (asked one by one).
func TestGetMeetingsListsTooLargeNodeInError(t *testing.T) {
	var huge atomic.Bool
	huge.Store(true)
	r := newRig(t, 0)
	node := hugeNode(t, &huge)
	r.mc.MustAddReadyBackend("big", node.URL+"/bigbluebutton/api/", "s")
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~big", Frontend: "fe1", MeetingID: "big", BackendID: "big"})
	r.mc.MustApply(&fsm.ReportBackends{Reports: []fsm.BackendReport{{ID: "big", NodeState: fsm.NodeError, Error: control.TooLargeMessage}}})
	if a := r.client("fe1").Get(t, "getMeetings", ""); !strings.Contains(a.Raw, "<meetingID>big</meetingID>") {
		t.Fatalf("the too large node's meeting is missing: %s", a.Raw)
	}
}

// Recording calls for a recording on a node marked error answer FAILED
// serverUnavailable at once, go to no node (not even the live one holding
// other recordings named in the same call), and change nothing.
func TestRecordingCallsOnDeadNodeFailAtOnce(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	// The index is synced below; a recording-ready callback relayed late
	// would sync node 1 after it hangs, and count as a call to it.
	for _, n := range r.nodes {
		n.SetBlockCallbacks(true)
	}
	for _, call := range []string{"create", "end"} { // both running at once: one on each node
		for i := 0; i < 2; i++ {
			if a := c.Get(t, call, fmt.Sprintf("meetingID=rec%d&record=true&moderatorPW=mp&password=mp", i)); a.ReturnCode != "SUCCESS" {
				t.Fatal(a.Raw)
			}
		}
	}
	for _, id := range r.ids {
		b, _ := r.mc.FSM().Backend(id)
		if err := r.srv.api.SyncRecordings(&b, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	recOn := map[string]string{} // backend -> record ID
	for _, rec := range r.mc.FSM().RecordingsOf("fe1", nil) {
		recOn[rec.BackendID] = rec.RecordID
	}
	deadRec, liveRec := recOn[r.ids[1]], recOn[r.ids[0]]
	if deadRec == "" || liveRec == "" {
		t.Fatalf("want a recording on each node: %v", recOn)
	}
	r.nodes[1].Close()
	accepted := harness.HangAt(t, r.addrs[1])
	r.markError(r.ids[1])
	liveCalls := r.nodes[0].Requests("publishRecordings") + r.nodes[0].Requests("updateRecordings") + r.nodes[0].Requests("deleteRecordings")

	for _, q := range []struct{ call, query string }{
		{"publishRecordings", "recordID=" + deadRec + "&publish=false"},
		{"publishRecordings", "recordID=" + liveRec + "," + deadRec + "&publish=false"},
		{"updateRecordings", "recordID=" + deadRec + "&meta_course=x"},
		{"deleteRecordings", "recordID=" + deadRec},
	} {
		start := time.Now()
		a := c.Get(t, q.call, q.query)
		took := time.Since(start)
		if a.ReturnCode != "FAILED" || a.MessageKey != bbb.KeyServerUnavailable || !strings.Contains(a.Raw, deadRec) {
			t.Fatalf("%s?%s with its node dead: %s", q.call, q.query, a.Raw)
		}
		if took > 2*time.Second {
			t.Fatalf("%s waited %v on a node marked error", q.call, took)
		}
	}
	for _, call := range []string{"getRecordingTextTracks", "putRecordingTextTrack"} {
		resp, err := http.Get(c.URL(call, "recordID="+deadRec+"&kind=subtitles&lang=en"))
		if err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 4096)
		n, _ := resp.Body.Read(body)
		resp.Body.Close()
		if !strings.Contains(string(body[:n]), `"returncode":"FAILED"`) || !strings.Contains(string(body[:n]), `"messageKey":"serverUnavailable"`) {
			t.Fatalf("%s with its node dead: %s", call, body[:n])
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("recording calls went to the node marked error (%d connections)", n)
	}
	if n := r.nodes[0].Requests("publishRecordings") + r.nodes[0].Requests("updateRecordings") + r.nodes[0].Requests("deleteRecordings"); n != liveCalls {
		t.Fatalf("a call naming a dead node's recording changed the live node's (%d calls)", n-liveCalls)
	}
	// Nothing changed: both still listed, published.
	a := c.Get(t, "getRecordings", "")
	if ids := recordIDs(a.Raw); len(ids) != 2 || strings.Contains(a.Raw, "<published>false</published>") {
		t.Fatalf("getRecordings after the refused calls: %s", a.Raw)
	}
}

// A hung node not yet marked error holds a getMeetingInfo for its read
// bound (3 s), not 10 s.
func TestHungNodeHoldsAReadForItsBound(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=m1"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	r.nodes[0].Close()
	harness.HangAt(t, r.addrs[0])
	start := time.Now()
	a := c.Get(t, "getMeetingInfo", "meetingID=m1")
	took := time.Since(start)
	t.Logf("getMeetingInfo on a hung node not marked error: %v (%s)", took, a.MessageKey)
	if a.ReturnCode != "FAILED" || took > 6*time.Second {
		t.Fatalf("getMeetingInfo on a hung node: %v: %s", took, a.Raw)
	}
}

// notLeader is a MemCluster playing a follower (SetFollower) that says so.
type notLeader struct{ *MemCluster }

func (notLeader) IsLeader() bool { return false }

// A follower whose replica cannot catch up (ErrBehind) hands getMeetings to
// the leader and relays its answer; with no leader known it answers from
// its replica as it stands.
func TestGetMeetingsOnLaggingFollowerAsksTheLeader(t *testing.T) {
	leader := newRig(t, 1)
	if a := leader.client("fe1").Get(t, "create", "meetingID=fresh"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe1", Secret: "fe1-secret"})
	behind := fmt.Errorf("test: %w", raftnode.ErrBehind)
	mc.SetFollower(strings.TrimPrefix(leader.base, "http://"), behind)
	_, fc := serveOn(t, notLeader{mc})
	if a := fc.Get(t, "getMeetings", ""); !hasMeeting(a, "fresh") {
		t.Fatalf("getMeetings through a lagging follower: %s", a.Raw)
	}
	mc.SetFollower("", behind)
	if a := fc.Get(t, "getMeetings", ""); a.ReturnCode != "SUCCESS" || a.MessageKey != bbb.KeyNoMeetings {
		t.Fatalf("getMeetings through a lagging follower with no leader: %s", a.Raw)
	}
}

// Clients' getMeetings calls do not each list every node: a node's
// listing serves every call for up to a second, and a meeting created
// meanwhile is still in the answer (read-your-writes), an ended one gone.
func TestGetMeetingsFromRecentListings(t *testing.T) {
	r := newRig(t, 2)
	c := r.client("fe1")
	for i := 0; i < 4; i++ {
		if a := c.Get(t, "create", fmt.Sprintf("meetingID=list-%d&name=L", i)); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create: %s", a.Raw)
		}
	}
	before := r.nodes[0].Requests("getMeetings") + r.nodes[1].Requests("getMeetings")
	start := time.Now()
	const calls = 50
	for i := 0; i < calls; i++ {
		if a := c.Get(t, "getMeetings", ""); strings.Count(a.Raw, "<meeting>") != 4 {
			t.Fatalf("getMeetings %d: want 4 meetings, got %s", i, a.Raw)
		}
	}
	listed := r.nodes[0].Requests("getMeetings") + r.nodes[1].Requests("getMeetings") - before
	// One listing per node per second at most (plus one per node should
	// the loop cross a second boundary of a listing's age).
	if limit := 2 * (int(time.Since(start)/time.Second) + 2); listed > limit {
		t.Fatalf("%d getMeetings calls made %d node listings, want at most %d", calls, listed, limit)
	}

	// A meeting created now is not in the kept listings, yet answered.
	if a := c.Get(t, "create", "meetingID=list-new&name=L"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("create: %s", a.Raw)
	}
	if a := c.Get(t, "end", "meetingID=list-0"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("end: %s", a.Raw)
	}
	a := c.Get(t, "getMeetings", "")
	if !strings.Contains(a.Raw, "<meetingID>list-new</meetingID>") {
		t.Fatalf("a meeting created after the listing is missing: %s", a.Raw)
	}
	if strings.Contains(a.Raw, "<meetingID>list-0</meetingID>") {
		t.Fatalf("a meeting ended after the listing is still answered: %s", a.Raw)
	}
}
