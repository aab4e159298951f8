package cluster

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/test/fakebbb"
	"github.com/conclave-lb/conclave/test/harness"
)

// Central recordings with real binaries: three peers with a central store,
// a fake BBB node writing a published tree, and its conclave-agent
// shipping it.

const centralJWT = "jwt-secret-central"

// centralStore is one kind of store: the peers' environment, and where a
// key lands on disk (to check deletes and to corrupt chunks at rest).
type centralStore struct {
	env  []string
	path func(key string) string
}

func fileStore(t *testing.T) centralStore {
	root := t.TempDir()
	return centralStore{env: []string{"CONCLAVE_RECORDINGS_STORE=file://" + root},
		path: func(key string) string { return filepath.Join(root, filepath.FromSlash(key)) }}
}

func s3Store(t *testing.T) centralStore {
	s := harness.StartS3(t)
	return centralStore{env: append(s.Env(), "CONCLAVE_RECORDINGS_STORE="+s.URL("conclave")),
		path: func(key string) string { return s.Path("conclave/" + key) }}
}

type centralRig struct {
	*harness.Cluster
	store     centralStore
	node      *fakeNode
	published string
	agent     func(env ...string) *os.Process
}

func startCentral(t *testing.T, store centralStore, mediaBytes int, env ...string) *centralRig {
	admin, _ := auth.Mint(centralJWT, "t", []string{auth.ScopeAdmin}, time.Hour)
	peerEnv := append(append([]string{"CONCLAVE_API_JWT_SECRET=" + centralJWT, "CONCLAVE_TEST_TOKEN=" + admin}, store.env...), env...)
	c := harness.StartCluster(t, 3, peerEnv...)
	dir := t.TempDir()
	published := filepath.Join(dir, "published")
	if err := os.MkdirAll(published, 0o755); err != nil { // as a BBB install has it
		t.Fatal(err)
	}
	node := newFakeNodeWith(t, dir, "nodeA", fakebbb.Config{PublishedDir: published, RecordingBytes: mediaBytes})
	if err := c.API(c.Peers[0], "POST", "/api/v1/backends", adminapi.AddBackendRequest{URL: node.api, Secret: node.secret}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.API(c.Peers[1], "POST", "/api/v1/backends/"+url.PathEscape(node.host)+"/enable", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "moodle", Secret: frontendSecret}, nil); err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "node A ready on every peer", func() bool {
		for _, p := range c.Peers {
			var bs []adminapi.Backend
			if c.API(p, "GET", "/api/v1/backends", nil, &bs) != nil || len(bs) != 1 || bs[0].NodeState != "ready" {
				return false
			}
		}
		return true
	})
	tok, _ := auth.Mint(centralJWT, node.host, []string{auth.ScopeAgent}, time.Hour)
	r := &centralRig{Cluster: c, store: store, node: node, published: published}
	r.agent = func(env ...string) *os.Process {
		return startAgent(t, c, node, append([]string{"CONCLAVE_API_TOKEN=" + tok, "CONCLAVE_RECORDINGS_DIR=" + published,
			"CONCLAVE_RECORDINGS_SCAN=200ms", "CONCLAVE_RECORDINGS_SETTLE=100ms"}, env...)...).Process
	}
	return r
}

func (r *centralRig) client(p *harness.Peer) harness.BBBClient {
	return harness.BBBClient{Base: "http://" + p.HTTP + "/bigbluebutton/api", Secret: frontendSecret}
}

