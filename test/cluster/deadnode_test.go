package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/test/harness"
)

// TestGetMeetingsReadYourWrites: a meeting whose create a peer answered is
// listed by a getMeetings that starts afterwards, through the same peer (a
// follower: its replica learns the claim after the leader) and through
// every other peer. BBB lists a new meeting at once; client test suites
// check exactly that.
func TestGetMeetingsReadYourWrites(t *testing.T) {
	c := startBBBCluster(t, 2)
	leader := c.Leader(10 * time.Second)
	fols := followers(c.Cluster, leader)
	listed := func(p *harness.Peer, mid string) bool {
		a := c.client(p).Get(t, "getMeetings", "")
		if a.ReturnCode != "SUCCESS" {
			t.Fatalf("getMeetings on %s: %s", p.ID, a.Raw)
		}
		for _, m := range a.Meetings {
			if m.MeetingID == mid {
				return true
			}
		}
		return false
	}
	const tries = 20
	same := 0
	for i := 0; i < tries; i++ {
		p := fols[i%len(fols)]
		mid := fmt.Sprintf("ryw-same-%d", i)
		if a := c.create(t, p, mid); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create on %s: %s", p.ID, a.Raw)
		}
		if listed(p, mid) {
			same++
		}
	}
	across := 0
	for i := 0; i < tries; i++ {
		creator := c.Peers[i%3]
		mid := fmt.Sprintf("ryw-across-%d", i)
		if a := c.create(t, creator, mid); a.ReturnCode != "SUCCESS" {
			t.Fatalf("create on %s: %s", creator.ID, a.Raw)
		}
		ok := true
		for _, p := range c.Peers {
			if p != creator {
				ok = listed(p, mid) && ok
			}
		}
		if ok {
			across++
		}
	}
	t.Logf("RYW: getMeetings on the creating follower listed %d of %d; on both other peers %d of %d", same, tries, across, tries)
	// What it costs (measured, not asserted): getMeetings on the leader and
	// on a follower with nothing written meanwhile, 40 meetings listed.
	for _, p := range []*harness.Peer{leader, fols[0]} {
		const n = 200
		var tooks []time.Duration
		for i := 0; i < n; i++ {
			tooks = append(tooks, timed(func() { c.client(p).Get(t, "getMeetings", "") }))
		}
		slices.Sort(tooks)
		role := "follower"
		if p == leader {
			role = "leader"
		}
		t.Logf("RYW: getMeetings on the %s: median %v, p90 %v over %d calls", role,
			tooks[n/2].Round(10*time.Microsecond), tooks[n*9/10].Round(10*time.Microsecond), n)
	}
	if same != tries || across != tries {
		t.Fatalf("a meeting just created is missing from getMeetings: same follower %d of %d, other peers %d of %d", same, tries, across, tries)
	}
}

// hangNode replaces fake node i by a listener on its address that accepts
// connections and never answers: what a SIGSTOPped BBB looks like to a
// client (the kernel completes the handshake, nothing reads or writes).
func (c *bbbCluster) hangNode(t *testing.T, i int) {
	t.Helper()
	c.nodes[i].Close()
	harness.HangAt(t, c.hosts[i])
}

// nodeRunning returns the index of the fake node running meeting mid.
func (c *bbbCluster) nodeRunning(mid string) int {
	for j, n := range c.nodes {
		if slices.Contains(n.MeetingIDs(), "moodle~"+mid) {
			return j
		}
	}
	return -1
}

var recordIDPattern = regexp.MustCompile(`<recordID>([^<]+)</recordID>`)

// timed runs fn and returns how long it took.
func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

