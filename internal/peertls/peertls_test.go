package peertls

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/pki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type ca struct{ cert, key []byte }

func newCA(t *testing.T) ca {
	t.Helper()
	c, k, err := pki.NewCA(1)
	if err != nil {
		t.Fatal(err)
	}
	return ca{c, k}
}

func (a ca) peer(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := pki.NewCert(a.cert, a.key, name, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func (a ca) config(t *testing.T, name string) *Config {
	t.Helper()
	c, k := a.peer(t, name)
	cfg, err := New(a.cert, c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadChecksTheFilesFit(t *testing.T) {
	t.Parallel()
	a, b := newCA(t), newCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aCert, aKey := a.peer(t, "p1")
	bCert, bKey := b.peer(t, "p1")
	caA, caB := write("a.pem", a.cert), write("b.pem", b.cert)
	bundle := write("bundle.pem", append(append([]byte{}, a.cert...), b.cert...))
	certA, keyA := write("p1a.pem", aCert), write("p1a-key.pem", aKey)
	certB, keyB := write("p1b.pem", bCert), write("p1b-key.pem", bKey)

	if c, err := Load(caA, certA, keyA); err != nil {
		t.Fatalf("matching files: %v", err)
	} else if c.Subject() != "p1" {
		t.Fatalf("subject %q", c.Subject())
	}
	// A bundle of two CAs (rotation) takes certificates from either.
	for _, pair := range [][2]string{{certA, keyA}, {certB, keyB}} {
		if _, err := Load(bundle, pair[0], pair[1]); err != nil {
			t.Fatalf("bundle: %v", err)
		}
	}
	for name, tc := range map[string]struct{ ca, cert, key, want string }{
		"cert from another CA": {caB, certA, keyA, "does not verify against the CA bundle"},
		"mismatched key":       {caA, certA, keyB, "private key does not match"},
		"missing CA file":      {filepath.Join(dir, "none.pem"), certA, keyA, "--tls-ca"},
		"missing key file":     {caA, certA, filepath.Join(dir, "none.pem"), "--tls-key"},
		"CA file not PEM":      {keyA, certA, keyA, "no PEM certificate"},
		"leaf as CA":           {certB, certA, keyA, "not a CA"},
	} {
		_, err := Load(tc.ca, tc.cert, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----\n") {
			t.Errorf("%s: the error shows key material", name)
		}
	}
}

// serveEcho accepts on ln and echoes one line per connection.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				io.WriteString(c, "echo "+line)
			}
		}()
	}
}

func echoOver(c net.Conn) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestListenNeedsACertificateFromTheCA(t *testing.T) {
	t.Parallel()
	a, other := newCA(t), newCA(t)
	server := a.config(t, "server")
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(raw, server, quiet)
	defer ln.Close()
	go serveEcho(ln)
	addr := ln.Addr().String()

	// A peer of the same CA gets through, both ends verified.
	c, err := tls.Dial("tcp", addr, a.config(t, "client").Client())
	if err != nil {
		t.Fatalf("valid peer: %v", err)
	}
	if got, err := echoOver(c); err != nil || got != "echo hello\n" {
		t.Fatalf("valid peer: %q %v", got, err)
	}

	// No certificate, another CA's certificate, plain TCP: nothing reaches
	// the server.
	oc, ok := other.peer(t, "client")
	otherCert, _ := tls.X509KeyPair(oc, ok)
	attempts := map[string]func() (net.Conn, error){
		"no certificate": func() (net.Conn, error) {
			return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		},
		"another CA": func() (net.Conn, error) {
			return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{otherCert}})
		},
		"plain TCP": func() (net.Conn, error) { return net.Dial("tcp", addr) },
	}
	for name, dial := range attempts {
		c, err := dial()
		if err != nil {
			continue // refused during the handshake
		}
		if got, err := echoOver(c); err == nil {
			t.Errorf("%s: got through: %q", name, got)
		}
	}

	// The client side refuses a server from another CA.
	if c, err := tls.Dial("tcp", addr, other.config(t, "client").Client()); err == nil {
		c.Close()
		t.Fatal("client accepted a server certificate from another CA")
	}
}

// A connection that never speaks is dropped after the handshake timeout,
// and meanwhile does not hold up other connections.
// Not parallel: it lowers the package's handshakeTimeout, which Listen
// reads. (The parallel tests only start once the sequential ones are done.)
func TestSilentConnectionsDoNotBlock(t *testing.T) {
	old := handshakeTimeout
	handshakeTimeout = 300 * time.Millisecond
	defer func() { handshakeTimeout = old }()
	a := newCA(t)
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	ln := Listen(raw, a.config(t, "server"), quiet)
	defer ln.Close()
	go serveEcho(ln)

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := tls.Dial("tcp", ln.Addr().String(), a.config(t, "client").Client())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoOver(c); err != nil || got != "echo hello\n" {
		t.Fatalf("%q %v", got, err)
	}
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection not closed by the server: %v", err)
	}
}

// Split serves plain HTTP and mutual TLS on one port; the first byte is
// read off the accept loop, so a silent connection delays no one.
func TestSplitPlainAndTLS(t *testing.T) {
	t.Parallel()
	a := newCA(t)
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	plain, secure := Split(raw, a.config(t, "server"), quiet)
	hello := func(who string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, who+" "+r.URL.Path)
		})
	}
	go http.Serve(plain, hello("plain"))
	go http.Serve(secure, hello("tls"))
	url := raw.Addr().String()

	silent, _ := net.Dial("tcp", url) // never sends its first byte
	defer silent.Close()

	get := func(c *http.Client, u string) string {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	plainClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: a.config(t, "client").Client()}}
	for i := 0; i < 3; i++ { // keep-alive: the same connections again
		if got := get(plainClient, "http://"+url+"/x"); got != "plain /x" {
			t.Fatalf("plain: %q", got)
		}
		if got := get(tlsClient, "https://"+url+"/y"); got != "tls /y" {
			t.Fatalf("tls: %q", got)
		}
	}
	// Without a client certificate the TLS side refuses.
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := noCert.Get("https://" + url + "/y"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS without a client certificate was served")
	}

	// Closing one side closes the port.
	plain.Close()
	if _, err := secure.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("secure Accept after Close: %v", err)
	}
	if err := secure.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", url, time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after Close")
	}
}

// A plain connection handed over by Split half-closes as the TCP one
// beneath it does (the gateway's lingering close needs CloseWrite): the
// client reads the end of the stream while it can still send.
func TestSplitPlainConnectionHalfCloses(t *testing.T) {
	t.Parallel()
	raw, _ := net.Listen("tcp", "127.0.0.1:0")
	plain, secure := Split(raw, newCA(t).config(t, "server"), quiet)
	defer secure.Close()
	defer plain.Close()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("G")) // the byte Split reads to route the connection
	server, err := plain.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cw, ok := server.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T hides CloseWrite", server)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v: want EOF", n, err)
	}
	if _, err := client.Write([]byte("ET / HTTP/1.1\r\n")); err != nil {
		t.Fatalf("the client can no longer send: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "GE" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}
