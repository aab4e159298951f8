package ctl

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSCommandsWriteACAAndPeerCertificates(t *testing.T) {
	cleanEnv(t)
	dir := filepath.Join(t.TempDir(), "pki")
	out, _, err := run(t, "tls", "ca", "create", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, filepath.Join(dir, "ca.pem")) || !strings.Contains(out, filepath.Join(dir, "ca-key.pem")) {
		t.Fatalf("output does not name the files: %q", out)
	}
	if _, _, err := run(t, "tls", "cert", "create", "--name", "peer1", "--hosts", "10.1.2.3,peer1.example.org", "--dir", dir, "--days", "30"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "tls", "cert", "create", "--name", "peer2", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"peer1", "peer2"} {
		c := readCert(t, filepath.Join(dir, name+".pem"))
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Fatalf("%s does not verify against ca.pem for %v: %v", name, usage, err)
			}
		}
		st, err := os.Stat(filepath.Join(dir, name+"-key.pem"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s key: %v %v", name, st.Mode(), err)
		}
		if !slices.Contains(c.DNSNames, "localhost") || !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			t.Fatalf("%s lacks localhost/127.0.0.1: %v %v", name, c.DNSNames, c.IPAddresses)
		}
	}
	p1 := readCert(t, filepath.Join(dir, "peer1.pem"))
	if !slices.Contains(p1.DNSNames, "peer1.example.org") || !slices.ContainsFunc(p1.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.1.2.3")) }) {
		t.Fatalf("--hosts missing: %v %v", p1.DNSNames, p1.IPAddresses)
	}
	if days := p1.NotAfter.Sub(p1.NotBefore).Hours() / 24; days > 31 {
		t.Fatalf("--days 30 gave %.1f days", days)
	}

	// Nothing is overwritten.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if _, _, err := run(t, "tls", "ca", "create", "--dir", dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second ca create: %v", err)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); string(caAfter) != string(caBefore) {
		t.Fatal("CA key overwritten")
	}
	if _, _, err := run(t, "tls", "cert", "create", "--name", "peer1", "--dir", dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second cert create: %v", err)
	}
	if _, _, err := run(t, "tls", "cert", "create", "--dir", dir); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("cert create without --name: %v", err)
	}
}
