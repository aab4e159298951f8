package main

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/conclave-lb/conclave/internal/peertls"
)

// tlsOptions are the mutual-TLS flags between peers.
type tlsOptions struct {
	ca, cert, key     string
	insecureTransport bool
}

func addTLSFlags(f *pflag.FlagSet, o *tlsOptions) {
	f.StringVar(&o.ca, "tls-ca", "", "PEM file of the cluster CA (several CA certificates allowed, to rotate the CA); with --tls-cert and --tls-key, Raft and peer-to-peer calls use mutual TLS")
	f.StringVar(&o.cert, "tls-cert", "", "PEM file of this peer's certificate, signed by the cluster CA (conclavectl tls cert create)")
	f.StringVar(&o.key, "tls-key", "", "PEM file of this peer's private key")
	f.BoolVar(&o.insecureTransport, "insecure-transport", false, "allow plain (unauthenticated) Raft and peer traffic on a non-loopback address")
}

// peerTLS loads the peers' mutual-TLS configuration, or returns nil when
// none is given. Without TLS a peer whose Raft address is not on loopback
// does not start, unless --insecure-transport says so: anyone who reaches
// a plain Raft port can rewrite the cluster's state.
func (o tlsOptions) peerTLS(raftBind, raftAdvertise string, log *slog.Logger) (*peertls.Config, error) {
	set := 0
	for _, v := range []string{o.ca, o.cert, o.key} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return nil, fmt.Errorf("--tls-ca, --tls-cert and --tls-key go together: give all three (or none, on loopback)")
	}
	if set == 3 {
		c, err := peertls.Load(o.ca, o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		if o.insecureTransport {
			log.Warn("--insecure-transport is ignored: peer TLS is configured")
		}
		log.Info("peer TLS on: Raft and peer calls need a certificate from the cluster CA",
			"ca", o.ca, "ca_subjects", c.CAs(), "cert", o.cert, "subject", c.Subject(), "expires", c.NotAfter().UTC().Format("2006-01-02"))
		if left := time.Until(c.NotAfter()); left < 30*24*time.Hour {
			log.Warn("this peer's certificate expires soon: make a new one and restart the peer with it",
				"cert", o.cert, "expires", c.NotAfter().UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
		}
		return c, nil
	}
	for _, addr := range []string{raftBind, raftAdvertise} {
		if isLoopback(addr) {
			continue
		}
		if !o.insecureTransport {
			return nil, fmt.Errorf("raft address %s is not loopback: peers need mutual TLS (--tls-ca, --tls-cert, --tls-key; make them with `conclavectl tls ca create` and `conclavectl tls cert create`), or --insecure-transport to run plain Raft and peer traffic anyway", addr)
		}
		log.Warn("insecure transport: Raft and peer calls are plain TCP on a non-loopback address; anyone who reaches the Raft port can change the cluster", "raft", addr)
		return nil, nil
	}
	return nil, nil
}

// isLoopback reports whether host:port names a loopback address.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
