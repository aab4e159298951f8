package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
)

func guardCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// signedURI is a BBB call signed with a frontend's secret.
func signedURI(call, query, secret string) string {
	return "/bigbluebutton/api/" + call + "?" + bbb.SignQuery(bbb.SHA256, call, query, secret)
}

// TestGetRecordingsHugeOffset: the offsets that crashed a peer answer a
// page like bbb-web's.
func TestGetRecordingsHugeOffset(t *testing.T) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	for i := 0; i < 3; i++ {
		mc.MustApply(&fsm.PutRecordings{Recordings: []fsm.Recording{{RecordID: fmt.Sprintf("r%d", i), Frontend: "fe", MeetingID: "m",
			BackendID: "b", State: "published", XML: fmt.Sprintf("<recording><recordID>r%d</recordID></recording>", i)}}})
	}
	s := New(Config{}, mc)
	for _, q := range []string{"offset=99999999999999999999&limit=5", "offset=9223372036854775800&limit=5",
		"offset=2147483647&limit=100", "offset=-1&limit=-1", "offset=1&limit=99999999999999999999"} {
		r := do(s, "10.0.0.1", "GET", signedURI("getRecordings", q, "s"), "", "")
		if r.StatusCode() != 200 || !strings.Contains(string(r.Body()), "<returncode>SUCCESS</returncode>") {
			t.Fatalf("%s: %d %s", q, r.StatusCode(), r.Body())
		}
	}
	r := do(s, "10.0.0.1", "GET", signedURI("getRecordings", "offset=9223372036854775800&limit=5", "s"), "", "")
	if n := strings.Count(string(r.Body()), "<recordID>"); n != 3 || !strings.Contains(string(r.Body()), "<offset>0</offset>") {
		t.Fatalf("an offset that is not an int counts as 0, as in bbb-web: %s", r.Body())
	}
	r = do(s, "10.0.0.1", "GET", signedURI("getRecordings", "offset=2147483647&limit=100", "s"), "", "")
	if strings.Contains(string(r.Body()), "<recordID>") || !strings.Contains(string(r.Body()), "<totalElements>3</totalElements>") {
		t.Fatalf("offset past the end: %s", r.Body())
	}
}

// TestPanicAnsweredAndCounted: a handler's panic becomes BBB's XML error
// (HTTP 500) or the admin API's JSON 500, is logged once with its stack
// but without the query, counted, and the server serves the next request.
func TestPanicAnsweredAndCounted(t *testing.T) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	var logs bytes.Buffer
	s := New(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, mc)
	s.beforeRoute = func(ctx *fasthttp.RequestCtx) {
		if ctx.QueryArgs().Has("boom") {
			panic("injected failure")
		}
	}
	r := do(s, "10.0.0.1", "GET", signedURI("getMeetings", "boom=1&password=hunter2", "s"), "", "")
	if r.StatusCode() != 500 || !strings.Contains(string(r.Body()), "<returncode>FAILED</returncode><messageKey>internalError</messageKey>") ||
		!strings.HasPrefix(string(r.Header.ContentType()), "text/xml") {
		t.Fatalf("BBB route: %d %s", r.StatusCode(), r.Body())
	}
	r = do(s, "127.0.0.1", "GET", "/api/v1/status?boom=1", "", "")
	var e adminapi.Error
	if r.StatusCode() != 500 || json.Unmarshal(r.Body(), &e) != nil || e.Code != "internal" {
		t.Fatalf("admin route: %d %s", r.StatusCode(), r.Body())
	}
	if n := guardCounter(s.guard.Panics); n != 2 {
		t.Fatalf("conclave_panics_total = %v, want 2", n)
	}
	out := logs.String()
	if strings.Count(out, "injected failure") != 2 || !strings.Contains(out, "stack=") || !strings.Contains(out, "guard_test.go") {
		t.Fatalf("want one log line with the stack per panic:\n%s", out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "checksum") {
		t.Fatalf("the query was logged:\n%s", out)
	}
	if r := do(s, "10.0.0.1", "GET", signedURI("getMeetings", "", "s"), "", ""); r.StatusCode() != 200 || !strings.Contains(string(r.Body()), "SUCCESS") {
		t.Fatalf("after a panic: %d %s", r.StatusCode(), r.Body())
	}
}

