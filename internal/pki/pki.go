// Package pki makes the certificates of a Conclave cluster: a cluster CA
// and, signed by it, one certificate per peer, as `consul tls ca create` and
// `consul tls cert create` do. Keys are ECDSA P-256; peer certificates are
// good for both ends of a connection (server and client auth), since every
// peer dials and is dialled.
//
// conclavectl's `tls` commands and the tests use it; conclaved only loads
// what it wrote (package peertls).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Default validity periods, in days.
const (
	DefaultCADays   = 5 * 365
	DefaultCertDays = 365
)

// File names in a PKI directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CertFile and KeyFile are the file names of peer name's certificate and key.
func CertFile(name string) string { return name + ".pem" }
func KeyFile(name string) string  { return name + "-key.pem" }

// clockSkew backdates NotBefore, so a peer whose clock is a little behind
// the machine that made the certificate still accepts it.
const clockSkew = 5 * time.Minute

// NewCA makes a self-signed CA valid for days days. It returns the PEM
// encoded certificate and private key.
func NewCA(days int) (certPEM, keyPEM []byte, err error) {
	if days <= 0 {
		return nil, nil, fmt.Errorf("validity must be at least one day, not %d", days)
	}
	key, serial, ski, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial in the name tells two CAs apart in a bundle while one
		// replaces the other.
		Subject:               pkix.Name{CommonName: "Conclave CA " + fmt.Sprintf("%032x", serial)[:12], Organization: []string{"Conclave"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(time.Duration(days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	return issue(tmpl, tmpl, key, key)
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// NewCert makes a peer certificate signed by the CA (its PEM certificate
// and key), valid for days days. name is the certificate's common name and,
// being a host name too, a DNS SAN; hosts are further SANs (IP addresses
// become IP SANs). localhost, 127.0.0.1 and ::1 are always included.
func NewCert(caCertPEM, caKeyPEM []byte, name string, hosts []string, days int) (certPEM, keyPEM []byte, err error) {
	if !validName.MatchString(name) {
		return nil, nil, fmt.Errorf("certificate name %q: use letters, digits, '.', '_' and '-' (it names the files too)", name)
	}
	if days <= 0 {
		return nil, nil, fmt.Errorf("validity must be at least one day, not %d", days)
	}
	ca, caKey, err := ParseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, serial, ski, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(time.Duration(days) * 24 * time.Hour)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter // a certificate cannot outlive its CA
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Conclave"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		SubjectKeyId: ski,
	}
	addSAN(tmpl, name)
	for _, h := range append(hosts, "localhost", "127.0.0.1", "::1") {
		if h = strings.TrimSpace(h); h != "" {
			addSAN(tmpl, h)
		}
	}
	return issue(tmpl, ca, key, caKey)
}

// issue signs tmpl (for key) with the parent's signer, and returns the
// certificate and key PEM encoded.
func issue(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// addSAN adds h as an IP or DNS SAN, once.
func addSAN(c *x509.Certificate, h string) {
	if ip := net.ParseIP(h); ip != nil {
		for _, have := range c.IPAddresses {
			if have.Equal(ip) {
				return
			}
		}
		c.IPAddresses = append(c.IPAddresses, ip)
		return
	}
	for _, have := range c.DNSNames {
		if strings.EqualFold(have, h) {
			return
		}
	}
	c.DNSNames = append(c.DNSNames, h)
}

// ParseCA decodes a CA certificate and its private key, and checks that
// they belong together and that the certificate is a CA.
func ParseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("CA certificate: not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(kb.Bytes); err2 == nil {
			k = ek
		} else {
			return nil, nil, fmt.Errorf("CA key: %w", err)
		}
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("CA key: %T, want ECDSA", k)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("CA key does not match the CA certificate")
	}
	return cert, key, nil
}

// WriteCA makes a CA in dir (created if missing): ca.pem and ca-key.pem.
// Existing files are never overwritten. It returns the two paths.
func WriteCA(dir string, days int) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := NewCA(days)
	if err != nil {
		return "", "", err
	}
	return certPath, keyPath, writePair(dir, certPath, certPEM, keyPath, keyPEM)
}

// WriteCert makes peer name's certificate in dir, signed by the CA in the
// same dir: <name>.pem and <name>-key.pem. Existing files are never
// overwritten. It returns the two paths.
func WriteCert(dir, name string, hosts []string, days int) (certPath, keyPath string, err error) {
	if !validName.MatchString(name) {
		return "", "", fmt.Errorf("certificate name %q: use letters, digits, '.', '_' and '-' (it names the files too)", name)
	}
	if name == "ca" {
		return "", "", errors.New(`"ca" is the CA's own name; choose another certificate name`)
	}
	certPath, keyPath = filepath.Join(dir, CertFile(name)), filepath.Join(dir, KeyFile(name))
	if err := refuseExisting(certPath, keyPath); err != nil {
		return "", "", err
	}
	caCert, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return "", "", fmt.Errorf("reading the CA (make one with `conclavectl tls ca create`): %w", err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return "", "", fmt.Errorf("reading the CA key: %w", err)
	}
	certPEM, keyPEM, err := NewCert(caCert, caKey, name, hosts, days)
	if err != nil {
		return "", "", err
	}
	return certPath, keyPath, writePair(dir, certPath, certPEM, keyPath, keyPEM)
}

func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists already: refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes the key (0600) and the certificate (0644), each only if
// the file does not exist yet; a failure removes what this call wrote.
func writePair(dir, certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists already: refusing to overwrite it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// newKey makes a P-256 key with what its certificate needs: a random
// serial and the key's subject key ID.
func newKey() (key *ecdsa.PrivateKey, serial *big.Int, ski []byte, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, nil, nil, err
	}
	if serial, err = newSerial(); err != nil {
		return nil, nil, nil, err
	}
	ski, err = keyID(&key.PublicKey)
	return key, serial, ski, err
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// keyID is the subject key identifier: SHA-1 of the public key (RFC 5280
// method 1).
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha1.Sum(der)
	return h[:], nil
}
