package control

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// A 200 answer that is not BBB's SUCCESS (a proxy's page, an error
// envelope) fails the probe, listing or not.
func TestProbeNeedsASuccessEnvelope(t *testing.T) {
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	s := newTestControl(Config{}, newMemCluster())
	b := &fsm.Backend{ID: "x", URL: srv.URL + "/bigbluebutton/api/", Secret: "s"}
	for _, tc := range []struct {
		answer string
		ok     bool
	}{
		{"<response><returncode>SUCCESS</returncode><running>false</running></response>", true},
		{"<html><body>maintenance</body></html>", false},
		{"<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey></response>", false},
		{"not xml <", false},
	} {
		body.Store(tc.answer)
		for _, list := range []bool{false, true} {
			if r := s.probe(b, time.Second, list); r.ok != tc.ok {
				t.Errorf("list=%v on %q: ok=%v (%s), want %v", list, tc.answer, r.ok, r.err, tc.ok)
			}
		}
	}
}
