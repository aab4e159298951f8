package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/discovery"
)

const bbbSecret = "8cd8ef52e8e101574e400365b55e11a6"

var (
	keyA = []byte("0123456789abcdef0123456789abcdef")
	keyB = []byte("fedcba9876543210fedcba9876543210")
)

// syncBuffer captures logs written by goroutines.
type syncBuffer = harness.SyncBuffer

func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// fakeBBB is a tiny BBB API: getMeetings with a settable load, checking
// every request's checksum with the bbb package.
type fakeBBB struct {
	srv      *httptest.Server
	mu       sync.Mutex
	meetings [][2]int // participantCount, videoCount per meeting
	voice    int      // voiceParticipantCount of every meeting
	down     bool
	requests atomic.Int64
	badSums  atomic.Int64
	algos    []bbb.Algorithm // accepted checksum algorithms
	lastSum  atomic.Value
}

func newFakeBBB(t *testing.T, algos ...bbb.Algorithm) *fakeBBB {
	f := &fakeBBB{algos: algos}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBBB) apiURL() string { return f.srv.URL + "/bigbluebutton/api/" }

func (f *fakeBBB) set(down bool, meetings ...[2]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.meetings = down, meetings
}

func (f *fakeBBB) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	down, meetings, voice := f.down, f.meetings, f.voice
	f.mu.Unlock()
	if down {
		http.Error(w, "bbb-web is restarting", http.StatusBadGateway)
		return
	}
	if r.URL.Path != "/bigbluebutton/api/getMeetings" {
		http.NotFound(w, r)
		return
	}
	_, sum, _ := bbb.SplitChecksum(r.URL.RawQuery)
	f.lastSum.Store(sum)
	if !bbb.Verify("getMeetings", r.URL.RawQuery, bbbSecret, f.algos...) {
		f.badSums.Add(1)
		w.Write(bbb.FailedXML(bbb.KeyChecksumError, bbb.MsgChecksumError))
		return
	}
	var b strings.Builder
	b.WriteString("<response><returncode>SUCCESS</returncode><meetings>")
	for i, m := range meetings {
		fmt.Fprintf(&b, "<meeting><meetingName>m%d</meetingName><meetingID>m%d</meetingID><running>true</running>"+
			"<participantCount>%d</participantCount><listenerCount>1</listenerCount><videoCount>%d</videoCount>"+
			"<voiceParticipantCount>%d</voiceParticipantCount>"+
			"<attendees></attendees><metadata><x>1</x></metadata></meeting>", i, i, m[0], m[1], voice)
	}
	b.WriteString("</meetings></response>")
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, b.String())
}

