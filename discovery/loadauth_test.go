package discovery

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/conclave-lb/conclave/auth"
)

const testJWT = "jwt-secret-for-tests"

// keyFor is what conclaved gives Config.LoadKey.
func keyFor(apiURL string) []byte {
	hp, err := auth.HostPort(apiURL)
	if err != nil {
		return nil
	}
	return auth.AgentLoadKey(testJWT, hp)
}

func withLoadKey() nodeOpt { return func(c *Config) { c.LoadKey = keyFor } }

func TestSignVerifyMeta(t *testing.T) {
	t.Parallel()
	m := agentMeta(1)
	m.Attendees, m.Seq = 7, 42
	key := keyFor(m.APIURL)
	SignMeta(&m, key, time.Now())
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil || !VerifyMeta(&got, key) {
		t.Fatalf("a signed meta does not verify after the wire: %v", err)
	}
	t.Logf("signed agent meta: %d bytes", len(b))
	for name, change := range map[string]func(*Meta){
		"attendees": func(m *Meta) { m.Attendees = 1_000_000 },
		"url":       func(m *Meta) { m.APIURL = agentMeta(2).APIURL },
		"seq":       func(m *Meta) { m.Seq++ },
		"time":      func(m *Meta) { m.Time++ },
		"up":        func(m *Meta) { m.BBBUp = false },
		"factor":    func(m *Meta) { m.LoadFactor = 0.01 },
	} {
		x := got
		change(&x)
		if VerifyMeta(&x, key) {
			t.Errorf("changing %s kept the MAC valid", name)
		}
	}
	if VerifyMeta(&got, keyFor(agentMeta(2).APIURL)) {
		t.Error("a report verified under another host:port's key")
	}
}