// TestDeadNodeAnswersAtOnce: with a node hung and marked error, calls that
// would contact it answer at once: getMeetings lists the live node's
// meetings and leaves the dead node's out (as a BBB server that lost them),
// publish/update/deleteRecordings and text tracks of a recording on it
// answer FAILED serverUnavailable, and getRecordings still lists it from
// the index. Before it is marked error, a call waits at most its per-call
// timeout (a few seconds, never 10).
func TestDeadNodeAnswersAtOnce(t *testing.T) {
	c := startBBBCluster(t, 2, "CONCLAVE_RECORDINGS_SYNC=300ms")
	entry := c.Peers[1]
	cl := c.client(entry)
	// A recorded meeting that has ended leaves a recording on its node.
	if a := cl.Get(t, "create", "meetingID=lesson&record=true&autoStartRecording=true&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	dead := c.nodeRunning("lesson")
	if dead < 0 {
		t.Fatal("lesson runs on no node")
	}
	live := 1 - dead
	if resp, err := http.Get(cl.URL("join", "meetingID=lesson&fullName=Ann&password=mp")); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if a := cl.Get(t, "end", "meetingID=lesson&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	var recordID string
	harness.Eventually(t, 10*time.Second, func() error {
		a := cl.Get(t, "getRecordings", "meetingID=lesson")
		m := recordIDPattern.FindStringSubmatch(a.Raw)
		if m == nil {
			return fmt.Errorf("no recording indexed yet: %s", a.Raw)
		}
		recordID = m[1]
		return nil
	})
	// Meetings on both nodes: placement takes the least loaded node.
	onNode := map[int][]string{}
	for i := 0; len(onNode[dead]) < 2 || len(onNode[live]) < 2; i++ {
		if i == 12 {
			t.Fatalf("placement did not spread: %v", onNode)
		}
		mid := fmt.Sprintf("room-%d", i)
		if a := c.create(t, c.Peers[i%3], mid); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
		n := c.nodeRunning(mid)
		onNode[n] = append(onNode[n], mid)
	}

	c.hangNode(t, dead)
	// Hung, not yet marked error: a call waits at most its own timeout.
	var pubBefore harness.Answer
	tGetBefore := timed(func() { cl.Get(t, "getMeetings", "") })
	tPubBefore := timed(func() { pubBefore = cl.Get(t, "publishRecordings", "recordID="+recordID+"&publish=false") })
	t.Logf("DEADNODE: node hung, not yet error: getMeetings %v, publishRecordings %v (%s)",
		tGetBefore.Round(100*time.Microsecond), tPubBefore.Round(100*time.Microsecond), pubBefore.MessageKey)
	if tPubBefore > 8*time.Second || tGetBefore > 8*time.Second {
		t.Errorf("a hung node held a client for %v (getMeetings) / %v (publishRecordings)", tGetBefore, tPubBefore)
	}

	harness.Eventually(t, 15*time.Second, func() error {
		if b := c.backends(t)[c.hosts[dead]]; b.NodeState != "error" {
			return fmt.Errorf("hung node's NodeState %s", b.NodeState)
		}
		return nil
	})
	c.WaitConverged(5 * time.Second)

	for _, p := range c.Peers {
		pc := c.client(p)
		var gm, pub, del, upd harness.Answer
		tGet := timed(func() { gm = pc.Get(t, "getMeetings", "") })
		tPub := timed(func() { pub = pc.Get(t, "publishRecordings", "recordID="+recordID+"&publish=false") })
		tUpd := timed(func() { upd = pc.Get(t, "updateRecordings", "recordID="+recordID+"&meta_course=x") })
		tDel := timed(func() { del = pc.Get(t, "deleteRecordings", "recordID="+recordID) })
		var tracks string
		tTracks := timed(func() {
			resp, err := http.Get(pc.URL("getRecordingTextTracks", "recordID="+recordID))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tracks = string(b)
		})
		t.Logf("DEADNODE: node error, through %s: getMeetings %v, publishRecordings %v, updateRecordings %v, deleteRecordings %v, getRecordingTextTracks %v",
			p.ID, tGet.Round(100*time.Microsecond), tPub.Round(100*time.Microsecond), tUpd.Round(100*time.Microsecond), tDel.Round(100*time.Microsecond), tTracks.Round(100*time.Microsecond))

		var got []string
		for _, m := range gm.Meetings {
			got = append(got, m.MeetingID)
		}
		slices.Sort(got)
		want := slices.Clone(onNode[live])
		slices.Sort(want)
		if gm.ReturnCode != "SUCCESS" || !slices.Equal(got, want) {
			t.Errorf("getMeetings through %s with node %d dead: want the live node's %v, got %v: %s", p.ID, dead, want, got, gm.Raw)
		}
		for _, a := range []struct {
			call string
			a    harness.Answer
		}{{"publishRecordings", pub}, {"updateRecordings", upd}, {"deleteRecordings", del}} {
			if a.a.ReturnCode != "FAILED" || a.a.MessageKey != "serverUnavailable" || !strings.Contains(a.a.Raw, recordID) {
				t.Errorf("%s through %s of a recording on a dead node: %s", a.call, p.ID, a.a.Raw)
			}
		}
		var tj struct {
			Response struct {
				ReturnCode string `json:"returncode"`
				MessageKey string `json:"messageKey"`
			} `json:"response"`
		}
		if err := json.Unmarshal([]byte(tracks), &tj); err != nil || tj.Response.ReturnCode != "FAILED" || tj.Response.MessageKey != "serverUnavailable" {
			t.Errorf("getRecordingTextTracks through %s of a recording on a dead node: %s", p.ID, tracks)
		}
		// The index still lists it, unchanged.
		if a := pc.Get(t, "getRecordings", "meetingID=lesson"); !strings.Contains(a.Raw, recordID) || !strings.Contains(a.Raw, "<published>true</published>") {
			t.Errorf("getRecordings through %s after the refused calls: %s", p.ID, a.Raw)
		}
		for what, took := range map[string]time.Duration{"getMeetings": tGet, "publishRecordings": tPub,
			"updateRecordings": tUpd, "deleteRecordings": tDel, "getRecordingTextTracks": tTracks} {
			if took > 2*time.Second {
				t.Errorf("%s through %s waited %v on a node already marked error", what, p.ID, took)
			}
		}
	}
	// Measured only (gateway/bbbapi/meetings.go answers these): calls on a meeting
	// of the dead node.
	mid := url.QueryEscape(onNode[dead][0])
	for _, call := range []string{"isMeetingRunning", "getMeetingInfo"} {
		var a harness.Answer
		took := timed(func() { a = cl.Get(t, call, "meetingID="+mid) })
		t.Logf("DEADNODE: %s of a meeting on the dead node: %v (%s %s)", call, took.Round(100*time.Microsecond), a.ReturnCode, a.MessageKey)
	}
}
