package fakebbb_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
)

// get fetches u in the background; the answer (or error) comes on the
// channel.
func getAsync(u string, timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: timeout}
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = &statusError{resp.StatusCode}
			}
		}
		done <- err
	}()
	return done
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// A hung node accepts connections and answers nothing; Resume answers what
// it held.
func TestHangAndResume(t *testing.T) {
	s, c := startNode(t, "hang-secret")
	c.mustOK("create", "meetingID=mm")
	s.Hang()
	if !s.Hung() {
		t.Fatal("Hung() after Hang")
	}
	conn := dial(t, c.base) // still accepted
	conn.Close()
	held := getAsync(c.url("getMeetingInfo", "meetingID=mm"), 10*time.Second)
	landing := getAsync(strings.TrimSuffix(c.base, "/bigbluebutton/api")+"/html5client/join?sessionToken=x", 10*time.Second)
	testwait.AssertUntil(t, 300*time.Millisecond, func() error {
		select {
		case err := <-held:
			return fmt.Errorf("a hung node answered: %v", err)
		default:
			return nil
		}
	})
	// A client that gives up is simply gone.
	if err := <-getAsync(c.url("getMeetings", ""), 200*time.Millisecond); err == nil {
		t.Fatal("a hung node answered getMeetings")
	}
	s.Resume()
	if s.Hung() {
		t.Fatal("Hung() after Resume")
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("held request after Resume: %v", err)
		}
	case <-time.After(testwait.Scaled(5 * time.Second)):
		t.Fatal("Resume did not answer the held request")
	}
	if err := <-landing; err == nil || !strings.Contains(err.Error(), "Not Found") {
		t.Fatalf("held landing page after Resume: %v", err)
	}
	c.mustOK("getMeetingInfo", "meetingID=mm")
	if n := s.Requests("getMeetingInfo"); n != 2 {
		t.Fatalf("Requests(getMeetingInfo) = %d", n)
	}
}

// Close drops what a hung node holds, at once: its requests get no answer
// and no handler is left waiting (Close would otherwise wait out its
// shutdown grace).
func TestCloseWhileHung(t *testing.T) {
	s, c := startNode(t, "hangclose-secret")
	s.Hang()
	var held []<-chan error
	for i := 0; i < 5; i++ {
		held = append(held, getAsync(c.url("getMeetings", ""), 10*time.Second))
	}
	testwait.Sleep(100 * time.Millisecond) // the requests are in (nothing to poll: a held request is not counted yet)
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with hung requests", d)
	}
	for _, h := range held {
		select {
		case err := <-h:
			if err == nil {
				t.Fatal("a held request was answered after Close")
			}
		case <-time.After(testwait.Scaled(5 * time.Second)):
			t.Fatal("a held request still waits after Close")
		}
	}
	if s.Hung() {
		t.Fatal("a closed node stays hung")
	}
}

// Restart forgets every meeting and session, as BBB does on a restart, keeps
// the recordings (files) and the address, and ends a hang.
func TestRestartForgetsMeetings(t *testing.T) {
	s, c := startNode(t, "restartempty-secret")
	c.mustOK("create", "meetingID=rec&record=true&attendeePW=ap&moderatorPW=mp")
	c.joinAndLand("meetingID=rec&fullName=Ann&password=mp")
	c.mustOK("end", "meetingID=rec")
	c.mustOK("create", "meetingID=live&attendeePW=ap&moderatorPW=mp")
	c.joinAndLand("meetingID=live&fullName=Bob&password=mp")
	pending := c.get("join", "meetingID=live&fullName=Cy&password=ap")
	s.Hang()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Hung() || s.MeetingCount() != 0 || s.AttendeeCount() != 0 {
		t.Fatalf("after Restart: hung %v, %d meetings, %d attendees", s.Hung(), s.MeetingCount(), s.AttendeeCount())
	}
	// Same address; the meeting is gone, a join of it fails, the session
	// handed out before no longer lands.
	if a := c.mustOK("getMeetings", ""); a.key() != "noMeetings" {
		t.Fatalf("getMeetings after Restart: %s", a.body)
	}
	if a := c.get("getMeetingInfo", "meetingID=live"); a.key() != "notFound" {
		t.Fatalf("getMeetingInfo after Restart: %s", a.body)
	}
	if a := c.mustOK("isMeetingRunning", "meetingID=live"); a.get("running") != "false" {
		t.Fatalf("isMeetingRunning after Restart: %s", a.body)
	}
	if _, errs := joinErrors(t, c.get("join", "meetingID=live&fullName=Bob&password=mp")); errs[0]["key"] != "meetingForciblyEnded" {
		t.Fatalf("join after Restart: %v", errs)
	}
	if land := fetch(t, "GET", pending.header.Get("Location"), "", ""); land.status != http.StatusNotFound {
		t.Fatalf("old session after Restart: HTTP %d", land.status)
	}
	if recs := c.mustOK("getRecordings", "meetingID=rec"); len(recs.tree.all("recordings/recording")) != 1 {
		t.Fatalf("recordings after Restart: %s", recs.body)
	}
	c.mustOK("create", "meetingID=live")

	// A closed node restarts empty without listening.
	s.Close()
	if err := s.Restart(); err != nil || s.MeetingCount() != 0 {
		t.Fatalf("Restart of a closed node: %v, %d meetings", err, s.MeetingCount())
	}
}
