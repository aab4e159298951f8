package fakebbb_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conclave-lb/conclave/internal/testwait"
)

type received struct {
	method string
	url    *url.URL
	form   url.Values
}

// receiver records callbacks; status picks the HTTP status per attempt.
func receiver(t *testing.T, status func(n int) int) (*httptest.Server, chan received) {
	ch := make(chan received, 16)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		ch <- received{method: r.Method, url: r.URL, form: r.PostForm}
		w.WriteHeader(status(int(n.Add(1))))
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func next(t *testing.T, ch chan received, what string) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testwait.Scaled(5 * time.Second)):
		t.Fatalf("no %s callback", what)
		return received{}
	}
}

// none checks that no callback arrives on ch for the whole of within.
func none(t *testing.T, ch chan received, within time.Duration, what string) {
	t.Helper()
	testwait.AssertUntil(t, within, func() error {
		select {
		case r := <-ch:
			return fmt.Errorf("unexpected %s callback: %s %s", what, r.method, r.url)
		default:
			return nil
		}
	})
}

func TestEndAndRecordingReadyCallbacks(t *testing.T) {
	const secret = "callback-secret"
	_, c := startNode(t, secret)
	endSrv, ends := receiver(t, func(int) int { return 200 })
	readySrv, readies := receiver(t, func(int) int { return 200 })
	c.mustOK("create", "meetingID=cb-room&record=true&meta_endCallbackUrl="+url.QueryEscape(endSrv.URL+"/ended?lms=1")+
		"&meta_bbb-recording-ready-url="+url.QueryEscape(readySrv.URL+"/ready"))
	c.mustOK("end", "meetingID=cb-room")

	e := next(t, ends, "end")
	if e.method != "GET" || e.url.Path != "/ended" || e.url.RawQuery != "lms=1&recordingmarks=true&meetingID=cb-room" {
		t.Fatalf("end callback: %s %s", e.method, e.url)
	}

	r := next(t, readies, "recording-ready")
	if r.method != "POST" {
		t.Fatalf("recording-ready callback method %s", r.method)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(r.form.Get("signed_parameters"), claims, func(tk *jwt.Token) (any, error) {
		return []byte(secret), nil
	}, jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !tok.Valid {
		t.Fatalf("signed_parameters does not verify with the node's secret: %v", err)
	}
	recID := c.mustOK("getRecordings", "meetingID=cb-room").get("recordings/recording/recordID")
	if claims["meeting_id"] != "cb-room" || claims["record_id"] != recID || recID == "" {
		t.Fatalf("claims %v, recording %q", claims, recID)
	}
	if _, err := jwt.Parse(r.form.Get("signed_parameters"), func(*jwt.Token) (any, error) { return []byte("other"), nil }); err == nil {
		t.Fatal("signed_parameters verifies with another secret")
	}

	// An unrecorded meeting: recordingmarks=false, and no recording-ready.
	c.mustOK("create", "meetingID=plain-room&meta_endCallbackUrl="+url.QueryEscape(endSrv.URL+"/ended")+
		"&meta_bbb-recording-ready-url="+url.QueryEscape(readySrv.URL+"/ready"))
	c.mustOK("end", "meetingID=plain-room")
	if e := next(t, ends, "end"); e.url.RawQuery != "recordingmarks=false&meetingID=plain-room" {
		t.Fatalf("end callback: %s", e.url)
	}
	none(t, readies, 500*time.Millisecond, "recording-ready")
}

func TestCallbackRetriesAndBlocking(t *testing.T) {
	s, c := startNode(t, "retry-secret")
	// The end callback receiver fails once, then takes it.
	endSrv, ends := receiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	// The recording-ready receiver answers 410 Gone: BBB does not retry.
	goneSrv, gones := receiver(t, func(int) int { return http.StatusGone })
	c.mustOK("create", "meetingID=retry-room&record=true&meta_endCallbackUrl="+url.QueryEscape(endSrv.URL)+
		"&meta_bbb-recording-ready-url="+url.QueryEscape(goneSrv.URL))
	c.mustOK("end", "meetingID=retry-room")
	next(t, ends, "end")
	next(t, ends, "end (retry)")
	next(t, gones, "recording-ready")
	none(t, gones, 700*time.Millisecond, "recording-ready retry after 410")

	// Blocked: the end callback still goes, recording-ready does not.
	s.SetBlockCallbacks(true)
	readySrv, readies := receiver(t, func(int) int { return 200 })
	okSrv, oks := receiver(t, func(int) int { return 200 })
	c.mustOK("create", "meetingID=blocked-room&record=true&meta_endCallbackUrl="+url.QueryEscape(okSrv.URL)+
		"&meta_bbb-recording-ready-url="+url.QueryEscape(readySrv.URL))
	c.mustOK("end", "meetingID=blocked-room")
	next(t, oks, "end")
	none(t, readies, 700*time.Millisecond, "blocked recording-ready")
	if ids := c.mustOK("getRecordings", "meetingID=blocked-room"); ids.get("recordings/recording/recordID") == "" {
		t.Fatal("blocking callbacks must not stop the recording")
	}
}
