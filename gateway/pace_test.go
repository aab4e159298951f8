package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/peertls"
	"github.com/conclave-lb/conclave/internal/pki"
	"github.com/conclave-lb/conclave/internal/testwait"
)

// While a peer paces its clients (its CPU over the share kept for them),
// their requests stay unread, but peers' calls over mutual TLS (forwarded
// writes, read-index) are answered at once: they never queue behind
// clients. Once the load is gone, the held requests are served.
func TestPacedClientsNeverHoldPeerCalls(t *testing.T) {
	caCert, caKey, err := pki.NewCA(1)
	if err != nil {
		t.Fatal(err)
	}
	tlsFor := func(name string) *peertls.Config {
		c, k, err := pki.NewCert(caCert, caKey, name, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := peertls.New(caCert, c, k)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := New(Config{PeerTLS: tlsFor("p1")}, NewMemCluster())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	s.pacer.Hold()
	client := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + "/bigbluebutton/api")
		if err != nil {
			client <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		client <- string(b)
	}()
	testwait.EventuallyTrue(t, 5*time.Second, "the client's request held", func() bool { return s.pacer.Waiting() == 1 })
	peer := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsFor("p2").Client()}}
	// Not scaled: Hold lasts only until pacing ends by itself, a second
	// (calmTicks) after the CPU went quiet at the earliest.
	for end := time.Now().Add(250 * time.Millisecond); time.Now().Before(end); {
		select {
		case got := <-client:
			t.Fatalf("a client was served while held: %q", got)
		default:
		}
		resp, err := peer.Post("https://"+addr+"/api/v1/internal/readindex", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("a peer call waited behind held clients: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Nothing loads the CPU: pacing ends by itself and the client is served.
	select {
	case got := <-client:
		if !strings.Contains(got, "<returncode>SUCCESS</returncode>") {
			t.Fatalf("client after pacing: %q", got)
		}
	case <-time.After(testwait.Scaled(10 * time.Second)):
		t.Fatal("the held client was never served")
	}
}

func TestParseClientCPU(t *testing.T) {
	for in, want := range map[string]float64{"": 0, "off": -1, " OFF ": -1, "0.5": 0.5, "1": 1} {
		if got, err := ParseClientCPU(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-0.5", "1.5", "NaN", "Inf", "half"} {
		if got, err := ParseClientCPU(in); err == nil {
			t.Errorf("%q accepted as %v", in, got)
		}
	}
}
