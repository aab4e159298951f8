package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
	info := c.Get(t, "getMeetingInfo", "meetingID=lesson")
	if strings.Contains(info.Raw, srv.URL) {
		t.Fatalf("the node was given the LMS's own callback URL: %s", info.Raw)
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

func TestForgedCallbacksRefused(t *testing.T) {
	r := newRig(t, 1)
	sig := callbackSig("fe1-secret", "end", "fe1", r.ids[0], "http://127.0.0.1:1/end")
	for name, q := range map[string]string{
		"tampered url":  "fe=fe1&be=" + r.ids[0] + "&url=" + url.QueryEscape("http://127.0.0.1:2/evil") + "&sig=" + sig,
		"other secret":  "fe=fe1&be=" + r.ids[0] + "&url=" + url.QueryEscape("http://127.0.0.1:1/end") + "&sig=" + callbackSig("x", "end", "fe1", r.ids[0], "http://127.0.0.1:1/end"),
		"unknown front": "fe=nope&be=b&url=x&sig=" + sig,
	} {
		resp, err := http.Get(r.base + callbackPrefix + "end?" + q + "&meetingID=fe1~m")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: HTTP %d", name, resp.StatusCode)
		}
	}
}