func startPeer(t *testing.T, name, httpAddr string, key []byte) *discovery.Node {
	t.Helper()
	n, err := discovery.Start(discovery.Config{Name: name, BindAddr: "127.0.0.1:0", SecretKey: key, Fast: true,
		Meta: discovery.Meta{Role: discovery.RolePeer, HTTPAddr: httpAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	if cfg.Secret == "" {
		cfg.Secret = bbbSecret
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Gossip.Name == "" {
		cfg.Gossip.Name = "agent-1"
	}
	cfg.Gossip.BindAddr, cfg.Gossip.Fast = "127.0.0.1:0", true
	a, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(time.Second) })
	return a
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.EventuallyTrue(t, d, what, cond)
}

// TestAgentGossipsLoad: the agent polls a BBB stub with correctly signed
// getMeetings calls (with the algorithm the server allows) and a peer sees
// its load, its changes, and BBB going down and up; each state change is
// logged once; the secret is never logged or gossiped.
func TestAgentGossipsLoad(t *testing.T) {
	fb := newFakeBBB(t, bbb.SHA1, bbb.SHA512)
	fb.set(false, [2]int{3, 1}, [2]int{4, 2})
	peer := startPeer(t, "peer-1", "127.0.0.1:1", keyA)
	logger, logs := testLogger()
	a := startAgent(t, Config{
		APIURL: fb.apiURL(), Algorithms: []string{"sha1", "sha512"}, LoadFactor: 1.5, Logger: logger,
		Gossip: discovery.Config{Join: []string{peer.Addr()}, SecretKey: keyA},
	})
	api := fb.apiURL()
	load := func() discovery.Member { return peer.Loads()[api] }

	eventually(t, 5*time.Second, "peer sees the agent's load", func() bool {
		m := load().Meta
		return m.BBBUp && m.Meetings == 2 && m.Attendees == 7 && m.Videos == 3 && m.LoadFactor == 1.5
	})
	if l := load(); l.Name != "agent-1" || !l.Alive || l.Meta.Role != discovery.RoleAgent {
		t.Fatalf("load row: %+v", l)
	}
	if n := fb.badSums.Load(); n != 0 {
		t.Fatalf("%d getMeetings calls with a bad checksum", n)
	}
	if sum, _ := fb.lastSum.Load().(string); len(sum) != 128 {
		t.Fatalf("checksum %q: want sha512 (the strongest the server allows after sha256)", sum)
	}

	// An unchanged load still refreshes the peer's view (a heartbeat).
	u1 := load().Updated
	eventually(t, 2*time.Second, "heartbeat moves Updated", func() bool { return load().Updated.After(u1) })

	fb.set(false, [2]int{10, 0})
	eventually(t, 5*time.Second, "peer sees the new load", func() bool {
		m := load().Meta
		return m.BBBUp && m.Meetings == 1 && m.Attendees == 10 && m.Videos == 0
	})

	fb.set(true)
	eventually(t, 5*time.Second, "peer sees BBB down", func() bool {
		m := load().Meta
		return !m.BBBUp && m.Meetings == 0 && m.Attendees == 0
	})
	polls := a.polls.Load()
	eventually(t, 5*time.Second, "more polls while down", func() bool { return a.polls.Load() >= polls+5 })
	if l := load(); !l.Alive {
		t.Fatal("agent gone while only BBB is down")
	}
	fb.set(false)
	eventually(t, 5*time.Second, "peer sees BBB back, no meetings", func() bool {
		m := load().Meta
		return m.BBBUp && m.Meetings == 0
	})

	out := logs.String()
	if n := strings.Count(out, "BBB API unreachable"); n != 1 {
		t.Errorf("'unreachable' logged %d times for one outage:\n%s", n, out)
	}
	if n := strings.Count(out, "BBB API reachable"); n != 2 {
		t.Errorf("'reachable' logged %d times (want start + recovery)", n)
	}
	if strings.Contains(out, bbbSecret) {
		t.Error("BBB secret in the logs")
	}
	for _, m := range peer.Members() {
		if b, _ := json.Marshal(m); bytes.Contains(b, []byte(bbbSecret)) {
			t.Error("BBB secret gossiped")
		}
	}
}

// TestAgentWrongBBBSecret: BBB refusing the checksum is reported as down,
// with a log that names the cause.
func TestAgentWrongBBBSecret(t *testing.T) {
	fb := newFakeBBB(t)
	peer := startPeer(t, "peer-1", "127.0.0.1:1", nil)
	logger, logs := testLogger()
	startAgent(t, Config{APIURL: fb.apiURL(), Secret: "not-the-secret", Logger: logger,
		Gossip: discovery.Config{Join: []string{peer.Addr()}}})
	eventually(t, 5*time.Second, "agent appears, BBB down", func() bool {
		l, ok := peer.Loads()[fb.apiURL()]
		return ok && !l.Meta.BBBUp && fb.requests.Load() >= 2
	})
	if !strings.Contains(logs.String(), "refused the checksum") {
		t.Fatalf("no checksum hint in the log:\n%s", logs.String())
	}
}

// adminStub is a fake admin API recording registrations.
type adminStub struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	status []int // answers in turn; the last one repeats
	// Load-key requests are kept apart; they get keyStatus (default 409:
	// no JWT secret) and, with 200, key.
	keyReqs   []recorded
	keyStatus int
	key       []byte
}

type recorded struct {
	method, path, auth, ctype string
	body                      []byte
}

func newAdminStub(t *testing.T, status ...int) *adminStub {
	s := &adminStub{status: status}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		if r.URL.Path == loadKeyPath {
			s.keyReqs = append(s.keyReqs, recorded{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
			code, key := s.keyStatus, s.key
			s.mu.Unlock()
			if code == 0 {
				code = http.StatusConflict
			}
			w.WriteHeader(code)
			if code == http.StatusOK {
				fmt.Fprintf(w, `{"key":%q,"host_port":"x:1"}`, base64.StdEncoding.EncodeToString(key))
			}
			return
		}
		s.reqs = append(s.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
		code := s.status[min(len(s.reqs), len(s.status))-1]
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code >= 400 {
			fmt.Fprintf(w, `{"error":"stub says %d","code":"x"}`, code)
		} else {
			io.WriteString(w, `{"id":"b-1"}`)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *adminStub) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

func (s *adminStub) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// deadHTTPAddr is a loopback address nothing listens on.
func deadHTTPAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestAutoregister: the agent learns the peers' HTTP addresses from gossip
// (for the peers at its --join addresses), skips a peer that does not
// answer and one that fails, sends the right JSON and bearer token, and
// stops after 201.
func TestAutoregister(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusServiceUnavailable, http.StatusCreated)
	p1 := startPeer(t, "peer-1", deadHTTPAddr(t), keyA)
	p2 := startPeer(t, "peer-2", admin.addr(), keyA)
	if _, err := p2.Join(p1.Addr()); err != nil {
		t.Fatal(err)
	}
	logger, logs := testLogger()
	a := startAgent(t, Config{
		APIURL: fb.apiURL(), LoadFactor: 2.5, Logger: logger,
		Autoregister: true, APIToken: "tok.en.jwt", RegisterRetry: 100 * time.Millisecond,
		Gossip: discovery.Config{Join: []string{p1.Addr(), p2.Addr()}, SecretKey: keyA},
	})
	eventually(t, 10*time.Second, "registered", a.Registered)
	reqs := admin.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests to the admin API, want 2 (503, then 201)", len(reqs))
	}
	for _, r := range reqs {
		if r.method != "POST" || r.path != "/api/v1/backends" || r.auth != "Bearer tok.en.jwt" || r.ctype != "application/json" {
			t.Fatalf("request: %+v", r)
		}
		var got map[string]any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"url": fb.apiURL(), "secret": bbbSecret, "settings": map[string]any{"load_factor": 2.5}}
		if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
			t.Fatalf("body %s, want %s", g, w)
		}
	}
	testwait.AssertUntil(t, 500*time.Millisecond, func() error {
		if n := len(admin.requests()); n != 2 {
			return fmt.Errorf("agent kept registering after 201: %d requests", n)
		}
		return nil
	})
	if out := logs.String(); strings.Contains(out, "tok.en.jwt") || strings.Contains(out, bbbSecret) {
		t.Fatal("token or secret in the logs")
	}
}

// newAdminStubBBB is a BBB that always answers (autoregistration does not
// depend on it, but the agent polls it).
func newAdminStubBBB(t *testing.T) *fakeBBB {
	fb := newFakeBBB(t)
	fb.set(false)
	return fb
}

// TestAutoregisterAlreadyKnown: 409 means done.
func TestAutoregisterAlreadyKnown(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusConflict)
	p := startPeer(t, "peer-1", admin.addr(), nil)
	a := startAgent(t, Config{APIURL: fb.apiURL(), Autoregister: true, RegisterRetry: 100 * time.Millisecond,
		Gossip: discovery.Config{Join: []string{p.Addr()}}})
	eventually(t, 10*time.Second, "registered", a.Registered)
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		if reqs := admin.requests(); len(reqs) != 1 || reqs[0].auth != "" {
			return fmt.Errorf("requests: %+v (one, without a token)", reqs)
		}
		return nil
	})
}