// A verifying peer takes an agent's report only with a valid signature for
// the URL's host:port, fresh, and newer than the last one for that URL;
// everything else is counted and the last good report stands.
func TestVerifyingPeerDropsForgedReports(t *testing.T) {
	n := startNode(t, "p", peerMeta(1), withLoadKey())
	api := agentMeta(1).APIURL
	now := time.Now()
	report := func(seq uint64, attendees int, key []byte, at time.Time) []byte {
		m := agentMeta(1)
		m.Seq, m.Attendees = seq, attendees
		if key != nil {
			SignMeta(&m, key, at)
		}
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	direct := func(name string, raw []byte) []byte {
		msg := append([]byte{directMeta, byte(len(name))}, name...)
		return append(msg, raw...)
	}
	attendees := func() int { return n.Loads()[api].Meta.Attendees }
	rejected := func(reason string) uint64 { return n.RejectedReports()[reason] }
	good := keyFor(api)

	// A forged member: unsigned, then signed with another backend's key.
	forged := &memberlist.Node{Name: "evil", Addr: net.IPv4(127, 0, 0, 1), Port: 2, Meta: report(100, 1_000_000, nil, now)}
	events{n}.NotifyJoin(forged)
	if _, ok := n.Loads()[api]; ok || rejected(RejectUnsigned) != 1 {
		t.Fatalf("unsigned report taken: loads %v, rejected %v", n.Loads(), n.RejectedReports())
	}
	if m, _ := member(n, "evil"); m.Rejected != RejectUnsigned || m.Meta.APIURL != "" {
		t.Fatalf("forged member row: %+v", m)
	}
	n.receiveDirect(direct("evil", report(101, 1_000_000, keyFor(agentMeta(2).APIURL), now)))
	if _, ok := n.Loads()[api]; ok || rejected(RejectSignature) != 1 {
		t.Fatalf("report signed for another host:port taken: %v", n.RejectedReports())
	}

	// The real agent.
	real := &memberlist.Node{Name: "a", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: report(10, 5, good, now)}
	events{n}.NotifyJoin(real)
	if attendees() != 5 {
		t.Fatalf("signed report not taken: %+v %v", n.Loads(), n.RejectedReports())
	}
	n.receiveDirect(direct("a", report(11, 6, good, now)))
	if attendees() != 6 {
		t.Fatal("newer signed direct report not taken")
	}
	// Tampered (MAC of other figures): dropped, the last good one stands.
	tampered, _ := DecodeMeta(report(12, 7, good, now))
	tampered.Attendees = 1_000_000
	raw, _ := EncodeMeta(tampered)
	n.receiveDirect(direct("a", raw))
	if attendees() != 6 || rejected(RejectSignature) != 2 {
		t.Fatalf("tampered report: attendees %d, rejected %v", attendees(), n.RejectedReports())
	}
	if m, _ := member(n, "a"); m.Rejected != RejectSignature {
		t.Fatalf("member row does not say why: %+v", m)
	}
	// Stale (signed long ago), and from the future.
	n.receiveDirect(direct("a", report(13, 8, good, now.Add(-time.Hour))))
	n.receiveDirect(direct("a", report(14, 8, good, now.Add(time.Hour))))
	if attendees() != 6 || rejected(RejectStale) != 2 {
		t.Fatalf("stale reports: attendees %d, rejected %v", attendees(), n.RejectedReports())
	}
	// Replays of the real agent's reports under another member's name.
	n.receiveDirect(direct("evil", report(10, 5, good, now)))
	n.receiveDirect(direct("evil", report(11, 6, good, now)))
	if got := n.Loads()[api]; got.Name != "a" || rejected(RejectReplay) != 2 {
		t.Fatalf("replayed reports: %+v, rejected %v", got, n.RejectedReports())
	}
	// The same member's older gossip (it lags the direct path) is not an attack.
	real.Meta = report(10, 5, good, now)
	events{n}.NotifyJoin(real)
	if attendees() != 6 || rejected(RejectReplay) != 2 {
		t.Fatalf("own older report: attendees %d, rejected %v", attendees(), n.RejectedReports())
	}
	n.receiveDirect(direct("a", report(20, 9, good, now)))
	if attendees() != 9 {
		t.Fatal("a good report after rejected ones is not taken")
	}
	if m, _ := member(n, "a"); m.Rejected != "" {
		t.Fatalf("rejection reason kept after a good report: %+v", m)
	}
	// The agent restarts with its clock stepped back: its lower Seq is
	// taken once it has rejoined, but never while it is alive.
	n.receiveDirect(direct("a", report(15, 10, good, now)))
	if attendees() != 9 {
		t.Fatal("a lower Seq from the live member was taken")
	}
	events{n}.NotifyLeave(real)
	real.Meta = report(5, 11, good, now)
	events{n}.NotifyJoin(real)
	if attendees() != 11 {
		t.Fatalf("a restarted agent's signed report was not taken: %d, %v", attendees(), n.RejectedReports())
	}
}

// Without LoadKey (no JWT secret) a peer takes reports as they come.
func TestNonVerifyingPeerTakesUnsignedReports(t *testing.T) {
	n := startNode(t, "p", peerMeta(1))
	m := agentMeta(1)
	m.Seq, m.Attendees = 1, 3
	raw, _ := EncodeMeta(m)
	events{n}.NotifyJoin(&memberlist.Node{Name: "a", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: raw})
	if n.Loads()[m.APIURL].Meta.Attendees != 3 || n.Verifying() {
		t.Fatal("an unauthenticated cluster must keep today's behaviour")
	}
}

// End to end over memberlist: an agent with its load key is believed; a
// member with the gossip key advertising the same URL with a million
// attendees and no valid signature is not, and is counted.
func TestSignedAgentBelievedForgedMemberIgnored(t *testing.T) {
	p := startNode(t, "peer-1", peerMeta(1), withKey(keyA), withLoadKey())
	a := startNode(t, "agent-1", agentMeta(1), withKey(keyA), withJoin(p.Addr()))
	api := agentMeta(1).APIURL
	a.SetLoadKey(keyFor(api))
	m := agentMeta(1)
	m.Attendees = 4
	if err := a.UpdateMeta(m); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the signed report reaches the peer", func() bool {
		l, ok := p.Loads()[api]
		return ok && l.Meta.Attendees == 4 && l.Name == "agent-1"
	})
	fm := agentMeta(1)
	fm.Attendees, fm.Meetings = 1_000_000, 1000
	evil := startNode(t, "evil", fm, withKey(keyA), withJoin(p.Addr()))
	for range 3 {
		evil.UpdateMeta(fm)
		time.Sleep(300 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "the forged member is counted", func() bool { return p.RejectedReports()[RejectUnsigned] > 0 })
	if l := p.Loads()[api]; l.Name != "agent-1" || l.Meta.Attendees != 4 {
		t.Fatalf("placement would read %+v", l)
	}
}