// record makes a recording of meeting id on node A (query adds create
// parameters) and returns its record ID.
func (r *centralRig) record(t *testing.T, id, query string) string {
	t.Helper()
	c := r.client(r.Peers[0])
	if a := c.Get(t, "create", "meetingID="+id+"&record=true&moderatorPW=mp"+query); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if a := c.Get(t, "end", "meetingID="+id+"&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	var rid string
	within(t, 10*time.Second, "the recording of "+id+" indexed", func() bool {
		a := c.Get(t, "getRecordings", "meetingID="+id)
		if m := recordIDRe.FindStringSubmatch(a.Raw); m != nil {
			rid = m[1]
		}
		return rid != ""
	})
	return rid
}

var (
	recordIDRe = regexp.MustCompile(`<recordID>([^<]+)</recordID>`)
	urlRe      = regexp.MustCompile(`<url>([^<]+)</url>`)
)

// playbackURL is a recording's playback URL as getRecordings through p
// gives it.
func (r *centralRig) playbackURL(t *testing.T, p *harness.Peer, recordID string) string {
	t.Helper()
	a := r.client(p).Get(t, "getRecordings", "recordID="+recordID+"&state=any")
	m := urlRe.FindStringSubmatch(a.Raw)
	if m == nil {
		t.Fatalf("no playback URL through %s: %s", p.ID, a.Raw)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// waitCentral waits until getRecordings through every peer shows the
// recording on that peer's own address.
func (r *centralRig) waitCentral(t *testing.T, recordID string, d time.Duration) time.Duration {
	t.Helper()
	return within(t, d, "recording "+recordID+" central", func() bool {
		for _, p := range r.Peers {
			if !strings.HasPrefix(r.playbackURL(t, p, recordID), "http://"+p.HTTP+"/") {
				return false
			}
		}
		return true
	})
}

func httpGet(t *testing.T, u string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// centralOutlivesItsNode is acceptance points 1 and 3 of central
// recordings, for one store: shipped, the node killed and force-deleted,
// the recording plays through every peer with the same bytes and ranges;
// a protected one only through its link, until the link expires;
// unpublish hides it, delete removes the central copy.
func centralOutlivesItsNode(t *testing.T, store centralStore) {
	const ttl = 4 * time.Second
	r := startCentral(t, store, 300<<10, fmt.Sprintf("CONCLAVE_PLAYBACK_LINK_TTL=%v", ttl))
	r.agent()
	open := r.record(t, "lecture", "")
	protected := r.record(t, "exam-review", "&protect=true")
	media := fakebbb.RecordingMedia(open, 300<<10)
	took := r.waitCentral(t, open, 30*time.Second)
	r.waitCentral(t, protected, 30*time.Second)
	t.Logf("CENTRAL: shipped and central on every peer within %v", took.Round(10*time.Millisecond))

	// Node A dies and is force-deleted.
	r.node.srv.Close()
	if _, err := r.Ctl(r.Peers[1], "delete", "backend", r.node.host, "--force"); err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Peers {
		u := r.playbackURL(t, p, open)
		code, body, _ := httpGet(t, u+"video-0.m4v")
		if code != 200 || !bytes.Equal(body, media) {
			t.Fatalf("%s: playback after the node's loss: %d, %d bytes (want the node's %d)", p.ID, code, len(body), len(media))
		}
		code, body, hdr := httpGet(t, u+"video-0.m4v", "Range", "bytes=100000-100099")
		if code != 206 || !bytes.Equal(body, media[100000:100100]) || hdr.Get("Content-Range") != fmt.Sprintf("bytes 100000-100099/%d", len(media)) {
			t.Fatalf("%s: range: %d %v", p.ID, code, hdr)
		}
		if code, body, _ = httpGet(t, u); code != 200 || !bytes.Contains(body, []byte("video-0.m4v")) {
			t.Fatalf("%s: the playback URL itself: %d %q", p.ID, code, body)
		}
	}

	// Protected: the link sets the recording's cookie and leads to the
	// playback URL, which plays with it (and the player's next file);
	// no link, an altered one, or the same link after its TTL: 403.
	link := r.playbackURL(t, r.Peers[2], protected)
	bare, _, _ := strings.Cut(link, "?")
	if code, _, _ := httpGet(t, bare); code != 403 {
		t.Fatalf("a protected recording's link without its token: %d", code)
	}
	if code, _, _ := httpGet(t, link[:len(link)-3]+"AAA"); code != 403 {
		t.Fatalf("an altered link: %d", code)
	}
	code, _, hdr := httpGet(t, link)
	target := hdr.Get("Location")
	if code != 302 || !strings.HasPrefix(target, "http://"+r.Peers[2].HTTP+"/playback/video/"+protected+"/") || hdr.Get("Set-Cookie") == "" {
		t.Fatalf("the protected recording's link: %d %v", code, hdr)
	}
	cookie, _, _ := strings.Cut(hdr.Get("Set-Cookie"), ";")
	if code, _, _ := httpGet(t, target); code != 403 {
		t.Fatalf("the protected playback URL without the link's cookie: %d", code)
	}
	if code, body, _ := httpGet(t, target, "Cookie", cookie); code != 200 || !bytes.Contains(body, []byte("video-0.m4v")) {
		t.Fatalf("the protected playback URL with the link's cookie: %d", code)
	}
	if code, _, _ := httpGet(t, target+"video-0.m4v", "Cookie", cookie, "Range", "bytes=0-0"); code != 206 {
		t.Fatalf("the player's next file with the link's cookie: %d", code)
	}
	time.Sleep(ttl + time.Second) // the link's own expiry: what is tested
	if code, _, _ := httpGet(t, link); code != 403 {
		t.Fatalf("an expired link: %d", code)
	}
	if code, _, _ := httpGet(t, target+"video-0.m4v", "Cookie", cookie); code != 403 {
		t.Fatalf("an expired cookie: %d", code)
	}

	// Unpublish, publish, delete: with the node gone, on the central copy.
	c := r.client(r.Peers[2])
	u := r.playbackURL(t, r.Peers[0], open) + "video-0.m4v"
	if a := c.Get(t, "publishRecordings", "recordID="+open+"&publish=false"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	within(t, 5*time.Second, "unpublished: 404 on every peer", func() bool {
		for _, p := range r.Peers {
			if code, _, _ := httpGet(t, strings.Replace(u, r.Peers[0].HTTP, p.HTTP, 1)); code != 404 {
				return false
			}
		}
		return true
	})
	if a := c.Get(t, "publishRecordings", "recordID="+open+"&publish=true"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	within(t, 5*time.Second, "published again", func() bool { code, _, _ := httpGet(t, u); return code == 200 })
	if files, _ := filepath.Glob(store.path("published/video/" + open + "/*/video-0.m4v")); len(files) != 1 {
		t.Fatalf("the central copy is not where the store keeps it: %v", files)
	}
	if a := c.Get(t, "deleteRecordings", "recordID="+open); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if _, err := os.Stat(store.path("published/video/" + open)); !os.IsNotExist(err) {
		t.Fatalf("delete left the central copy: %v", err)
	}
	within(t, 5*time.Second, "deleted: 404", func() bool { code, _, _ := httpGet(t, u); return code == 404 })
}

func TestCentralRecordingsSharedDirectory(t *testing.T) { centralOutlivesItsNode(t, fileStore(t)) }

func TestCentralRecordingsS3(t *testing.T) { centralOutlivesItsNode(t, s3Store(t)) }

// An agent killed half-way through a transfer resumes where it stopped,
// and a chunk corrupted at rest meanwhile is caught and sent again: the
// recording is marked central only with the node's exact bytes.
func TestInterruptedTransferResumes(t *testing.T) {
	store := fileStore(t)
	const size = 3 << 20
	r := startCentral(t, store, size)
	agent := r.agent("CONCLAVE_TRANSFER_RATE=512k", "CONCLAVE_TRANSFER_CHUNK=64k")
	rid := r.record(t, "long-lecture", "")
	within(t, 30*time.Second, "a quarter of the file staged", func() bool {
		all, _ := filepath.Glob(store.path("staging/*/*.*.*"))
		return len(all) >= 12
	})
	agent.Kill()
	agent.Wait()
	chunks, _ := filepath.Glob(store.path("staging/*/*.*.*"))
	var victim string
	for _, ch := range chunks {
		if fi, err := os.Stat(ch); err == nil && fi.Size() == 64<<10 {
			victim = ch
		}
	}
	if victim == "" {
		t.Fatalf("no full chunk staged: %v", chunks)
	}
	if err := os.WriteFile(victim, bytes.Repeat([]byte("x"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	r.agent("CONCLAVE_TRANSFER_CHUNK=64k")
	r.waitCentral(t, rid, 60*time.Second)
	files, _ := filepath.Glob(store.path("published/video/" + rid + "/*/video-0.m4v"))
	if len(files) != 1 {
		t.Fatalf("central copies of the file: %v", files)
	}
	got, err := os.ReadFile(files[0])
	if err != nil || !bytes.Equal(got, fakebbb.RecordingMedia(rid, size)) {
		t.Fatalf("the central copy differs from the node's file (%v)", err)
	}
	received, corrupt := 0.0, 0.0
	for _, p := range r.Peers {
		text := scrape(t, p)
		n, _ := metricValue(text, "conclave_recordings_transfer_bytes_total")
		k, _ := metricValue(text, `conclave_recordings_transfers_total{result="corrupt"}`)
		received, corrupt = received+n, corrupt+k
	}
	// Resumed, not restarted: everything once, plus the corrupted chunk
	// and at most the chunk in flight when the agent died.
	if received > size+8<<10+3*64<<10 || corrupt < 1 {
		t.Fatalf("%.0f bytes received for a %d-byte file (a restart would be about twice); %v corrupt completions", received, size, corrupt)
	}
	t.Logf("CENTRAL: interrupted transfer resumed: %.0f bytes received for %d", received, size)
}
