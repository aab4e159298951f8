package discovery

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
)

var (
	keyA = []byte("0123456789abcdef0123456789abcdef")
	keyB = []byte("fedcba9876543210fedcba9876543210")
)

// syncBuffer captures logs written by goroutines.
type syncBuffer = harness.SyncBuffer

type nodeOpt func(*Config)

func withKey(k []byte) nodeOpt          { return func(c *Config) { c.SecretKey = k } }
func withJoin(a ...string) nodeOpt      { return func(c *Config) { c.Join = a } }
func withLogger(l *slog.Logger) nodeOpt { return func(c *Config) { c.Logger = l } }
func withBind(a string) nodeOpt         { return func(c *Config) { c.BindAddr = a } }

// startNode starts a Fast member on a free loopback port, shut down at
// the end of the test.
func startNode(t testing.TB, name string, meta Meta, opts ...nodeOpt) *Node {
	t.Helper()
	cfg := Config{Name: name, BindAddr: "127.0.0.1:0", Meta: meta, Fast: true}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

func peerMeta(i int) Meta {
	return Meta{Role: RolePeer, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", 42353+i)}
}

func agentMeta(i int) Meta {
	return Meta{Role: RoleAgent, APIURL: fmt.Sprintf("https://bbb%03d.example.org/bigbluebutton/api/", i), LoadFactor: 1, BBBUp: true}
}

// eventually polls cond (testwait.EventuallyTrue) until it holds or d
// passes, and returns how long it took.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testwait.EventuallyTrue(t, d, what, cond)
	return time.Since(start)
}

func member(n *Node, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func TestMetaRoundTripAndSize(t *testing.T) {
	t.Parallel()
	m := Meta{Role: RoleAgent, APIURL: "HTTPS://bbb1.example.org/bigbluebutton", Meetings: 12, Attendees: 345,
		Videos: 67, LoadFactor: 1.5, BBBUp: true, Seq: 99}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	want := m
	want.APIURL = "https://bbb1.example.org/bigbluebutton/api/" // normalised on receipt
	if got != want {
		t.Fatalf("round trip: got %+v, want %+v", got, want)
	}
	t.Logf("agent meta on the wire: %d bytes: %s", len(b), b)

	// A realistic worst case fits: a 300-character URL and large numbers.
	big := Meta{Role: RoleAgent, APIURL: "https://" + strings.Repeat("a", 260) + ".example.org/bigbluebutton/api/",
		Meetings: 1 << 30, Attendees: 1 << 30, Videos: 1 << 30, LoadFactor: 123.456789, BBBUp: true, Seq: 1<<64 - 1}
	if b, err := EncodeMeta(big); err != nil {
		t.Fatalf("realistic large meta refused (%d bytes): %v", len(b), err)
	}

	over := Meta{Role: RoleAgent, APIURL: "https://" + strings.Repeat("x", 520) + "/bigbluebutton/api/"}
	if _, err := EncodeMeta(over); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversize meta: err = %v, want ErrMetaTooLarge", err)
	}
	if _, err := EncodeMeta(Meta{Role: "boss"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	if _, err := DecodeMeta([]byte("not json")); err == nil {
		t.Fatal("garbage meta decoded")
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	for _, n := range []int{16, 24, 32} {
		k := bytes.Repeat([]byte{7}, n)
		for _, s := range []string{base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k)} {
			got, err := ParseKey(" " + s + "\n")
			if err != nil || !bytes.Equal(got, k) {
				t.Fatalf("ParseKey(%d bytes) = %x, %v", n, got, err)
			}
		}
	}
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789"))
	for _, s := range []string{"", "!!!not base64!!!", secret} {
		_, err := ParseKey(s)
		if err == nil {
			t.Fatalf("ParseKey(%q) accepted", s)
		}
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error repeats the key: %v", err)
		}
	}
}

func TestOversizeMetaRefusedWithoutPanic(t *testing.T) {
	over := Meta{Role: RoleAgent, APIURL: "https://" + strings.Repeat("x", 600) + "/bigbluebutton/api/"}
	if _, err := Start(Config{Name: "big", BindAddr: "127.0.0.1:0", Meta: over, Fast: true}); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Start with oversize meta: err = %v", err)
	}
	p := startNode(t, "p1", peerMeta(1))
	a := startNode(t, "a1", agentMeta(1), withJoin(p.Addr()))
	eventually(t, 5*time.Second, "agent joins", func() bool { return len(p.Loads()) == 1 })
	if err := a.UpdateMeta(over); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta oversize: err = %v", err)
	}
	seq0 := a.LocalMeta().Seq
	m := agentMeta(1)
	m.Meetings = 3
	if err := a.UpdateMeta(m); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "update after refused one arrives", func() bool {
		l := p.Loads()[m.APIURL]
		return l.Meta.Meetings == 3 && l.Meta.Seq == seq0+1 // the refused update used no Seq
	})
}

