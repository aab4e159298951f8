package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("no certificate PEM in %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCAAndPeerCertificate(t *testing.T) {
	t.Parallel()
	caPEM, caKey, err := NewCA(DefaultCADays)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCert(t, caPEM)
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("CA: IsCA=%v usage=%v", ca.IsCA, ca.KeyUsage)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if life := ca.NotAfter.Sub(time.Now()); life < (5*365-1)*24*time.Hour || life > (5*365+1)*24*time.Hour {
		t.Fatalf("CA valid for %v, want 5 years", life)
	}

	certPEM, _, err := NewCert(caPEM, caKey, "peer1", []string{"10.0.0.7", "peer1.example.org", " "}, DefaultCertDays)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if c.Subject.CommonName != "peer1" {
		t.Fatalf("CN %q", c.Subject.CommonName)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(c.ExtKeyUsage, usage) {
			t.Fatalf("ExtKeyUsage %v lacks %v", c.ExtKeyUsage, usage)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("peer certificate does not verify against its CA: %v", err)
	}
	for _, dns := range []string{"peer1", "peer1.example.org", "localhost"} {
		if !slices.Contains(c.DNSNames, dns) {
			t.Errorf("DNS SANs %v lack %s", c.DNSNames, dns)
		}
	}
	for _, ip := range []string{"10.0.0.7", "127.0.0.1", "::1"} {
		if !slices.ContainsFunc(c.IPAddresses, func(have net.IP) bool { return have.Equal(net.ParseIP(ip)) }) {
			t.Errorf("IP SANs %v lack %s", c.IPAddresses, ip)
		}
	}
	if slices.Contains(c.DNSNames, "10.0.0.7") || slices.Contains(c.DNSNames, "") {
		t.Errorf("IP or empty host as a DNS SAN: %v", c.DNSNames)
	}
	if life := c.NotAfter.Sub(time.Now()); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Fatalf("certificate valid for %v, want a year", life)
	}

	// Another CA's certificate does not verify against this one.
	otherPEM, otherKey, _ := NewCA(1)
	foreignPEM, _, err := NewCert(otherPEM, otherKey, "peer1", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, foreignPEM).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a certificate from another CA verified")
	}
	// A certificate cannot outlive its CA.
	longPEM, _, err := NewCert(otherPEM, otherKey, "p", nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if parseCert(t, longPEM).NotAfter.After(parseCert(t, otherPEM).NotAfter) {
		t.Fatal("certificate outlives its CA")
	}
}

func TestNewCertRejects(t *testing.T) {
	t.Parallel()
	caPEM, caKey, _ := NewCA(1)
	otherPEM, _, _ := NewCA(1)
	for name, f := range map[string]func() error{
		"path in name":   func() error { _, _, err := NewCert(caPEM, caKey, "../x", nil, 1); return err },
		"empty name":     func() error { _, _, err := NewCert(caPEM, caKey, "", nil, 1); return err },
		"zero days":      func() error { _, _, err := NewCert(caPEM, caKey, "p", nil, 0); return err },
		"mismatched key": func() error { _, _, err := NewCert(otherPEM, caKey, "p", nil, 1); return err },
		"CA zero days":   func() error { _, _, err := NewCA(0); return err },
		"not a CA as CA": func() error {
			c, k, _ := NewCert(caPEM, caKey, "p", nil, 1)
			_, _, err := NewCert(c, k, "q", nil, 1)
			return err
		},
		"garbage CA cert": func() error { _, _, err := NewCert([]byte("nope"), caKey, "p", nil, 1); return err },
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteFilesNeverOverwrites(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	caPath, caKeyPath, err := WriteCA(dir, 30)
	if err != nil {
		t.Fatal(err)
	}
	if caPath != filepath.Join(dir, "ca.pem") || caKeyPath != filepath.Join(dir, "ca-key.pem") {
		t.Fatalf("paths %s %s", caPath, caKeyPath)
	}
	certPath, keyPath, err := WriteCert(dir, "p1", []string{"192.0.2.1"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "p1.pem") || keyPath != filepath.Join(dir, "p1-key.pem") {
		t.Fatalf("paths %s %s", certPath, keyPath)
	}
	for _, p := range []string{caKeyPath, keyPath} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	caPEM, _ := os.ReadFile(caPath)
	certPEM, _ := os.ReadFile(certPath)
	pool := x509.NewCertPool()
	pool.AddCert(parseCert(t, caPEM))
	if _, err := parseCert(t, certPEM).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatal(err)
	}

	// Nothing is overwritten, and a refused call leaves the files as they were.
	if _, _, err := WriteCA(dir, 30); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second CA: %v", err)
	}
	if _, _, err := WriteCert(dir, "p1", nil, 10); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second p1: %v", err)
	}
	os.Remove(certPath) // the key alone is enough to refuse
	if _, _, err := WriteCert(dir, "p1", nil, 10); err == nil {
		t.Fatal("overwrote p1-key.pem")
	}
	if after, _ := os.ReadFile(caPath); string(after) != string(caPEM) {
		t.Fatal("CA certificate changed")
	}
	if _, _, err := WriteCert(dir, "ca", nil, 10); err == nil {
		t.Fatal(`a peer certificate named "ca" was written`)
	}
	if _, _, err := WriteCert(t.TempDir(), "p2", nil, 10); err == nil || !strings.Contains(err.Error(), "tls ca create") {
		t.Fatalf("no CA in dir: %v", err)
	}
}
