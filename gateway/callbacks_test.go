package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/internal/testwait"
)

type lmsStub struct {
	mu   sync.Mutex
	ends []url.Values
	recs []string // signed_parameters received
}

func TestCallbacksRelayedWithClientIDsAndFrontendSignature(t *testing.T) {
	r := newRig(t, 1)
	lms := &lmsStub{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		lms.mu.Lock()
		defer lms.mu.Unlock()
		switch req.URL.Path {
		case "/end":
			lms.ends = append(lms.ends, req.URL.Query())
		case "/rec":
			req.ParseForm()
			lms.recs = append(lms.recs, req.PostForm.Get("signed_parameters"))
		}
	}))
	defer srv.Close()
	c := r.client("fe1")
	q := "meetingID=lesson&record=true&moderatorPW=mp&meta_endCallbackUrl=" + url.QueryEscape(srv.URL+"/end?course=7") +
		"&meta_bbb-recording-ready-url=" + url.QueryEscape(srv.URL+"/rec")
	if a := c.Get(t, "create", q); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	// The node holds relay URLs, not the LMS's own ...
	direct := testClient{Base: "http://" + r.addrs[0] + "/bigbluebutton/api", Secret: "node0-secret"}
	onNode := direct.Get(t, "getMeetingInfo", "meetingID=fe1~lesson")
	if strings.Contains(onNode.Raw, srv.URL+"/end") || !strings.Contains(onNode.Raw, callbacks.Prefix) {
		t.Fatalf("the node was given the LMS's own callback URL: %s", onNode.Raw)
	}
	// ... and the client sees its own, as BBB would show them, no relay URL.
	for _, call := range []string{"getMeetingInfo", "getMeetings"} {
		q := ""
		if call == "getMeetingInfo" {
			q = "meetingID=lesson"
		}
		info := c.Get(t, call, q)
		if strings.Contains(info.Raw, callbacks.Prefix) || strings.Contains(info.Raw, "sig=") ||
			!strings.Contains(info.Raw, "<endcallbackurl>"+xmlscan.EscapeText(srv.URL+"/end?course=7")+"</endcallbackurl>") ||
			!strings.Contains(info.Raw, "<bbb-recording-ready-url>"+xmlscan.EscapeText(srv.URL+"/rec")+"</bbb-recording-ready-url>") {
			t.Fatalf("%s shows a relay URL or not the client's own: %s", call, info.Raw)
		}
	}
	if a := c.Get(t, "end", "meetingID=lesson&password=mp"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		lms.mu.Lock()
		done := len(lms.ends) >= 1 && len(lms.recs) >= 1
		lms.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("callbacks not relayed: %+v", lms)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive by now
	lms.mu.Lock()
	defer lms.mu.Unlock()
	if len(lms.ends) != 1 || lms.ends[0].Get("meetingID") != "lesson" || lms.ends[0].Get("course") != "7" || lms.ends[0].Get("recordingmarks") == "" {
		t.Fatalf("end callback: %v", lms.ends)
	}
	if len(lms.recs) != 1 {
		t.Fatalf("want one recording-ready call, got %d", len(lms.recs))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(lms.recs[0], claims, func(*jwt.Token) (any, error) { return []byte("fe1-secret"), nil }); err != nil {
		t.Fatalf("recording-ready JWT does not verify with the frontend's secret: %v", err)
	}
	if claims["meeting_id"] != "lesson" || claims["record_id"] == "" {
		t.Fatalf("claims: %v", claims)
	}
	// With no sync running, the callback alone put it in the index.
	deadline = time.Now().Add(3 * time.Second)
	for {
		if rec, ok := r.mc.FSM().Recording(claims["record_id"].(string)); ok && rec.MeetingID == "lesson" && rec.Frontend == "fe1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recording-ready callback did not index the recording")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// target is a loopback HTTP server standing for whatever a relay might be
// aimed at; it counts every request it gets and answers status.
type target struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newTarget(t *testing.T, status int) *target {
	tg := &target{}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tg.hits.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func getCallback(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// relayURL makes a relay URL as the gateway made them before they named
// the meeting's instance, under key (they still verify).
func relayURL(base string, key []byte, kind, fe, internal, mid, be, target string) string {
	q := url.Values{"fe": {fe}, "m": {internal}, "mid": {mid}, "be": {be}, "url": {target},
		"sig": {callbacks.Sign(key, kind, fe, internal, mid, be, target, "")}}
	return base + callbacks.Prefix + kind + "?" + q.Encode()
}

// A tenant knows its own secret but not the cluster key: a relay URL it
// mints (old scheme or new, with its secret as key) is refused before
// anything goes out, with the same answer whatever the target.
func TestTenantMintedCallbacksRefused(t *testing.T) {
	r := newRig(t, 1)
	key := r.srv.relay.ClusterKey(context.Background())
	if key == nil {
		t.Fatal("no cluster key")
	}
	var answers []string
	for _, status := range []int{200, 401, 500} {
		tg := newTarget(t, status)
		aim := tg.srv.URL + "/api/v1/frontends"
		for name, u := range map[string]string{
			"tenant's secret as key": relayURL(r.base, []byte("fe1-secret"), "end", "fe1", "fe1~m", "m", r.ids[0], aim) + "&meetingID=fe1~m",
			"old scheme": r.base + callbacks.Prefix + "end?fe=fe1&be=" + r.ids[0] + "&url=" + url.QueryEscape(aim) +
				"&sig=" + hexHMAC("fe1-secret", "end\x00fe1\x00"+r.ids[0]+"\x00"+aim) + "&meetingID=fe1~m",
			"tampered url": strings.Replace(relayURL(r.base, key, "end", "fe1", "fe1~m", "m", r.ids[0], "http://127.0.0.1:1/x"),
				url.QueryEscape("http://127.0.0.1:1/x"), url.QueryEscape(aim), 1),
			"other kind": strings.Replace(relayURL(r.base, key, "end", "fe1", "fe1~m", "m", r.ids[0], aim), "/end?", "/recording-ready?", 1),
			"no sig":     r.base + callbacks.Prefix + "end?fe=fe1&m=fe1~m&mid=m&be=" + r.ids[0] + "&url=" + url.QueryEscape(aim),
		} {
			code, body := getCallback(t, u)
			if code != http.StatusForbidden {
				t.Errorf("%s (target answers %d): HTTP %d %s", name, status, code, body)
			}
			answers = append(answers, fmt.Sprint(code, body))
		}
		time.Sleep(100 * time.Millisecond)
		if n := tg.hits.Load(); n != 0 {
			t.Fatalf("a refused relay reached the target %d times", n)
		}
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Fatalf("refusals differ: %q vs %q", a, answers[0])
		}
	}
	refused := counterValue(r.srv.metrics.callbacks.WithLabelValues("end", "refused")) +
		counterValue(r.srv.metrics.callbacks.WithLabelValues("recording-ready", "refused"))
	if int(refused) != len(answers) || counterValue(r.srv.metrics.callbacks.WithLabelValues("end", "queued")) != 0 {
		t.Fatalf("conclave_callback_relays_total: %v refused of %d", refused, len(answers))
	}
}

// A valid relay is answered "ok" at once, whatever the target does (200,
// 401, 500, nothing listening): the relay is no status oracle. The target
// gets the call in the background, with retries on failure.
func TestCallbackAnswerDoesNotDependOnTarget(t *testing.T) {
	r := newRig(t, 1)
	key := r.srv.relay.ClusterKey(context.Background())
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~m", Frontend: "fe1", MeetingID: "m", BackendID: r.ids[0]})
	var answers []string
	for i, status := range []int{200, 401, 500, 0} {
		aim := "http://127.0.0.1:1/dead"
		var tg *target
		if status != 0 {
			tg = newTarget(t, status)
			aim = tg.srv.URL + "/end"
		}
		internal := fmt.Sprintf("fe1~m%d", i)
		r.mc.MustApply(&fsm.ClaimMeeting{InternalID: internal, Frontend: "fe1", MeetingID: fmt.Sprint("m", i), BackendID: r.ids[0]})
		code, body := getCallback(t, relayURL(r.base, key, "end", "fe1", internal, fmt.Sprint("m", i), r.ids[0], aim)+"&meetingID="+internal)
		answers = append(answers, fmt.Sprint(code, " ", body))
		if tg != nil {
			want := int64(1)
			if status == 500 {
				want = callbacks.Attempts
			}
			deadline := time.Now().Add(5 * time.Second)
			for tg.hits.Load() < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := tg.hits.Load(); n != want {
				t.Errorf("target answering %d got %d calls, want %d", status, n, want)
			}
		}
	}
	for _, a := range answers {
		if a != answers[0] || a != "200 ok" {
			t.Fatalf("answers vary with the target: %q", answers)
		}
	}
}

// A relay URL made for a meeting on one backend is refused once the
// meeting is bound to another, and a repeated end callback goes out once.
func TestCallbackBoundToMeetingAndBackend(t *testing.T) {
	r := newRig(t, 2)
	key := r.srv.relay.ClusterKey(context.Background())
	tg := newTarget(t, 200)
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~mv", Frontend: "fe1", MeetingID: "mv", BackendID: r.ids[1]})
	u := relayURL(r.base, key, "end", "fe1", "fe1~mv", "mv", r.ids[0], tg.srv.URL+"/end") + "&meetingID=fe1~mv"
	if code, _ := getCallback(t, u); code != http.StatusForbidden {
		t.Fatalf("relay for a meeting bound to another backend: HTTP %d", code)
	}
	// BBB's own meetingID must be the one the relay was made for.
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~mw", Frontend: "fe1", MeetingID: "mw", BackendID: r.ids[0]})
	u = relayURL(r.base, key, "end", "fe1", "fe1~mw", "mw", r.ids[0], tg.srv.URL+"/end")
	if code, _ := getCallback(t, u+"&meetingID=fe1~other"); code != http.StatusForbidden {
		t.Fatalf("relay with another meetingID: HTTP %d", code)
	}
	for range 3 {
		if code, body := getCallback(t, u+"&meetingID=fe1~mw"); code != 200 || body != "ok" {
			t.Fatalf("valid relay: %d %s", code, body)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := tg.hits.Load(); n != 1 {
		t.Fatalf("a repeated end callback reached the client %d times", n)
	}
	// A relay can never be aimed at a peer's own address.
	r.mc.MustApply(&fsm.SetPeer{ID: "p1", RaftAddr: "127.0.0.1:42354", HTTPAddr: strings.TrimPrefix(tg.srv.URL, "http://")})
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~mx", Frontend: "fe1", MeetingID: "mx", BackendID: r.ids[0]})
	u = relayURL(r.base, key, "end", "fe1", "fe1~mx", "mx", r.ids[0], tg.srv.URL+"/api/v1/snapshot") + "&meetingID=fe1~mx"
	if code, _ := getCallback(t, u); code != http.StatusForbidden {
		t.Fatalf("relay aimed at a peer: HTTP %d", code)
	}
}

func TestHideRelayURLs(t *testing.T) {
	relay := relayURL("http://peer:42353", []byte("k"), "end", "fe1", "fe1~m", "m", "b0", "https://lms.example.org/end?a=1&b=2")
	doc := []byte("<response><returncode>SUCCESS</returncode><metadata><endcallbackurl>" + xmlscan.EscapeText(relay) +
		"</endcallbackurl><other>x</other></metadata></response>")
	got := string(callbacks.HideRelayURLs(doc))
	want := "<response><returncode>SUCCESS</returncode><metadata><endcallbackurl>https://lms.example.org/end?a=1&amp;b=2" +
		"</endcallbackurl><other>x</other></metadata></response>"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	plain := []byte("<response><x>http://a/b</x></response>")
	if string(callbacks.HideRelayURLs(plain)) != string(plain) {
		t.Fatal("a document without relay URLs changed")
	}
}

func hexHMAC(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// The end callback names the meeting's instance: one of an instance
// ended and created again since (BBB's callback can come seconds late)
// leaves the new one bound; the new instance's own end releases it.
func TestLateEndCallbackLeavesTheMeetingCreatedAgain(t *testing.T) {
	r := newRig(t, 1)
	key := r.srv.relay.ClusterKey(context.Background())
	instanceURL := func(at int64) string {
		a := strconv.FormatInt(at, 10)
		q := url.Values{"fe": {"fe1"}, "m": {"fe1~mi"}, "mid": {"mi"}, "be": {r.ids[0]}, "url": {""}, "at": {a},
			"sig": {callbacks.Sign(key, "end", "fe1", "fe1~mi", "mi", r.ids[0], "", a)}}
		return r.base + callbacks.Prefix + "end?" + q.Encode() + "&meetingID=fe1~mi"
	}
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~mi", Frontend: "fe1", MeetingID: "mi", BackendID: r.ids[0], Now: 100})
	r.mc.MustApply(&fsm.ReleaseMeetings{Meetings: []fsm.MeetingRef{{InternalID: "fe1~mi"}}}) // ended through the API
	r.mc.MustApply(&fsm.ClaimMeeting{InternalID: "fe1~mi", Frontend: "fe1", MeetingID: "mi", BackendID: r.ids[0], Now: 200})
	if code, body := getCallback(t, instanceURL(100)); code != 200 || body != "ok" {
		t.Fatalf("the first instance's end: %d %s", code, body)
	}
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		if _, ok := r.mc.FSM().Meeting("fe1~mi"); !ok {
			return fmt.Errorf("the first instance's late end released the meeting created again")
		}
		return nil
	})
	if code, _ := getCallback(t, instanceURL(200)); code != 200 {
		t.Fatalf("the new instance's end: %d", code)
	}
	testwait.Eventually(t, 2*time.Second, func() error {
		if _, ok := r.mc.FSM().Meeting("fe1~mi"); ok {
			return fmt.Errorf("its own end did not release it")
		}
		return nil
	})
	// A tampered instance does not verify.
	if code, _ := getCallback(t, strings.Replace(instanceURL(200), "at=200", "at=201", 1)); code != http.StatusForbidden {
		t.Fatalf("a tampered instance: HTTP %d", code)
	}
}
