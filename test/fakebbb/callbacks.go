package fakebbb

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Callbacks run in their own goroutine after the lock is released; a
// receiver that is down or slow delays nothing else. Retries are few and
// short: a test waits for them.
const (
	endCallbackAttempts   = 3
	readyCallbackAttempts = 4
	callbackBackoff       = 200 * time.Millisecond
)

// endCallback sends bbb-web's meeting-ended callback: a plain GET to
// meta_endCallbackUrl with recordingmarks and meetingID appended (in that
// order, as bbb-web's URIBuilder does). It is not signed.
func (s *Server) endCallback(rawURL, meetingID string, marks bool) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return
	}
	extra := "recordingmarks=" + strconv.FormatBool(marks) + "&meetingID=" + url.QueryEscape(meetingID)
	if u.RawQuery == "" {
		u.RawQuery = extra
	} else {
		u.RawQuery += "&" + extra
	}
	target := u.String()
	s.retry(endCallbackAttempts, func() (bool, bool) {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			return false, true
		}
		return s.send(req)
	})
}

// recordingReady sends the recording-ready callback of BBB's post_publish
// script: a POST with form field signed_parameters, an HS256 JWT of
// {meeting_id, record_id} signed with this node's secret. Blocked callbacks
// are not sent.
func (s *Server) recordingReady(rawURL, meetingID, recordID string) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"meeting_id": meetingID,
		"record_id":  recordID,
	}).SignedString([]byte(s.secret))
	if err != nil {
		return
	}
	body := url.Values{"signed_parameters": {token}}.Encode()
	s.retry(readyCallbackAttempts, func() (bool, bool) {
		s.mu.Lock()
		blocked := s.blockCallbacks
		s.mu.Unlock()
		if blocked {
			return false, true
		}
		req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(body))
		if err != nil {
			return false, true
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return s.send(req)
	})
}

// send makes one callback request. done: the receiver took it; stop: do not
// retry either (BBB gives up on 401, wrong secret, and 410, gone).
func (s *Server) send(req *http.Request) (done, stop bool) {
	s.mu.Lock()
	client := s.client
	s.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		return false, false
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return true, true
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusGone:
		return false, true
	}
	return false, false
}

// retry calls try until it succeeds or says stop, at most attempts times,
// backing off between attempts.
func (s *Server) retry(attempts int, try func() (done, stop bool)) {
	wait := callbackBackoff
	for i := 0; i < attempts; i++ {
		if done, stop := try(); done || stop {
			return
		}
		if i < attempts-1 {
			time.Sleep(wait)
			wait *= 2
		}
	}
}
