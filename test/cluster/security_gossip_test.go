package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
)

// Replays of issue 13's holes against the real binaries: forged gossip
// load (3) and the callback relay (4).

const secJWT = "jwt-secret-for-security-replays"

var secGossipKey = []byte("0123456789abcdef0123456789abcdef")

func startSecuredBBBCluster(t *testing.T, nodes int) *bbbCluster {
	admin, _ := auth.Mint(secJWT, "t", []string{auth.ScopeAdmin}, time.Hour)
	return startBBBCluster(t, nodes, "CONCLAVE_API_JWT_SECRET="+secJWT, "CONCLAVE_TEST_TOKEN="+admin,
		"CONCLAVE_GOSSIP_KEY="+base64.StdEncoding.EncodeToString(secGossipKey))
}

// joinsAnswered checks every peer still creates and joins.
func joinsAnswered(t *testing.T, c *bbbCluster, tag string) {
	t.Helper()
	for i, p := range c.Peers {
		mid := fmt.Sprintf("after-%s-%d", tag, i)
		if a := c.client(p).Get(t, "create", "meetingID="+mid+"&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
			t.Fatalf("peer %s after %s: create: %s", p.ID, tag, a.Raw)
		}
		resp, err := harness.NoRedirect.Get(c.client(p).URL("join", "meetingID="+mid+"&fullName=U&password=mp"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("peer %s after %s: join answered %d", p.ID, tag, resp.StatusCode)
		}
	}
}

// TestForgedGossipLoadIgnored: a member holding the gossip key (it is on
// every BBB server) advertises a real backend's URL with 1 000 000
// attendees, unsigned and with a made-up signature. Placement does not
// believe it, every peer counts the rejected reports, and says so in its log.
func TestForgedGossipLoadIgnored(t *testing.T) {
	c := startSecuredBBBCluster(t, 2)
	victim := "http://" + c.hosts[0] + "/bigbluebutton/api/"
	var joins []string
	for _, p := range c.Peers {
		joins = append(joins, p.Gossip)
	}
	forged := discovery.Meta{Role: discovery.RoleAgent, APIURL: victim, Meetings: 1000, Attendees: 1_000_000, BBBUp: true, LoadFactor: 1}
	start := func(name string) *discovery.Node {
		n, err := discovery.Start(discovery.Config{Name: name, BindAddr: harness.FreeAddr(t), SecretKey: secGossipKey,
			Join: joins, Meta: forged, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		return n
	}
	unsigned := start("evil-unsigned")
	badSig := start("evil-badsig")
	// A MAC made up (and one under a key derived from another secret).
	badSig.SetLoadKey(auth.AgentLoadKey("not-the-cluster-secret", strings.TrimPrefix(strings.TrimSuffix(victim, "/bigbluebutton/api/"), "http://")))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // keep reporting, as an agent would
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			unsigned.UpdateMeta(forged)
			badSig.UpdateMeta(forged)
		}
	}()
	defer func() { close(stop); <-done }()

	harness.Eventually(t, 15*time.Second, func() error {
		for _, p := range c.Peers {
			m := scrape(t, p)
			u, _ := metricValue(m, `conclave_gossip_reports_rejected_total{reason="unsigned"}`)
			s, _ := metricValue(m, `conclave_gossip_reports_rejected_total{reason="bad_signature"}`)
			if u < 1 || s < 1 {
				return fmt.Errorf("peer %s: rejected unsigned %v, bad_signature %v", p.ID, u, s)
			}
		}
		return nil
	})
	// The state does not carry the forged figures, for 3 s: past the
	// prober's load commit (2 s) ...
	var b adminapi.Backend
	testwait.AssertUntilEvery(t, 3*time.Second, 200*time.Millisecond, func() error {
		var ok bool
		if b, ok = backendByHost(t, c.Cluster, c.hosts[0]); !ok {
			return errors.New("victim backend gone")
		}
		var bs []adminapi.Backend
		if err := c.API(c.Peers[0], "GET", "/api/v1/backends", nil, &bs); err != nil {
			return err
		}
		for _, x := range bs {
			if x.Attendees >= 1000 {
				return fmt.Errorf("forged load reached the state: backend %s (%s) has %d meetings, %d attendees", x.ID, x.URL, x.Meetings, x.Attendees)
			}
		}
		return nil
	})
	// ... and placement still sends new meetings to the victim.
	before := c.nodes[0].MeetingCount()
	for i := 0; i < 6; i++ {
		if a := c.client(c.Peers[i%3]).Get(t, "create", fmt.Sprintf("meetingID=forged-%d&moderatorPW=mp", i)); a.ReturnCode != "SUCCESS" {
			t.Fatal(a.Raw)
		}
	}
	if got := c.nodes[0].MeetingCount() - before; got == 0 {
		t.Fatalf("placement believed the forged load: backend %s got none of 6 meetings", b.ID)
	}
	for _, p := range c.Peers {
		if !strings.Contains(p.Log(), "gossip load report rejected") {
			t.Errorf("peer %s did not log the rejected reports", p.ID)
		}
	}
	joinsAnswered(t, c, "forged-gossip")
}

// hitCounter is a loopback HTTP server standing for what a relay might be
// aimed at (an LMS, an internal service): it counts requests.
type hitCounter struct {
	srv  *httptest.Server
	mu   sync.Mutex
	hits []string // request URIs
}

func newHitCounter(t *testing.T, status int) *hitCounter {
	h := &hitCounter{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.hits = append(h.hits, r.URL.RequestURI())
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hitCounter) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.hits...)
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// TestTenantCallbackRelayRefused: a tenant knows its own secret, so it can
// sign anything with it. A relay URL it mints, aimed at targets answering
// 200, 401 or nothing at all, is refused with one and the same answer, and
// no request reaches any target. A real meeting's callbacks still reach
// the client, and getMeetingInfo shows the client its own URLs, never a
// relay URL.
func TestTenantCallbackRelayRefused(t *testing.T) {
	c := startSecuredBBBCluster(t, 1)
	b, ok := backendByHost(t, c.Cluster, c.hosts[0])
	if !ok {
		t.Fatal("no backend")
	}
	ok200, no401 := newHitCounter(t, 200), newHitCounter(t, 401)
	dead := "http://" + harness.FreeAddr(t) + "/x"
	var answers []string
	for _, p := range c.Peers {
		for _, aim := range []string{ok200.srv.URL + "/api/v1/frontends", no401.srv.URL + "/secret", dead} {
			forged := map[string]string{
				// The old scheme: HMAC under the frontend's secret.
				"old": "end?fe=moodle&be=" + b.ID + "&url=" + url.QueryEscape(aim) +
					"&sig=" + hmacHex(frontendSecret, "end\x00moodle\x00"+b.ID+"\x00"+aim) + "&meetingID=moodle~x",
				// Today's fields, signed with the tenant's secret.
				"new": "end?fe=moodle&m=moodle~x&mid=x&be=" + b.ID + "&url=" + url.QueryEscape(aim) +
					"&sig=" + hmacHex(frontendSecret, "x") + "&meetingID=moodle~x",
				"recording": "recording-ready?fe=moodle&m=moodle~x&mid=x&be=" + b.ID + "&url=" + url.QueryEscape(aim) + "&sig=00",
			}
			for name, q := range forged {
				resp, err := http.Post("http://"+p.HTTP+"/conclave/callback/"+q, "application/x-www-form-urlencoded", strings.NewReader("signed_parameters=x"))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("peer %s, %s relay to %s: HTTP %d %s", p.ID, name, aim, resp.StatusCode, body)
				}
				answers = append(answers, fmt.Sprint(resp.StatusCode, " ", string(body)))
			}
		}
	}
	for _, a := range answers {
		if a != answers[0] {
			t.Fatalf("the answer varies: %q vs %q", a, answers[0])
		}
	}
	testwait.AssertUntil(t, time.Second, func() error { // a relay would be on its way by then
		if h := append(ok200.got(), no401.got()...); len(h) != 0 {
			return fmt.Errorf("forged relays reached their targets: %v", h)
		}
		return nil
	})
	for _, p := range c.Peers {
		if v, _ := metricValue(scrape(t, p), `conclave_callback_relays_total{kind="end",result="refused"}`); v < 6 {
			t.Fatalf("peer %s counted %v refused relays", p.ID, v)
		}
	}

	// A real meeting with callbacks: the client sees its own URLs.
	lms := newHitCounter(t, 200)
	cl := c.client(c.Peers[1])
	end, rec := lms.srv.URL+"/end?course=7", lms.srv.URL+"/rec"
	if a := cl.Get(t, "create", "meetingID=cb1&moderatorPW=mp&meta_endCallbackUrl="+url.QueryEscape(end)+
		"&meta_bbb-recording-ready-url="+url.QueryEscape(rec)); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	for _, p := range c.Peers {
		info := c.client(p).Get(t, "getMeetingInfo", "meetingID=cb1")
		if info.ReturnCode != "SUCCESS" || strings.Contains(info.Raw, "/conclave/callback/") || strings.Contains(info.Raw, "sig=") ||
			!strings.Contains(info.Raw, "<endcallbackurl>"+xmlEscape(end)+"</endcallbackurl>") {
			t.Fatalf("peer %s getMeetingInfo: %s", p.ID, info.Raw)
		}
		all := c.client(p).Get(t, "getMeetings", "")
		if strings.Contains(all.Raw, "/conclave/callback/") {
			t.Fatalf("peer %s getMeetings shows a relay URL: %s", p.ID, all.Raw)
		}
	}
	// Ending it relays BBB's callback to the client, with its own meeting ID.
	if a := c.client(c.Peers[2]).Get(t, "end", "meetingID=cb1&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		for _, h := range lms.got() {
			if strings.HasPrefix(h, "/end?") && strings.Contains(h, "meetingID=cb1") && strings.Contains(h, "course=7") {
				return nil
			}
		}
		return fmt.Errorf("end callback not relayed: %v", lms.got())
	})
	joinsAnswered(t, c, "callbacks")
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// TestAgentTokenHostPortAndPeerAddresses: an agent token whose subject is
// a bare host changes no backend on that host, a host:port token only its
// own; no token registers a peer's own HTTP, Raft or gossip address as a
// backend; an agent with a valid token gets its load key and signs its load.
func TestAgentTokenHostPortAndPeerAddresses(t *testing.T) {
	c := startSecuredBBBCluster(t, 2)
	host0, _, _ := net.SplitHostPort(c.hosts[0])
	mint := func(sub string) string {
		tok, _ := auth.Mint(secJWT, sub, []string{auth.ScopeAgent}, time.Hour)
		return tok
	}
	patch := map[string]any{"load_factor": 0.01}
	for _, p := range c.Peers {
		if err := harness.APIWithToken(p.HTTP, mint(host0), "PATCH", "/api/v1/backends/"+url.PathEscape(c.hosts[1]), patch, nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("bare-host token changed a backend: %v", err)
		}
		if err := harness.APIWithToken(p.HTTP, mint(c.hosts[0]), "PATCH", "/api/v1/backends/"+url.PathEscape(c.hosts[1]), patch, nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("host:port token changed another port's backend: %v", err)
		}
		if err := harness.APIWithToken(p.HTTP, mint(host0), "POST", "/api/v1/agent/load-key", adminapi.LoadKeyRequest{URL: "http://" + c.hosts[1] + "/bigbluebutton/api/"}, nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("bare-host token got a load key: %v", err)
		}
	}
	if err := harness.APIWithToken(c.Peers[0].HTTP, mint(c.hosts[0]), "PATCH", "/api/v1/backends/"+url.PathEscape(c.hosts[0]), patch, nil); err != nil {
		t.Fatalf("host:port token changing its own backend: %v", err)
	}
	for _, p := range c.Peers {
		for _, addr := range []string{p.HTTP, p.Raft, p.Gossip} {
			u := adminapi.AddBackendRequest{URL: "http://" + addr + "/bigbluebutton/api/", Secret: "s"}
			if err := c.API(c.Peers[0], "POST", "/api/v1/backends", u, nil); err == nil || !strings.Contains(err.Error(), "400") {
				t.Fatalf("admin registered peer %s's address %s as a backend: %v", p.ID, addr, err)
			}
			if err := harness.APIWithToken(c.Peers[1].HTTP, mint(addr), "POST", "/api/v1/backends", u, nil); err == nil || !strings.Contains(err.Error(), "400") {
				t.Fatalf("agent registered peer %s's address %s as a backend: %v", p.ID, addr, err)
			}
		}
	}
	// A real agent with its host:port token: load key fetched, load signed.
	n := newFakeNode(t, t.TempDir(), "signed")
	startAgent(t, c.Cluster, n, "CONCLAVE_GOSSIP_KEY="+base64.StdEncoding.EncodeToString(secGossipKey), "CONCLAVE_API_TOKEN="+mint(n.host))
	logPath := filepath.Join(c.Dir, "agent-"+strings.ReplaceAll(n.host, ":", "_")+".log")
	harness.Eventually(t, 15*time.Second, func() error {
		b, _ := os.ReadFile(logPath)
		if !strings.Contains(string(b), "load key received") {
			return fmt.Errorf("agent has no load key yet")
		}
		if _, ok := backendByHost(t, c.Cluster, n.host); !ok {
			return fmt.Errorf("agent not registered yet")
		}
		return nil
	})
	testwait.AssertUntilEvery(t, 2*time.Second, 250*time.Millisecond, func() error {
		for _, p := range c.Peers {
			if v, _ := metricValue(scrape(t, p), `conclave_gossip_reports_rejected_total{reason="bad_signature"}`); v != 0 {
				return fmt.Errorf("peer %s rejected %v signed reports", p.ID, v)
			}
		}
		return nil
	})
	b, _ := os.ReadFile(logPath)
	if tok := mint(n.host); strings.Contains(string(b), tok) {
		t.Fatal("agent token in the agent's log")
	}
	joinsAnswered(t, c, "agent-tokens")
}

