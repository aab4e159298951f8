//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/peertls"
	"github.com/conclave-lb/conclave/internal/pki"
)

// peerUID is the user the conclaved image runs as (deploy/conclaved.Dockerfile).
const peerUID = 65532

// makeTLS writes the cluster CA and a certificate per peer (as
// `conclavectl tls ca create` and `tls cert create --name peerN --hosts
// peerN` do) into a temp dir that compose mounts (CONCLAVE_TLS_DIR), plus
// a certificate the test itself uses to talk to the peers' TLS side.
func makeTLS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := pki.WriteCA(dir, 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(append([]string{}, peers...), "e2e-client") {
		if _, keyPath, err := pki.WriteCert(dir, p, []string{p}, 1); err != nil {
			t.Fatal(err)
		} else if p != "e2e-client" {
			readableByPeers(t, keyPath)
		}
	}
	return dir
}

// readableByPeers lets the container's user read a key: owned by it when
// we can (root), else readable by all (a temp dir of this test only).
func readableByPeers(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := os.Chown(path, peerUID, peerUID); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

func certSerial(certPEM []byte) (string, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "", fmt.Errorf("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	return c.SerialNumber.Text(16), nil
}

// replaceCert makes a new certificate and key for svc from the same CA
// and writes them over the mounted files (in place, so the bind mounts
// see them); the peer uses them from its next start. It returns the new
// certificate's serial.
func (c *cluster) replaceCert(svc string) (string, error) {
	tmp := c.t.TempDir()
	for _, f := range []string{pki.CAFile, pki.CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(c.tlsDir, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o600); err != nil {
			return "", err
		}
	}
	certPath, keyPath, err := pki.WriteCert(tmp, svc, []string{svc}, 1)
	if err != nil {
		return "", err
	}
	certPEM, _ := os.ReadFile(certPath)
	keyPEM, _ := os.ReadFile(keyPath)
	serial, err := certSerial(certPEM)
	if err != nil {
		return "", err
	}
	// Key first: a peer never starts with a new certificate and an old key.
	if err := os.WriteFile(filepath.Join(c.tlsDir, pki.KeyFile(svc)), keyPEM, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(c.tlsDir, pki.CertFile(svc)), certPEM, 0o644); err != nil {
		return "", err
	}
	return serial, nil
}

// mountedSerial is the serial of the certificate mounted for svc now.
func (c *cluster) mountedSerial(svc string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.tlsDir, pki.CertFile(svc)))
	if err != nil {
		return "", err
	}
	return certSerial(b)
}

// checkPeerTLS checks, through svc's published HTTP port, that peer calls
// are refused in plain HTTP (403) and that the TLS side presents the
// certificate with serial want, verified against the cluster CA, and
// answers a peer call made with a cluster certificate.
func (c *cluster) checkPeerTLS(svc, want string) error {
	a, err := c.addr(svc, peerPort)
	if err != nil {
		return err
	}
	resp, err := c.http.Post("http://"+a+"/api/v1/internal/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		c.forget(svc)
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		return fmt.Errorf("%s: a peer call in plain HTTP got %d, want 403", svc, resp.StatusCode)
	}
	tc, err := peertls.Load(filepath.Join(c.tlsDir, pki.CAFile), filepath.Join(c.tlsDir, "e2e-client.pem"), filepath.Join(c.tlsDir, "e2e-client-key.pem"))
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", a, tc.Client())
	if err != nil {
		return fmt.Errorf("%s: TLS handshake with a cluster certificate: %w", svc, err)
	}
	got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	conn.Close()
	if got != want {
		return fmt.Errorf("%s presents certificate %s, want %s", svc, got, want)
	}
	client := &http.Client{Timeout: 8 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Client()}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+a+"/api/v1/internal/status", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err = client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: peer call over TLS: %w", svc, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: peer call over TLS got %d", svc, resp.StatusCode)
	}
	return nil
}