// TestAutoregisterBadToken: 401 is logged as a token problem and retried
// slowly, never registering.
func TestAutoregisterBadToken(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusUnauthorized)
	p := startPeer(t, "peer-1", admin.addr(), nil)
	logger, logs := testLogger()
	a := startAgent(t, Config{APIURL: fb.apiURL(), Autoregister: true, APIToken: "bad-token", Logger: logger,
		RegisterRetry: 50 * time.Millisecond, RegisterBackoff: 400 * time.Millisecond,
		Gossip: discovery.Config{Join: []string{p.Addr()}}})
	eventually(t, 10*time.Second, "first attempt", func() bool { return len(admin.requests()) >= 1 })
	time.Sleep(1100 * time.Millisecond)
	n := len(admin.requests())
	if n < 2 || n > 5 {
		t.Fatalf("%d attempts in ~1.1 s with a 400 ms backoff after 401", n)
	}
	if a.Registered() {
		t.Fatal("registered despite 401")
	}
	out := logs.String()
	if !strings.Contains(out, "refused the token") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("no clear error about the token:\n%s", out)
	}
	if strings.Contains(out, "bad-token") {
		t.Fatal("token in the logs")
	}
}

// TestWrongGossipKeyNoRegistration: an agent whose gossip key differs
// from the peers' never learns a peer, so it never registers, and the peer
// never sees it.
func TestWrongGossipKeyNoRegistration(t *testing.T) {
	fb := newAdminStubBBB(t)
	admin := newAdminStub(t, http.StatusCreated)
	p := startPeer(t, "peer-1", admin.addr(), keyA)
	a := startAgent(t, Config{APIURL: fb.apiURL(), Autoregister: true, RegisterRetry: 50 * time.Millisecond,
		Gossip: discovery.Config{Join: []string{p.Addr()}, SecretKey: keyB}})
	testwait.AssertUntil(t, 3*time.Second, func() error {
		if n := len(admin.requests()); n != 0 || a.Registered() {
			return fmt.Errorf("registered through a cluster it could not join (%d requests)", n)
		}
		if len(p.Loads()) != 0 || p.NumMembers() != 1 || len(a.Node().PeerHTTPAddrs()) != 0 {
			return fmt.Errorf("peer sees %v; agent sees %v", p.Members(), a.Node().Members())
		}
		return nil
	})
}