// TestTooLargeNodeAnswerIsLoud: a node whose getMeetings answer is over
// 16 MiB is not dropped silently: the leader counts it, holds the node in
// NodeState error with the reason, and its meeting stays bound.
func TestTooLargeNodeAnswerIsLoud(t *testing.T) {
	c := startSecuredBBBCluster(t, 0)
	var huge atomic.Bool
	pad := strings.Repeat("x", 17<<20)
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mid := r.URL.Query().Get("meetingID")
		switch {
		case strings.HasSuffix(r.URL.Path, "/create"):
			fmt.Fprintf(w, "<response><returncode>SUCCESS</returncode><meetingID>%s</meetingID><internalMeetingID>x</internalMeetingID>"+
				"<createTime>1</createTime><voiceBridge>70000</voiceBridge><attendeePW>ap</attendeePW><moderatorPW>mp</moderatorPW></response>", xmlEscape(mid))
		case strings.HasSuffix(r.URL.Path, "/getMeetings"):
			io.WriteString(w, "<response><returncode>SUCCESS</returncode><meetings><meeting><meetingID>moodle~big</meetingID><participantCount>1</participantCount>")
			if huge.Load() {
				io.WriteString(w, "<metadata><pad>"+pad+"</pad></metadata>")
			}
			io.WriteString(w, "</meeting></meetings></response>")
		case strings.HasSuffix(r.URL.Path, "/getMeetingInfo") && mid == "moodle~big":
			io.WriteString(w, "<response><returncode>SUCCESS</returncode><meetingID>moodle~big</meetingID><participantCount>1</participantCount></response>")
		default:
			io.WriteString(w, "<response><returncode>SUCCESS</returncode><running>false</running></response>")
		}
	}))
	defer node.Close()
	host := strings.TrimPrefix(node.URL, "http://")
	if err := c.API(c.Peers[0], "POST", "/api/v1/backends", adminapi.AddBackendRequest{URL: node.URL + "/bigbluebutton/api/", Secret: "s"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.API(c.Peers[0], "POST", "/api/v1/backends/"+url.PathEscape(host)+"/enable", nil, nil); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if b, _ := backendByHost(t, c.Cluster, host); b.NodeState != "ready" {
			return fmt.Errorf("backend %s", b.NodeState)
		}
		return nil
	})
	if a := c.client(c.Peers[0]).Get(t, "create", "meetingID=big&moderatorPW=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	huge.Store(true)
	var b adminapi.Backend
	harness.Eventually(t, 15*time.Second, func() error {
		var bs []adminapi.Backend
		if err := c.API(c.Peers[2], "GET", "/api/v1/backends", nil, &bs); err != nil {
			return err
		}
		var seen []string
		for _, x := range bs {
			if strings.Contains(x.URL, host) && x.NodeState == "error" && strings.Contains(x.LastError, "larger than 16 MiB") {
				b.ID = x.ID
				return nil
			}
			seen = append(seen, fmt.Sprintf("%s %s %s %q", x.ID, x.URL, x.NodeState, x.LastError))
		}
		return fmt.Errorf("backend not in error with the reason: %v", seen)
	})
	leader := c.Leader(10 * time.Second)
	if v, ok := metricValue(scrape(t, leader), `conclave_backend_answers_too_large_total{backend="`+b.ID+`"}`); !ok || v < 1 {
		t.Fatalf("conclave_backend_answers_too_large_total{backend=%q} = %v on the leader", b.ID, v)
	}
	// The client's getMeetings counts it too and still lists the meeting
	// (asked with getMeetingInfo), and the meeting stays bound.
	if a := c.client(c.Peers[0]).Get(t, "getMeetings", ""); !strings.Contains(a.Raw, "<meetingID>big</meetingID>") {
		t.Fatalf("the meeting vanished from getMeetings: %s", a.Raw)
	}
	if v, _ := metricValue(scrape(t, c.Peers[0]), `conclave_backend_answers_too_large_total{backend="`+b.ID+`"}`); v < 1 {
		t.Fatalf("aggregated getMeetings did not count the too large answer: %v", v)
	}
	var ms []adminapi.Meeting
	if err := c.API(c.Peers[0], "GET", "/api/v1/meetings?frontend=moodle", nil, &ms); err != nil || len(ms) != 1 {
		t.Fatalf("the node's meeting left the state: %v %v", ms, err)
	}
	if !strings.Contains(leader.Log(), "over the size limit") {
		t.Fatal("the leader did not log the too large answer")
	}
}