// TestForwardedLoopbackGetsNoAdmin: issue 13's replay in process: a direct
// caller claiming X-Forwarded-For: 127.0.0.1 does not get loopback rights.
func TestForwardedLoopbackGetsNoAdmin(t *testing.T) {
	trusted, _ := guard.ParseTrustedProxies("10.9.9.9")
	for _, s := range []*Server{New(Config{ReverseProxy: true}, NewMemCluster()), New(Config{ReverseProxy: true, TrustedProxies: trusted}, NewMemCluster())} {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI("/api/v1/backends")
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP("198.51.100.20")}, nil)
		s.Handle(&ctx)
		if ctx.Response.StatusCode() != 403 {
			t.Fatalf("direct caller with a forged X-Forwarded-For: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func TestDuplicateIDsAndControlCharacters(t *testing.T) {
	mc := NewMemCluster()
	mc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	s := New(Config{}, mc)
	for _, c := range []struct{ call, q, msg string }{
		{"create", "meetingID=m1&meetingID=other&name=x", "Duplicate meetingID"},
		{"join", "meetingID=m1&fullName=a&meetingID=m2&password=p", "Duplicate meetingID"},
		{"getMeetingInfo", "meetingID=m1&meeting%49D=m2", "Duplicate meetingID"}, // the same name, encoded
		{"getRecordings", "recordID=r1&recordID=r2", "Duplicate recordID"},
		{"deleteRecordings", "recordID=r1&recordID=r2", "Duplicate recordID"},
		{"create", "meetingID=m%0A1&name=x", "control characters"},
		{"create", "meetingID=m%001&name=x", "control characters"},
		{"join", "meetingID=ab%7F&fullName=a&password=p", "control characters"},
		{"end", "meetingID=ab%C2%85&password=p", "control characters"}, // U+0085, a C1 control
	} {
		r := do(s, "10.0.0.1", "GET", signedURI(c.call, c.q, "s"), "", "")
		if r.StatusCode() != 200 || !strings.Contains(string(r.Body()), "<messageKey>validationError</messageKey>") || !strings.Contains(string(r.Body()), c.msg) {
			t.Errorf("%s?%s: %d %s", c.call, c.q, r.StatusCode(), r.Body())
		}
	}
	if len(mc.FSM().Meetings("")) != 0 {
		t.Fatal("a refused create was placed")
	}
	// Not control characters: accented letters, spaces, U+00A0.
	r := do(s, "10.0.0.1", "GET", signedURI("isMeetingRunning", "meetingID=caf%C3%A9+%C2%A0x", "s"), "", "")
	if !strings.Contains(string(r.Body()), "<running>false</running>") {
		t.Fatalf("a plain meeting ID refused: %s", r.Body())
	}
}

// startServer serves s on a loopback port.
func startServer(t *testing.T, s *Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// rawRequest writes a request head announcing a body of bodyLen bytes (or
// chunked, when bodyLen < 0), then the first sent bytes of that body, and
// reads the answer without sending the rest.
func rawRequest(t *testing.T, addr, method, uri string, headers map[string]string, bodyLen int, sent []byte) (*fasthttp.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: conclave\r\n", method, uri)
	for k, v := range headers {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	if bodyLen >= 0 {
		fmt.Fprintf(&head, "Content-Length: %d\r\n", bodyLen)
	} else {
		head.WriteString("Transfer-Encoding: chunked\r\n")
	}
	head.WriteString("\r\n")
	if _, err := c.Write([]byte(head.String())); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(sent) // the server may already have closed
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("%s %s: no answer before the body was sent: %v", method, uri, err)
	}
	return &resp, c
}

// closedAfterAnswer reports whether the server ends the connection after
// its answer (it half-closes at once, then drains what is still sent for a
// while: lingerClose), and closes c.
func closedAfterAnswer(c net.Conn) bool {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err == io.EOF
}

// TestBodyReadOnlyAfterChecksum: an unsigned create announcing 30 MB is
// answered from its head alone, and the connection is closed; a signed one
// over the limit is refused whether it declares its length or not; one
// within it reaches the backend.
func TestBodyReadOnlyAfterChecksum(t *testing.T) {
	r := newRig(t, 1)
	s := New(Config{MaxBodySize: 1 << 20}, r.mc)
	addr := startServer(t, s)
	xml := map[string]string{"Content-Type": "application/xml"}

	resp, c := rawRequest(t, addr, "POST", "/bigbluebutton/api/create?meetingID=m1&checksum=0000", xml, 30<<20, make([]byte, 64<<10))
	if !strings.Contains(string(resp.Body()), "checksumError") || !closedAfterAnswer(c) {
		t.Fatalf("unsigned create with a body: %d %s", resp.StatusCode(), resp.Body())
	}
	if n := guardCounter(s.guard.Refused.WithLabelValues(guard.ReasonUnsigned)); n != 1 {
		t.Fatalf("refused{unsigned} = %v", n)
	}
	// A client that sends its whole body before reading (Go's, most) gets
	// the answer, not a connection reset: the refused body is drained, not
	// kept.
	hr, err := http.Post("http://"+addr+"/bigbluebutton/api/create?meetingID=m1&checksum=0000", "application/xml", bytes.NewReader(make([]byte, 20<<20)))
	if err != nil {
		t.Fatalf("a client sending its whole body: %v", err)
	}
	answer, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if !strings.Contains(string(answer), "checksumError") {
		t.Fatalf("a client sending its whole body: %s", answer)
	}

	uri := signedURI("create", "meetingID=m2&name=x", "fe1-secret")
	// (fasthttp reads up to 8 KiB of a body with its head.)
	resp, c = rawRequest(t, addr, "POST", uri, xml, 2<<20, make([]byte, 16<<10))
	if !strings.Contains(string(resp.Body()), "validationError") || !strings.Contains(string(resp.Body()), "larger than") || !closedAfterAnswer(c) {
		t.Fatalf("signed create over the limit: %s", resp.Body())
	}
	// Chunked: the size is counted while reading.
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	var body bytes.Buffer
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&body, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	resp, c = rawRequest(t, addr, "POST", uri, xml, -1, body.Bytes())
	c.Close()
	if !strings.Contains(string(resp.Body()), "larger than") {
		t.Fatalf("chunked create over the limit: %s", resp.Body())
	}
	if len(r.mc.FSM().Meetings("")) != 0 {
		t.Fatal("a refused create was placed")
	}

	slides := `<?xml version="1.0"?><modules><module name="presentation"><document name="a.pdf">` + strings.Repeat("QUJD", 100<<10) + `</document></module></modules>`
	a := fetch(t, "http://"+addr+uri, "application/xml", slides)
	if a.ReturnCode != "SUCCESS" || len(r.nodes[0].Presentations("fe1~m2")) != 1 {
		t.Fatalf("signed create with slides: %s %v", a.Raw, r.nodes[0].Presentations("fe1~m2"))
	}
	// Chunked within the limit works too.
	body.Reset()
	fmt.Fprintf(&body, "%x\r\n%s\r\n0\r\n\r\n", len(slides), slides)
	uri3 := signedURI("create", "meetingID=m3&name=x", "fe1-secret")
	resp, c = rawRequest(t, addr, "POST", uri3, xml, -1, body.Bytes())
	c.Close()
	if !strings.Contains(string(resp.Body()), "SUCCESS") || len(r.nodes[0].Presentations("fe1~m3")) != 1 {
		t.Fatalf("chunked signed create: %s", resp.Body())
	}
}

// TestBodiesPerClientCapped: a client with guard.MaxBodiesPerClient bodies in
// flight is told to retry at once; others are not affected.
func TestBodiesPerClientCapped(t *testing.T) {
	r := newRig(t, 1)
	s := New(Config{}, r.mc)
	addr := startServer(t, s)
	// Bodies announced but not sent: each holds its place while the server waits.
	var conns []net.Conn
	for i := 0; i < guard.MaxBodiesPerClient; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		// More than the 8 KiB fasthttp reads with the head, less than announced.
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n<modules>%s",
			signedURI("create", fmt.Sprintf("meetingID=slow%d&name=x", i), "fe1-secret"), strings.Repeat(" ", 9000))
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.guard.InFlight(netip.MustParseAddr("127.0.0.1")) < guard.MaxBodiesPerClient {
		if time.Now().After(deadline) {
			t.Fatal("the slow bodies did not take their places")
		}
		time.Sleep(10 * time.Millisecond)
	}
	large := []byte("<modules>" + strings.Repeat(" ", guard.SmallBody) + "</modules>")
	resp, c := rawRequest(t, addr, "POST", signedURI("create", "meetingID=m9&name=x", "fe1-secret"),
		map[string]string{"Content-Type": "application/xml"}, len(large), large)
	c.Close()
	if !strings.Contains(string(resp.Body()), "serverUnavailable") || string(resp.Header.Peek("Retry-After")) == "" {
		t.Fatalf("a large body over the per-client cap: %s", resp.Body())
	}
	// A small body (an LMS's slides list, an admin write) counts against
	// the byte budgets only: it goes through while the count is full.
	resp, c = rawRequest(t, addr, "POST", signedURI("create", "meetingID=m10&name=x", "fe1-secret"),
		map[string]string{"Content-Type": "application/xml"}, 10, []byte("<modules/>"))
	c.Close()
	if !strings.Contains(string(resp.Body()), "SUCCESS") {
		t.Fatalf("a small body while the large ones are capped: %s", resp.Body())
	}
	// Requests without a body are not capped.
	if a := fetch(t, "http://"+addr+signedURI("getMeetings", "", "fe1-secret"), "", ""); a.ReturnCode != "SUCCESS" {
		t.Fatalf("getMeetings while capped: %s", a.Raw)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline = time.Now().Add(5 * time.Second)
	for s.guard.InFlight(netip.MustParseAddr("127.0.0.1")) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("places not released when the clients went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdminBodyBounded: admin bodies are read within admin.MaxBody (413
// over it), and not at all for a caller the token check refuses.
func TestAdminBodyBounded(t *testing.T) {
	s := New(Config{JWTSecret: "jwt"}, NewMemCluster())
	addr := startServer(t, s)
	resp, c := rawRequest(t, addr, "POST", "/api/v1/frontends", map[string]string{"Content-Type": "application/json"}, 20<<20, make([]byte, 32<<10))
	if resp.StatusCode() != 401 || !closedAfterAnswer(c) {
		t.Fatalf("unauthenticated admin body: %d %s", resp.StatusCode(), resp.Body())
	}
	open := New(Config{}, NewMemCluster())
	addr = startServer(t, open)
	big := `{"key":"k","secret":"s","settings":{"create_default_params":{"x":"` + strings.Repeat("a", admin.MaxBody) + `"}}}`
	resp, c = rawRequest(t, addr, "POST", "/api/v1/frontends", map[string]string{"Content-Type": "application/json"}, len(big), []byte(big))
	c.Close()
	var e adminapi.Error
	if resp.StatusCode() != 413 || json.Unmarshal(resp.Body(), &e) != nil || !strings.Contains(e.Error, fmt.Sprint(admin.MaxBody)) {
		t.Fatalf("oversized admin body: %d %s", resp.StatusCode(), resp.Body())
	}
}

// TestSettingsLimits: the admin API names the limit (400) and nothing is
// proposed; the same commands, forged, are refused at the FSM's gate
// before the log (fsm.FSM.Check, which the leader runs).
func TestSettingsLimits(t *testing.T) {
	mc := NewMemCluster()
	s := New(Config{}, mc)
	many := map[string]string{}
	for i := 0; i <= fsm.MaxSettingsKeys; i++ {
		many[fmt.Sprintf("p%d", i)] = "v"
	}
	manyJSON, _ := json.Marshal(map[string]any{"create_default_params": many})
	cases := []struct{ settings, want string }{
		{string(manyJSON), "over the limit of 100"},
		{`{"create_default_params":{"x":"` + strings.Repeat("a", fsm.MaxSettingsValueLen+1) + `"}}`, "limit of 4096 bytes"},
		{`{"create_override_params":{"` + strings.Repeat("k", fsm.MaxSettingsKeyLen+1) + `":"v"}}`, "1 to 256 bytes"},
		{`{"create_default_params":{"a":"` + strings.Repeat("b", 3000) + `","c":"` + strings.Repeat("d", 3000) + `","e":"` + strings.Repeat("f", 3000) + `","g":"` + strings.Repeat("h", 3000) + `","i":"` + strings.Repeat("j", 3000) + `","k":"` + strings.Repeat("l", 3000) + `"}}`, "limit of 16384"},
		{`{"default_presentation":{"url":"https://x/` + strings.Repeat("p", fsm.MaxSettingsValueLen) + `"}}`, "default_presentation.url"},
	}
	for i, c := range cases {
		body := fmt.Sprintf(`{"key":"k%d","secret":"s","settings":%s}`, i, c.settings)
		r := do(s, "127.0.0.1", "POST", "/api/v1/frontends", "", body)
		var e adminapi.Error
		if r.StatusCode() != 400 || json.Unmarshal(r.Body(), &e) != nil || e.Code != "invalid" || !strings.Contains(e.Error, c.want) {
			t.Errorf("case %d: %d %s", i, r.StatusCode(), r.Body())
		}
		// The same settings, forged into a command, are refused before the log.
		res, _ := mc.Apply(t.Context(), &fsm.AddFrontend{Key: fmt.Sprintf("forged%d", i), Secret: "s", Settings: json.RawMessage(c.settings)})
		if res.Error == nil || !strings.Contains(res.Error.Error(), c.want) {
			t.Errorf("case %d forged: %v", i, res.Error)
		}
	}
	if n := len(mc.FSM().Frontends()); n != 0 {
		t.Fatalf("%d frontends stored", n)
	}
	// A patch that would grow settings past the limit is refused too.
	if r := do(s, "127.0.0.1", "POST", "/api/v1/frontends", "", `{"key":"ok","secret":"s","settings":{"create_default_params":{"a":"`+strings.Repeat("b", 4000)+`"}}}`); r.StatusCode() != 201 {
		t.Fatalf("%d %s", r.StatusCode(), r.Body())
	}
	for i := 0; i < 4; i++ {
		patch := fmt.Sprintf(`{"create_override_params":{"k%d":"%s"}}`, i, strings.Repeat("v", 4000))
		r := do(s, "127.0.0.1", "PATCH", "/api/v1/frontends/ok", "", patch)
		if i < 3 && r.StatusCode() != 200 || i == 3 && (r.StatusCode() != 400 || !strings.Contains(string(r.Body()), "once merged")) {
			t.Fatalf("patch %d: %d %s", i, r.StatusCode(), r.Body())
		}
	}
	// Backend settings: the same JSON bound.
	r := do(s, "127.0.0.1", "POST", "/api/v1/backends", "", `{"url":"https://n1.example.org","secret":"x","settings":{"tags":["`+strings.Repeat("t", 20000)+`"]}}`)
	if r.StatusCode() != 400 || !strings.Contains(string(r.Body()), "16384") {
		t.Fatalf("backend settings over the limit: %d %s", r.StatusCode(), r.Body())
	}
	// Recording metadata over the limits is not indexed (refused before
	// the log).
	meta := map[string]string{"k": strings.Repeat("v", fsm.MaxSettingsValueLen+1)}
	mc.Apply(t.Context(), &fsm.PutRecordings{Recordings: []fsm.Recording{{RecordID: "r1", Frontend: "fe", BackendID: "b", XML: "<recording/>", Meta: meta}}})
	if _, ok := mc.FSM().Recording("r1"); ok {
		t.Fatal("a recording with oversized metadata was stored")
	}
}

// TestRoutesWithoutBodiesDoNotReadThem: /metrics and pprof (whose adaptor
// would read any body whole) refuse one unread; a callback's body is read
// within callbacks.MaxBody.
func TestRoutesWithoutBodiesDoNotReadThem(t *testing.T) {
	s := New(Config{}, NewMemCluster())
	addr := startServer(t, s)
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		resp, c := rawRequest(t, addr, "POST", path, nil, 20<<20, make([]byte, 16<<10))
		if resp.StatusCode() != 413 || !closedAfterAnswer(c) {
			t.Fatalf("%s with a 20 MB body: %d %s", path, resp.StatusCode(), resp.Body())
		}
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	resp, c := rawRequest(t, addr, "POST", "/conclave/callback/recording-ready?x=1", form, callbacks.MaxBody+1, make([]byte, callbacks.MaxBody+1))
	if resp.StatusCode() != 413 || !closedAfterAnswer(c) {
		t.Fatalf("callback over the limit: %d %s", resp.StatusCode(), resp.Body())
	}
	resp, c = rawRequest(t, addr, "POST", "/conclave/callback/recording-ready?x=1", form, 20, []byte("signed_parameters=ab"))
	c.Close()
	if resp.StatusCode() == 413 || resp.StatusCode() == 500 {
		t.Fatalf("small callback body: %d %s", resp.StatusCode(), resp.Body())
	}
	if r := do(s, "127.0.0.1", "GET", "/metrics", "", ""); r.StatusCode() != 200 || !strings.Contains(string(r.Body()), "conclave_panics_total 0") {
		t.Fatalf("/metrics: %d", r.StatusCode())
	}
}

// panicAfter is a cluster whose replica read panics once armed: a failure
// deep in a handler, after the request's body was read.
type panicAfter struct {
	*MemCluster
	calls, at atomic.Int32
}

func (p *panicAfter) FSM() *fsm.FSM {
	if n := p.calls.Add(1); n == p.at.Load() {
		panic("injected failure after the body was read")
	}
	return p.MemCluster.FSM()
}

// TestPanicGivesBackTheBodysPlace: a panic after the body was read still
// releases its place in the gate (else a few panics would lock out every
// body for good).
func TestPanicGivesBackTheBodysPlace(t *testing.T) {
	pc := &panicAfter{MemCluster: NewMemCluster()}
	pc.MustApply(&fsm.AddFrontend{Key: "fe", Secret: "s"})
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pc)
	addr := startServer(t, s)
	pc.at.Store(2) // the frontend lookup is the first read, the meeting lookup the second
	resp, c := rawRequest(t, addr, "POST", signedURI("create", "meetingID=m1&name=x", "s"),
		map[string]string{"Content-Type": "application/xml"}, 10, []byte("<modules/>"))
	c.Close()
	if resp.StatusCode() != 500 || !strings.Contains(string(resp.Body()), "internalError") {
		t.Fatalf("%d %s", resp.StatusCode(), resp.Body())
	}
	held, bytes := s.guard.Held()
	if held != 0 || bytes != 0 || guardCounter(s.guard.Panics) != 1 {
		t.Fatalf("after the panic: %d clients, %d bytes held, %v panics", held, bytes, guardCounter(s.guard.Panics))
	}
}
