package raftadapt

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/internal/peertls"
)

// tlsStream is raft's StreamLayer under mutual TLS: the listener hands
// raft only connections whose handshake presented a certificate from the
// cluster CA (peertls.Listen), and Dial presents this peer's certificate
// and verifies the other end's chain against the same CA.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	// The timeout covers the TCP connect and the handshake together.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	return d.DialContext(ctx, "tcp", string(address))
}

// NewTLSTransport is raft.NewTCPTransportWithLogger with the TLS stream
// layer: the same pool size and I/O timeout.
func NewTLSTransport(bind string, advertise *net.TCPAddr, tc *peertls.Config, hl hclog.Logger, log *slog.Logger) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise.IP == nil || advertise.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %s is not advertisable", advertise)
	}
	stream := &tlsStream{
		Listener:  peertls.Listen(ln, tc, log.With("component", "raft-tls")),
		advertise: advertise,
		client:    tc.Client(),
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 5, Timeout: 10 * time.Second, Logger: hl,
	}), nil
}