// TestClusterKeyReplicatedNeverShown: the key relay URLs are signed with is
// drawn once, the same on every peer (it travels in the replicated state
// and its snapshots), and appears in no log, metric or admin API answer.
func TestClusterKeyReplicatedNeverShown(t *testing.T) {
	c := startSecuredBBBCluster(t, 1)
	lms := newHitCounter(t, 200)
	if a := c.client(c.Peers[0]).Get(t, "create", "meetingID=k1&moderatorPW=mp&meta_endCallbackUrl="+url.QueryEscape(lms.srv.URL+"/end")); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	var keys [][]byte
	harness.Eventually(t, 10*time.Second, func() error {
		keys = nil
		for _, p := range c.Peers {
			if err := c.API(p, "POST", "/api/v1/snapshot", nil, nil); err != nil {
				return err
			}
			files, _ := filepath.Glob(filepath.Join(p.DataDir, "snapshots", "*", "state.bin"))
			var newest []byte
			var newestMod time.Time
			for _, f := range files {
				if st, err := os.Stat(f); err == nil && st.ModTime().After(newestMod) {
					newestMod = st.ModTime()
					newest, _ = os.ReadFile(f)
				}
			}
			line, _, _ := strings.Cut(string(newest), "\n")
			var hdr struct {
				ClusterKey []byte `json:"cluster_key"`
			}
			if err := json.Unmarshal([]byte(line), &hdr); err != nil || len(hdr.ClusterKey) != 32 {
				return fmt.Errorf("peer %s: no cluster key in its snapshot (%v)", p.ID, err)
			}
			keys = append(keys, hdr.ClusterKey)
		}
		return nil
	})
	for _, k := range keys[1:] {
		if string(k) != string(keys[0]) {
			t.Fatal("peers hold different cluster keys")
		}
	}
	forms := []string{base64.StdEncoding.EncodeToString(keys[0]), base64.RawURLEncoding.EncodeToString(keys[0]), hex.EncodeToString(keys[0])}
	texts := map[string]string{}
	for _, p := range c.Peers {
		texts[p.ID+" log"] = p.Log()
		texts[p.ID+" metrics"] = scrape(t, p)
		for _, path := range []string{"/api/v1/status", "/api/v1/peers", "/api/v1/backends", "/api/v1/frontends", "/api/v1/meetings", "/api/v1/recordings"} {
			var raw json.RawMessage
			if err := c.API(p, "GET", path, nil, &raw); err != nil {
				t.Fatal(err)
			}
			texts[p.ID+" "+path] = string(raw)
		}
	}
	for where, text := range texts {
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Fatalf("the cluster key shows in %s", where)
			}
		}
	}
}