// TestClusterMetaAndUpdates: three peers and two agents on an encrypted
// cluster see each other's meta, and a load update arrives everywhere fast.
func TestClusterMetaAndUpdates(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p1 := startNode(t, "peer-1", peerMeta(1), withKey(keyA), withLogger(logger))
	p2 := startNode(t, "peer-2", peerMeta(2), withKey(keyA), withJoin(p1.Addr()), withLogger(logger))
	p3 := startNode(t, "peer-3", peerMeta(3), withKey(keyA), withJoin(p2.Addr()), withLogger(logger))
	a1 := startNode(t, "agent-1", agentMeta(1), withKey(keyA), withJoin(p1.Addr(), p2.Addr()), withLogger(logger))
	a2 := startNode(t, "agent-2", agentMeta(2), withKey(keyA), withJoin(p3.Addr()), withLogger(logger))
	all := []*Node{p1, p2, p3, a1, a2}

	took := eventually(t, 10*time.Second, "all five see all five", func() bool {
		for _, n := range all {
			if n.NumMembers() != 5 || len(n.Members()) != 5 || len(n.Loads()) != 2 || len(n.PeerHTTPAddrs()) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("5 members converged in %v", took)
	for _, n := range all {
		ms := n.Members()
		for i, want := range []string{"agent-1", "agent-2", "peer-1", "peer-2", "peer-3"} {
			if ms[i].Name != want || !ms[i].Alive {
				t.Fatalf("%s: members[%d] = %+v, want alive %s", n.Name(), i, ms[i], want)
			}
		}
		if got := n.PeerHTTPAddrs(); strings.Join(got, ",") != "127.0.0.1:42354,127.0.0.1:42355,127.0.0.1:42356" {
			t.Fatalf("%s: PeerHTTPAddrs = %v", n.Name(), got)
		}
		l := n.Loads()[agentMeta(2).APIURL]
		if l.Name != "agent-2" || l.Meta.Role != RoleAgent || l.Meta.Seq != a2.LocalMeta().Seq || !l.Meta.BBBUp {
			t.Fatalf("%s: load of agent-2 = %+v", n.Name(), l)
		}
	}

	m := agentMeta(1)
	m.Meetings, m.Attendees, m.Videos, m.LoadFactor = 4, 57, 9, 2.5
	before := time.Now()
	if err := a1.UpdateMeta(m); err != nil {
		t.Fatal(err)
	}
	seq := a1.LocalMeta().Seq
	took = eventually(t, 5*time.Second, "update reaches every member", func() bool {
		for _, n := range all {
			l := n.Loads()[m.APIURL]
			if l.Meta.Seq != seq || l.Meta.Attendees != 57 || l.Meta.Meetings != 4 || l.Meta.Videos != 9 || l.Meta.LoadFactor != 2.5 {
				return false
			}
		}
		return true
	})
	t.Logf("load update reached all 5 members in %v", took)
	if u := p3.Loads()[m.APIURL].Updated; u.Before(before) {
		t.Fatalf("Updated not moved by the update: %v < %v", u, before)
	}

	// memberlist's own log lines arrive at debug; the key never appears.
	out := logs.String()
	if !strings.Contains(out, "source=memberlist") {
		t.Fatal("no memberlist lines in the debug log")
	}
	for _, k := range [][]byte{keyA} {
		for _, s := range []string{string(k), base64.StdEncoding.EncodeToString(k), fmt.Sprintf("%x", k)} {
			if strings.Contains(out, s) {
				t.Fatalf("gossip key found in logs")
			}
		}
	}
}

// TestUpdateMetaCoalesces: a burst of updates returns at once and is sent
// as at most a few UpdateNode calls; the latest meta wins.
func TestUpdateMetaCoalesces(t *testing.T) {
	p := startNode(t, "p", peerMeta(1))
	a := startNode(t, "a", agentMeta(1), withJoin(p.Addr()))
	eventually(t, 5*time.Second, "join", func() bool { return len(p.Loads()) == 1 })

	m := agentMeta(1)
	seq0 := a.LocalMeta().Seq
	start := time.Now()
	for i := 1; i <= 50; i++ {
		m.Attendees = i
		if err := a.UpdateMeta(m); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("50 UpdateMeta calls took %v: the caller was blocked", d)
	}
	eventually(t, 5*time.Second, "latest update arrives", func() bool {
		l := p.Loads()[m.APIURL].Meta
		return l.Seq == seq0+50 && l.Attendees == 50
	})
	if got := a.LocalMeta(); got.Seq != seq0+50 || got.Attendees != 50 {
		t.Fatalf("LocalMeta = %+v", got)
	}
	testwait.AssertUntil(t, 600*time.Millisecond, func() error {
		if n := a.published.Load(); n > 3 {
			return fmt.Errorf("50 updates in a burst made %d UpdateNode calls; want them coalesced (≤3)", n)
		}
		return nil
	})
}

// TestEncryptionRefusesStrangers: members with another key, or none, can
// neither join an encrypted cluster nor show up in it.
func TestEncryptionRefusesStrangers(t *testing.T) {
	p1 := startNode(t, "peer-1", peerMeta(1), withKey(keyA))
	p2 := startNode(t, "peer-2", peerMeta(2), withKey(keyA), withJoin(p1.Addr()))
	eventually(t, 5*time.Second, "keyed peers join", func() bool { return p1.NumMembers() == 2 && p2.NumMembers() == 2 })

	wrong := startNode(t, "wrong-key", agentMeta(1), withKey(keyB), withJoin(p1.Addr(), p2.Addr()))
	plain := startNode(t, "no-key", agentMeta(2), withJoin(p1.Addr(), p2.Addr()))
	for _, s := range []*Node{wrong, plain} {
		if n, err := s.Join(p1.Addr()); n != 0 || err == nil {
			t.Fatalf("%s: Join = %d, %v; want it refused", s.Name(), n, err)
		} else {
			t.Logf("%s: Join refused: %v", s.Name(), err)
		}
	}
	// And the other way round: a keyed peer cannot pull them in.
	if n, err := p1.Join(plain.Addr(), wrong.Addr()); n != 0 || err == nil {
		t.Fatalf("peer joining strangers = %d, %v", n, err)
	}
	// Their background join loops keep trying; for 3 s none gets in.
	testwait.AssertUntil(t, 3*time.Second, func() error {
		for _, n := range []*Node{p1, p2} {
			if got := len(n.Members()); got != 2 || len(n.Loads()) != 0 || n.NumMembers() != 2 {
				return fmt.Errorf("%s: members %v: a stranger got in", n.Name(), n.Members())
			}
		}
		for _, s := range []*Node{wrong, plain} {
			if s.NumMembers() != 1 || len(s.PeerHTTPAddrs()) != 0 {
				return fmt.Errorf("%s sees %v", s.Name(), s.Members())
			}
		}
		return nil
	})
}

// TestDeadAndLeftMembers: a member killed without Leave becomes Alive=false
// (and stays listed, with its last load); one that leaves likewise, faster.
func TestDeadAndLeftMembers(t *testing.T) {
	p1 := startNode(t, "peer-1", peerMeta(1))
	p2 := startNode(t, "peer-2", peerMeta(2), withJoin(p1.Addr()))
	a1 := startNode(t, "agent-1", agentMeta(1), withJoin(p1.Addr()))
	a2 := startNode(t, "agent-2", agentMeta(2), withJoin(p1.Addr()))
	eventually(t, 5*time.Second, "four members", func() bool { return p1.NumMembers() == 4 && p2.NumMembers() == 4 })

	killed := time.Now()
	if err := a1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 15*time.Second, "killed agent marked dead", func() bool {
		m, ok := member(p2, "agent-1")
		return ok && !m.Alive && !m.LeftOrDead.IsZero() && p1.NumMembers() == 3
	})
	t.Logf("killed member marked dead after %v", took)
	l, ok := p2.Loads()[agentMeta(1).APIURL]
	if !ok || l.Alive || l.LeftOrDead.Before(killed) || l.Meta.APIURL != agentMeta(1).APIURL {
		t.Fatalf("dead agent's load row: %+v, %v", l, ok)
	}

	if err := a2.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	a2.Shutdown()
	took = eventually(t, 5*time.Second, "departed agent marked gone", func() bool {
		m, ok := member(p1, "agent-2")
		return ok && !m.Alive
	})
	t.Logf("departed member marked gone after %v", took)
	if len(p1.Members()) != 4 || len(p1.Loads()) != 2 {
		t.Fatalf("dead members dropped too early: %v", p1.Members())
	}
	if err := a2.Shutdown(); err != nil || a2.Leave(time.Second) != nil {
		t.Fatal("Shutdown/Leave after Shutdown must be harmless no-ops")
	}
}

// TestDeadRetention: rows of dead members go after DeadRetention.
func TestDeadRetention(t *testing.T) {
	p := startNode(t, "p", peerMeta(1), func(c *Config) { c.DeadRetention = time.Second })
	a := startNode(t, "a", agentMeta(1), withJoin(p.Addr()))
	eventually(t, 5*time.Second, "join", func() bool { return len(p.Loads()) == 1 })
	a.Leave(time.Second)
	a.Shutdown()
	m, ok := member(p, "a")
	if !ok || m.Alive {
		t.Fatalf("departed member: %+v, %v", m, ok)
	}
	eventually(t, 3*time.Second, "forgotten", func() bool {
		p.mu.RLock()
		rows := len(p.members)
		p.mu.RUnlock()
		return len(p.Members()) == 1 && len(p.Loads()) == 0 && rows == 1
	})
}

// TestRejoinAfterPeerRestart: an agent that outlived its only peer joins
// the restarted peer by itself.
func TestRejoinAfterPeerRestart(t *testing.T) {
	p := startNode(t, "peer-1", peerMeta(1), withKey(keyA))
	addr := p.Addr()
	a := startNode(t, "agent-1", agentMeta(1), withKey(keyA), withJoin(addr))
	eventually(t, 5*time.Second, "join", func() bool { return len(p.Loads()) == 1 })

	p.Shutdown()
	eventually(t, 15*time.Second, "agent sees the peer dead", func() bool { return len(a.PeerHTTPAddrs()) == 0 })

	p2 := startNode(t, "peer-1", peerMeta(1), withKey(keyA), withBind(addr)) // no Join: fresh, alone
	took := eventually(t, 15*time.Second, "agent rejoins the restarted peer", func() bool {
		l, ok := p2.Loads()[agentMeta(1).APIURL]
		return ok && l.Alive && len(a.PeerHTTPAddrs()) == 1
	})
	t.Logf("agent back in the restarted peer's table after %v", took)
}

func BenchmarkEncodeDecodeMeta(b *testing.B) {
	m := agentMeta(1)
	m.Meetings, m.Attendees, m.Videos, m.Seq = 20, 500, 80, 123456
	b.ReportAllocs()
	for b.Loop() {
		raw, err := EncodeMeta(m)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeMeta(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMetaOrdering: a direct message only applies to a live member and
// only when newer; gossip never takes a row back to an older Seq, except
// when the member (re)joins.
func TestMetaOrdering(t *testing.T) {
	n := startNode(t, "p", peerMeta(1))
	enc := func(seq uint64, meetings int) []byte {
		m := agentMeta(1)
		m.Seq, m.Meetings = seq, meetings
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
	meetings := func() int { return n.Loads()[agentMeta(1).APIURL].Meta.Meetings }
	node := &memberlist.Node{Name: "a", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: enc(10, 1)}

	n.receiveDirect(direct("a", enc(11, 2))) // unknown member: ignored
	if len(n.Loads()) != 0 {
		t.Fatal("direct meta created a member")
	}
	events{n}.NotifyJoin(node)
	n.receiveDirect(direct("a", enc(12, 3)))
	if meetings() != 3 {
		t.Fatalf("newer direct meta not applied: %d", meetings())
	}
	n.receiveDirect(direct("a", enc(11, 4)))
	if meetings() != 3 {
		t.Fatal("older direct meta applied")
	}
	node.Meta = enc(11, 5)
	events{n}.NotifyUpdate(node) // gossip lagging behind the direct message
	if meetings() != 3 {
		t.Fatal("older gossip meta applied")
	}
	node.Meta = enc(13, 6)
	events{n}.NotifyUpdate(node)
	if meetings() != 6 {
		t.Fatal("newer gossip meta not applied")
	}
	for _, bad := range [][]byte{nil, {directMeta}, {directMeta, 50, 'a'}, {9, 1, 'a'}, direct("a", []byte("junk"))} {
		n.receiveDirect(bad)
	}
	events{n}.NotifyLeave(node)
	n.receiveDirect(direct("a", enc(20, 7)))
	if l := n.Loads()[agentMeta(1).APIURL]; l.Alive || l.Meta.Meetings != 6 {
		t.Fatalf("dead member updated by a direct message: %+v", l)
	}
	node.Meta = enc(5, 8) // e.g. a clock stepped back before a restart
	events{n}.NotifyJoin(node)
	if l := n.Loads()[agentMeta(1).APIURL]; !l.Alive || l.Meta.Meetings != 8 {
		t.Fatalf("rejoined member's meta not taken: %+v", l)
	}
}

// TestDirectLoadReachesPeersFirst: load-only updates go straight to the
// peers while gossip to everyone else is rate-limited; a peer that appears
// later is sent the current meta; a change beyond the load is gossiped at
// once.
func TestDirectLoadReachesPeersFirst(t *testing.T) {
	saved := fastTimings
	fastTimings.gossipEvery = time.Hour
	t.Cleanup(func() { fastTimings = saved })

	p1 := startNode(t, "peer-1", peerMeta(1))
	a := startNode(t, "agent-1", agentMeta(1), withJoin(p1.Addr()))
	other := startNode(t, "agent-2", agentMeta(2), withJoin(p1.Addr()))
	eventually(t, 5*time.Second, "three members", func() bool {
		return p1.NumMembers() == 3 && a.NumMembers() == 3 && other.NumMembers() == 3
	})
	api := agentMeta(1).APIURL
	sees := func(n *Node, attendees int, up bool) bool {
		l := n.Loads()[api].Meta
		return l.Attendees == attendees && l.BBBUp == up
	}

	m := agentMeta(1)
	m.Attendees = 1
	a.UpdateMeta(m) // the first load update is gossiped at once
	eventually(t, 5*time.Second, "first update everywhere", func() bool { return sees(p1, 1, true) && sees(other, 1, true) })

	m.Attendees = 2
	a.UpdateMeta(m) // load only: direct to the peer, gossip owed for an hour
	eventually(t, 2*time.Second, "peer has the second update", func() bool { return sees(p1, 2, true) })
	testwait.AssertUntil(t, 1500*time.Millisecond, func() error {
		if !sees(other, 1, true) {
			return fmt.Errorf("load-only update gossiped before its time: %+v", other.Loads()[api].Meta)
		}
		return nil
	})

	p2 := startNode(t, "peer-2", peerMeta(2), withJoin(p1.Addr()))
	eventually(t, 5*time.Second, "a new peer is sent the current load", func() bool { return sees(p2, 2, true) })

	m.BBBUp = false
	a.UpdateMeta(m) // more than load: gossiped at once
	eventually(t, 5*time.Second, "BBB down reaches every member", func() bool {
		return sees(p1, 2, false) && sees(p2, 2, false) && sees(other, 2, false)
	})
}

// TestHeartbeatRefreshesPeersOnly: UpdateMeta with unchanged content
// moves Updated (and Seq) on the peers and is not gossiped.
func TestHeartbeatRefreshesPeersOnly(t *testing.T) {
	p := startNode(t, "peer-1", peerMeta(1))
	a := startNode(t, "agent-1", agentMeta(1), withJoin(p.Addr()))
	other := startNode(t, "agent-2", agentMeta(2), withJoin(p.Addr()))
	eventually(t, 5*time.Second, "three members", func() bool {
		return p.NumMembers() == 3 && a.NumMembers() == 3 && other.NumMembers() == 3
	})
	api := agentMeta(1).APIURL
	before := p.Loads()[api]
	seenByOther := other.Loads()[api].Meta.Seq
	gossiped := a.published.Load()
	for range 3 {
		if err := a.UpdateMeta(agentMeta(1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond)
	}
	eventually(t, 2*time.Second, "peer has the heartbeat", func() bool {
		l := p.Loads()[api]
		return l.Meta.Seq == a.LocalMeta().Seq && l.Updated.After(before.Updated)
	})
	testwait.AssertUntil(t, 1200*time.Millisecond, func() error { // past the Fast gossip interval
		if got := a.published.Load(); got != gossiped {
			return fmt.Errorf("heartbeats were gossiped: %d UpdateNode calls", got-gossiped)
		}
		if got := other.Loads()[api].Meta.Seq; got != seenByOther {
			return fmt.Errorf("another agent saw a heartbeat (seq %d → %d)", seenByOther, got)
		}
		return nil
	})
}