// TestAgentCloseLeaves: Close makes the agent leave: the peer marks it
// gone at once (no failure detection delay).
func TestAgentCloseLeaves(t *testing.T) {
	fb := newAdminStubBBB(t)
	p := startPeer(t, "peer-1", "127.0.0.1:1", nil)
	a := startAgent(t, Config{APIURL: fb.apiURL(), Gossip: discovery.Config{Join: []string{p.Addr()}}})
	eventually(t, 5*time.Second, "joined", func() bool { return p.Loads()[fb.apiURL()].Alive })
	start := time.Now()
	if err := a.Close(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "peer sees the agent leave", func() bool { return !p.Loads()[fb.apiURL()].Alive })
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("leaving took %v", d)
	}
}

// TestAgentBBBUnreachable: a BBB that refuses connections is reported
// down, logged once, without the signed query in the log.
func TestAgentBBBUnreachable(t *testing.T) {
	peer := startPeer(t, "peer-1", "127.0.0.1:1", nil)
	logger, logs := testLogger()
	api := "http://" + deadHTTPAddr(t) + "/bigbluebutton/api/"
	a := startAgent(t, Config{APIURL: api, Logger: logger, Gossip: discovery.Config{Join: []string{peer.Addr()}}})
	eventually(t, 5*time.Second, "peer sees the agent, BBB down", func() bool {
		l, ok := peer.Loads()[api]
		return ok && l.Alive && !l.Meta.BBBUp && a.polls.Load() >= 3
	})
	out := logs.String()
	if strings.Count(out, "BBB API unreachable") != 1 || strings.Contains(out, "checksum=") {
		t.Fatalf("log:\n%s", out)
	}
}
