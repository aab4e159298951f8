// Package peertls is mutual TLS between Conclave peers: the cluster CA and
// this peer's certificate (Load), the tls.Configs both ends of a peer
// connection use, and listeners that complete the handshake off the accept
// loop (Listen for the Raft port, Split for the HTTP port, which also
// carries the public API in plain HTTP).
//
// A peer proves membership by a certificate that chains to the cluster CA;
// host names are not checked. Peers dial each other by whatever address was
// configured (IP, container name, DNS name), and a certificate made for one
// of them would fail the others. This is Consul's default
// (verify_server_hostname = false): the CA is private to the cluster, so a
// certificate it signed is a member, whatever it is called.
package peertls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is the cluster CA pool and this peer's certificate.
type Config struct {
	pool *x509.CertPool
	cert tls.Certificate
	leaf *x509.Certificate
	cas  []*x509.Certificate
}

// Load reads the CA bundle (one or more CA certificates, so a CA can be
// rotated), this peer's certificate and its key, and checks that they
// fit: the key matches the certificate, and the certificate is signed by a
// CA of the bundle, currently valid, and usable for server and client
// authentication. Errors name the file and the flag.
func Load(caFile, certFile, keyFile string) (*Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-key: %w", err)
	}
	c, err := New(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (--tls-ca %s, --tls-cert %s, --tls-key %s)", err, caFile, certFile, keyFile)
	}
	return c, nil
}

// New is Load from PEM bytes.
func New(caPEM, certPEM, keyPEM []byte) (*Config, error) {
	c := &Config{pool: x509.NewCertPool()}
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if !ca.IsCA {
			return nil, fmt.Errorf("CA bundle: %q is not a CA certificate", ca.Subject.CommonName)
		}
		c.pool.AddCert(ca)
		c.cas = append(c.cas, ca)
	}
	if len(c.cas) == 0 {
		return nil, errors.New("CA bundle holds no PEM certificate")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("peer certificate and key: %w", err)
	}
	c.cert = cert
	c.leaf = cert.Leaf
	if c.leaf == nil {
		if c.leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("peer certificate: %w", err)
		}
	}
	// Our own certificate must pass the checks the other peers make, for
	// both directions of a connection; say so now rather than at the first
	// handshake.
	chain := []*x509.Certificate{c.leaf}
	for _, raw := range cert.Certificate[1:] {
		ic, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("peer certificate chain: %w", err)
		}
		chain = append(chain, ic)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := c.verify(chain, usage); err != nil {
			return nil, fmt.Errorf("peer certificate %q does not verify against the CA bundle: %w", c.leaf.Subject.CommonName, err)
		}
	}
	return c, nil
}

// Subject is this peer's certificate's common name.
func (c *Config) Subject() string { return c.leaf.Subject.CommonName }

// NotAfter is when this peer's certificate expires.
func (c *Config) NotAfter() time.Time { return c.leaf.NotAfter }

// CAs names the CAs of the bundle, for the start-up log.
func (c *Config) CAs() string {
	names := make([]string, len(c.cas))
	for i, ca := range c.cas {
		names[i] = ca.Subject.CommonName
	}
	return strings.Join(names, ", ")
}

// verify checks a presented chain (leaf first) against the CA bundle.
func (c *Config) verify(certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// Server is the tls.Config of a peer's listeners: a client certificate
// signed by the cluster CA is required, TLS 1.3 only (every end is a
// Conclave peer).
func (c *Config) Server() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{c.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// Client is the tls.Config a peer dials others with: it presents this
// peer's certificate and verifies the other end's chain against the
// cluster CA. InsecureSkipVerify only turns off Go's built-in check, which
// would also match the dialled host name against the certificate (see the
// package comment for why names are not checked); VerifyConnection does
// the chain verification instead, so a server without a certificate from
// the cluster CA is refused.
func (c *Config) Client() *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{c.cert},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := c.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
				return fmt.Errorf("peer certificate not from the cluster CA: %w", err)
			}
			return nil
		},
		MinVersion: tls.VersionTLS13,
	}
}
