package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/internal/admit"
)

// A peer at its bound of joins in flight sheds the next join (after a
// short wait), as a BBB FAILED answer with 503 and Retry-After, and counts
// it; reads and writes go on (their own bounds), and so do the admin API
// and health checks.
func TestJoinsPastTheBoundAreShedOthersAreNot(t *testing.T) {
	r := newRig(t, 1)
	c := r.client("fe1")
	if a := c.Get(t, "create", "meetingID=shed-1&name=S"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("create: %s", a.Raw)
	}
	// Fill the joins' bound as a flood of joins would.
	g := r.srv.gate
	for g.Enter(admit.Join) {
	}
	filled := g.InFlight(admit.Join)
	defer func() {
		for i := int64(0); i < filled; i++ {
			g.Leave(admit.Join)
		}
	}()

	resp, err := noRedirect.Get(c.URL("join", "meetingID=shed-1&fullName=U&role=viewer"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("shed join: HTTP %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(body), "<returncode>FAILED</returncode>") || !strings.Contains(string(body), bbb.KeyServerUnavailable) {
		t.Fatalf("shed join body is not BBB's FAILED envelope: %s", body)
	}
	var m dto.Metric
	if err := r.srv.shed[admit.Join].Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Fatalf("conclave_requests_shed_total{class=join} = %v, want 1", got)
	}
	if got := g.InFlight(admit.Join); got != filled {
		t.Fatalf("a shed request stayed counted: %d in flight, want %d", got, filled)
	}

	// Writes and reads are admitted while joins are full.
	if a := c.Get(t, "create", "meetingID=shed-2&name=S"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("create while joins are full: %s", a.Raw)
	}
	if a := c.Get(t, "isMeetingRunning", "meetingID=shed-2"); a.ReturnCode != "SUCCESS" {
		t.Fatalf("read while joins are full: %s", a.Raw)
	}
	// Health and metrics are not BBB API requests: never shed.
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s while joins are full: HTTP %d", path, resp.StatusCode)
		}
	}

	// Once a join leaves, joins are served again.
	g.Leave(admit.Join)
	filled--
	resp, err = noRedirect.Get(c.URL("join", "meetingID=shed-1&fullName=U&role=viewer"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("join after the flood: HTTP %d", resp.StatusCode)
	}
}

func TestCallClass(t *testing.T) {
	t.Parallel()
	for call, want := range map[string]admit.Class{
		"/create": admit.Write, "/end": admit.Write, "/insertDocument": admit.Write, "/deleteRecordings": admit.Write,
		"/join": admit.Join, "/getMeetings": admit.Read, "/getMeetingInfo": admit.Read, "": admit.Read, "/createX": admit.Read,
	} {
		if got := callClass([]byte(call)); got != want {
			t.Errorf("callClass(%q) = %v, want %v", call, got, want)
		}
	}
}
