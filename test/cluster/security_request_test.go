package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/test/harness"
)

// Replays of issue 13's request-path holes against the real binaries: each
// attack is refused, and the attacked peer still answers joins afterwards.

// metric reads one unlabelled sample from a peer's /metrics.
func metric(t *testing.T, p *harness.Peer, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("%s has no metric %s", p.ID, name)
	return 0
}

// assertJoins: the peer is alive and redirects a join of the test meeting.
func (c *bbbCluster) assertJoins(t *testing.T, p *harness.Peer) {
	t.Helper()
	if !p.Running() {
		t.Fatalf("peer %s died:\n%s", p.ID, p.Log())
	}
	resp, err := harness.NoRedirect.Get(c.client(p).URL("join", "meetingID=sec-room&fullName=Ann&password=ap"))
	if err != nil {
		t.Fatalf("join on %s: %v", p.ID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") == "" {
		t.Fatalf("join on %s: HTTP %d", p.ID, resp.StatusCode)
	}
}

func TestRequestPathReplays(t *testing.T) {
	// Reverse-proxy mode with one trusted proxy address: 127.0.0.1. Other
	// loopback addresses (127.0.0.2) act as direct callers.
	c := startBBBCluster(t, 1, "CONCLAVE_REVERSE_PROXY_MODE=true", "CONCLAVE_TRUSTED_PROXIES=127.0.0.1/32")
	if a := c.client(c.Peers[0]).Get(t, "create", "meetingID=sec-room&name=Sec&moderatorPW=mp&attendeePW=ap"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	for _, p := range c.Peers {
		c.assertJoins(t, p)
	}
	target := c.Peers[1]

	t.Run("paging offsets that crashed a peer", func(t *testing.T) {
		for _, p := range c.Peers {
			for _, q := range []string{"offset=99999999999999999999&limit=5", "offset=9223372036854775800&limit=5", "offset=2147483647&limit=2147483647"} {
				a, err := c.client(p).TryGet("getRecordings", q)
				if err != nil || a.ReturnCode != "SUCCESS" {
					t.Fatalf("%s getRecordings?%s: %v %s", p.ID, q, err, a.Raw)
				}
			}
			c.assertJoins(t, p)
			// Fixed, not merely survived: nothing panicked.
			if n := metric(t, p, "conclave_panics_total"); n != 0 {
				t.Fatalf("%s: conclave_panics_total = %v", p.ID, n)
			}
		}
	})

	t.Run("X-Forwarded-For only from a trusted proxy", func(t *testing.T) {
		admin := "http://" + target.HTTP + "/api/v1/backends"
		// Through the trusted proxy (127.0.0.1): the client wrote
		// "127.0.0.1" itself, the proxy appended the address it saw. The
		// client is that address, not loopback: no admin rights.
		req, _ := http.NewRequest("GET", admin, nil)
		req.Header.Set("X-Forwarded-For", "127.0.0.1, 198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("forged X-Forwarded-For through the proxy: HTTP %d, want 403", resp.StatusCode)
		}
		// From 127.0.0.2, not a trusted proxy: its X-Forwarded-For is not
		// read at all (the caller is what the connection says: here a
		// loopback address, which has admin rights without a JWT secret).
		direct := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
		req, _ = http.NewRequest("GET", admin, nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err = direct.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("X-Forwarded-For from a caller that is not a trusted proxy was believed: HTTP %d", resp.StatusCode)
		}
		c.assertJoins(t, target)
	})

	t.Run("long URLs", func(t *testing.T) {
		long := strings.Repeat("x", 15<<10)
		cl := c.client(target)
		u := cl.URL("create", "meetingID=long-room&name=Long&moderatorPW=mp&attendeePW=ap&meta_note="+long)
		if len(u) < 15<<10 {
			t.Fatalf("URL of %d bytes", len(u))
		}
		if a := harness.Fetch(t, u, "", ""); a.ReturnCode != "SUCCESS" {
			t.Fatalf("15 KB create: %s", a.Raw)
		}
		if a := harness.Fetch(t, cl.URL("getMeetingInfo", "meetingID=long-room&padding="+long), "", ""); a.ReturnCode != "SUCCESS" {
			t.Fatalf("15 KB getMeetingInfo: %s", a.Raw)
		}
		c.assertJoins(t, target)
	})

	t.Run("duplicated IDs and control characters", func(t *testing.T) {
		cl := c.client(target)
		for _, q := range []string{
			"meetingID=dup-a&meetingID=dup-b&name=x&moderatorPW=mp&attendeePW=ap",
			"meetingID=ctl%0Aroom&name=x&moderatorPW=mp&attendeePW=ap",
			"meetingID=ctl%01room&name=x&moderatorPW=mp&attendeePW=ap",
		} {
			if a := cl.Get(t, "create", q); a.ReturnCode != "FAILED" || a.MessageKey != "validationError" {
				t.Fatalf("create?%s: %s", q, a.Raw)
			}
		}
		if a := cl.Get(t, "getRecordings", "recordID=r1&recordID=r2"); a.MessageKey != "validationError" {
			t.Fatalf("duplicated recordID: %s", a.Raw)
		}
		for _, id := range c.nodes[0].MeetingIDs() {
			if strings.Contains(id, "dup-") || strings.Contains(id, "ctl") {
				t.Fatalf("a refused create reached the node: %q", id)
			}
		}
		c.assertJoins(t, target)
	})

	t.Run("settings limits", func(t *testing.T) {
		withWelcome := func(key string, n int) adminapi.AddFrontendRequest {
			settings, err := json.Marshal(fsm.FrontendSettings{CreateDefaultParams: map[string]string{"welcome": strings.Repeat("w", n)}})
			if err != nil {
				t.Fatal(err)
			}
			return adminapi.AddFrontendRequest{Key: key, Secret: "s", Settings: settings}
		}
		err := c.API(target, "POST", "/api/v1/frontends", withWelcome("huge", 20<<20), nil)
		if he, ok := err.(*harness.HTTPError); !ok || he.Status != 413 {
			t.Fatalf("20 MB of settings: %v", err)
		}
		err = c.API(target, "POST", "/api/v1/frontends", withWelcome("big", 5000), nil)
		if he, ok := err.(*harness.HTTPError); !ok || he.Status != 400 || !strings.Contains(he.Body, "4096") {
			t.Fatalf("a 5000-byte value: %v", err)
		}
		if err := c.API(target, "PATCH", "/api/v1/frontends/moodle", map[string]any{"create_override_params": map[string]string{"x": strings.Repeat("v", 5000)}}, nil); err == nil {
			t.Fatal("an oversized patch was accepted")
		}
		for _, p := range c.Peers {
			var fs []adminapi.Frontend
			if err := c.API(p, "GET", "/api/v1/frontends", nil, &fs); err != nil || len(fs) != 1 {
				var keys []string
				for _, f := range fs {
					keys = append(keys, f.Key)
				}
				t.Fatalf("%s frontends: %v %v", p.ID, err, keys)
			}
		}
		c.assertJoins(t, target)
	})

	t.Run("bodies are bounded before they are buffered", func(t *testing.T) {
		const attackers, size = 50, 31 << 20
		var peakHeap, peakRSS float64
		var mu sync.Mutex
		ctx, stop := context.WithCancel(context.Background())
		sampled := make(chan struct{})
		go func() { // the peer's memory while under attack
			defer close(sampled)
			for ctx.Err() == nil {
				h, r := metric(t, target, "go_memstats_heap_inuse_bytes"), metric(t, target, "process_resident_memory_bytes")
				mu.Lock()
				peakHeap, peakRSS = max(peakHeap, h), max(peakRSS, r)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
		var wg sync.WaitGroup
		answers := make(chan string, attackers)
		chunk := make([]byte, 1<<20)
		for i := 0; i < attackers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				conn, err := net.Dial("tcp", target.HTTP)
				if err != nil {
					answers <- err.Error()
					return
				}
				defer conn.Close()
				fmt.Fprintf(conn, "POST /bigbluebutton/api/create?meetingID=flood%d&name=x HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n", i, size)
				go func() { // the whole 31 MB, for as long as the peer takes it
					for sent := 0; sent < size; sent += len(chunk) {
						if _, err := conn.Write(chunk); err != nil {
							return
						}
					}
				}()
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					answers <- err.Error()
					return
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				answers <- fmt.Sprintf("%d %s", resp.StatusCode, body)
			}(i)
		}
		wg.Wait()
		time.Sleep(300 * time.Millisecond)
		stop()
		<-sampled
		close(answers)
		for a := range answers {
			if !strings.Contains(a, "checksumError") {
				t.Fatalf("an unsigned 31 MB create: %s", a)
			}
		}
		heapAfter := metric(t, target, "go_memstats_heap_inuse_bytes")
		t.Logf("peer %s under %d unsigned 31 MB creates: peak heap in use %.0f MB, peak RSS %.0f MB, heap after %.0f MB (issue 13: 1240 MB, 352 MB kept)",
			target.ID, attackers, peakHeap/1e6, peakRSS/1e6, heapAfter/1e6)
		if peakHeap > 200e6 || heapAfter > 100e6 {
			t.Fatalf("bodies were buffered: peak heap %.0f MB, after %.0f MB", peakHeap/1e6, heapAfter/1e6)
		}
		if n := metric(t, target, `conclave_requests_refused_total{reason="unsigned"}`); n < attackers {
			t.Fatalf("refused{unsigned} = %v, want %d", n, attackers)
		}
		// A signed create with a slides body still works, on every peer.
		for i, p := range c.Peers {
			mid := fmt.Sprintf("slides-%d", i)
			slides := `<?xml version="1.0"?><modules><module name="presentation"><document name="deck.pdf">` +
				strings.Repeat("QUJD", 512<<10) + `</document></module></modules>`
			a := harness.Fetch(t, c.client(p).URL("create", "meetingID="+mid+"&name=Slides&moderatorPW=mp&attendeePW=ap"), "application/xml", slides)
			if a.ReturnCode != "SUCCESS" || len(c.nodes[0].Presentations("moodle~"+mid)) != 1 {
				t.Fatalf("signed create with 2 MB of slides on %s: %s", p.ID, a.Raw)
			}
		}
		// Over --max-body (32 MB) with a valid checksum: refused unread.
		conn, err := net.Dial("tcp", target.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(c.client(target).URL("create", "meetingID=too-big&name=x"))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: conclave\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s", u.RequestURI(), 40<<20, make([]byte, 16<<10))
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if !strings.Contains(string(body), "validationError") {
			t.Fatalf("signed 40 MB create: %s", body)
		}
		// Routes that take no body refuse one unread (/metrics is open to all).
		for _, path := range []string{"/metrics", "/healthz", "/"} {
			conn, err := net.Dial("tcp", target.HTTP)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: conclave\r\nContent-Length: %d\r\n\r\n%s", path, 40<<20, make([]byte, 16<<10))
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
				t.Fatalf("POST %s with 40 MB: %v", path, err)
			}
			conn.Close()
		}
		if h := metric(t, target, "go_memstats_heap_inuse_bytes"); h > 100e6 {
			t.Fatalf("heap %.0f MB after bodies sent to routes that take none", h/1e6)
		}
		c.assertJoins(t, target)
		var st adminapi.Status
		if err := c.API(target, "GET", "/api/v1/status", nil, &st); err != nil || !st.Ready {
			t.Fatalf("status after the flood: %v %+v", err, st)
		}
	})
}
