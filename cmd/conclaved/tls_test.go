package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/internal/pki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A peer whose Raft address is not loopback does not start without TLS,
// and says which flags would let it.
func TestRefusesPlainRaftOutsideLoopback(t *testing.T) {
	for _, env := range []string{"CONCLAVE_TLS_CA", "CONCLAVE_TLS_CERT", "CONCLAVE_TLS_KEY", "CONCLAVE_GOSSIP_KEY"} {
		t.Setenv(env, "")
	}
	cmd := newCommand()
	cmd.SetArgs([]string{"--id", "p1", "--data-dir", t.TempDir(), "--raft-addr", "0.0.0.0:42354", "--raft-advertise", "192.0.2.10:42354",
		"--listen-http", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil {
		t.Fatal("started with plain Raft on a non-loopback address")
	}
	msg := err.Error()
	for _, want := range []string{"not loopback", "--tls-ca", "--tls-cert", "--tls-key", "--insecure-transport"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}

func TestTransportRule(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := pki.WriteCA(dir, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.WriteCert(dir, "p1", nil, 1); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	pki.WriteCA(other, 1)
	pki.WriteCert(other, "p1", nil, 1)
	f := func(name string) string { return filepath.Join(dir, name) }
	good := tlsOptions{ca: f("ca.pem"), cert: f("p1.pem"), key: f("p1-key.pem")}

	for _, tc := range []struct {
		name       string
		o          tlsOptions
		bind, adv  string
		wantTLS    bool
		wantErrHas string
	}{
		{"loopback without TLS", tlsOptions{}, "127.0.0.1:1", "127.0.0.1:1", false, ""},
		{"localhost without TLS", tlsOptions{}, "localhost:1", "localhost:1", false, ""},
		{"non-loopback bind without TLS", tlsOptions{}, "0.0.0.0:1", "127.0.0.1:1", false, "--insecure-transport"},
		{"non-loopback advertise without TLS", tlsOptions{}, "127.0.0.1:1", "peer1:1", false, "--tls-ca"},
		{"--insecure-transport allows it", tlsOptions{insecureTransport: true}, "0.0.0.0:1", "10.0.0.1:1", false, ""},
		{"TLS outside loopback", good, "0.0.0.0:1", "10.0.0.1:1", true, ""},
		{"TLS on loopback", good, "127.0.0.1:1", "127.0.0.1:1", true, ""},
		{"only two TLS flags", tlsOptions{ca: good.ca, cert: good.cert}, "127.0.0.1:1", "127.0.0.1:1", false, "go together"},
		{"key of another cert", tlsOptions{ca: good.ca, cert: good.cert, key: filepath.Join(other, "p1-key.pem")}, "10.0.0.1:1", "10.0.0.1:1", false, "does not match"},
		{"cert of another CA", tlsOptions{ca: good.ca, cert: filepath.Join(other, "p1.pem"), key: filepath.Join(other, "p1-key.pem")}, "10.0.0.1:1", "10.0.0.1:1", false, "does not verify"},
		{"unreadable CA", tlsOptions{ca: f("nope.pem"), cert: good.cert, key: good.key}, "10.0.0.1:1", "10.0.0.1:1", false, "--tls-ca"},
	} {
		c, err := tc.o.peerTLS(tc.bind, tc.adv, quiet)
		switch {
		case tc.wantErrHas != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrHas)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErrHas)
		case tc.wantErrHas == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case (c != nil) != tc.wantTLS:
			t.Errorf("%s: TLS config %v, want TLS %v", tc.name, c != nil, tc.wantTLS)
		}
	}
}

// The start-up log says TLS is on (and, for this one-day certificate,
// that it expires soon) and never shows the key.
func TestTLSLogHasNoKey(t *testing.T) {
	dir := t.TempDir()
	pki.WriteCA(dir, 1)
	_, keyPath, _ := pki.WriteCert(dir, "p1", nil, 1)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	o := tlsOptions{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "p1.pem"), key: keyPath}
	if _, err := o.peerTLS("10.0.0.1:1", "10.0.0.1:1", log); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(keyPath)
	body := strings.Split(string(key), "\n")[1]
	if !strings.Contains(buf.String(), "peer TLS on") || !strings.Contains(buf.String(), "expires soon") || strings.Contains(buf.String(), body[:20]) || strings.Contains(buf.String(), "PRIVATE KEY") {
		t.Fatalf("log: %s", buf.String())
	}
}
