package gateway

import (
	"bytes"
	"context"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/internal/peertls"
)

// Under mutual TLS (Config.PeerTLS) the HTTP port carries two protocols:
// peertls.Split sends connections that open with a TLS handshake, and
// present a certificate from the cluster CA, to a second fasthttp server
// that answers only the peer-to-peer routes; everything else reaches the
// public server as before. Peer routes arriving in plain HTTP are refused
// (serveInternal). The split reads one byte per connection, in the
// connection's own goroutine; requests pay nothing.

// newPeerServer is the server of the TLS side: the public server's
// settings (limits, timeouts, graceful stop), the peer routes only.
func (s *Server) newPeerServer() *fasthttp.Server {
	pub := s.srv
	return &fasthttp.Server{
		Handler:                      s.handlePeer,
		Name:                         pub.Name,
		MaxRequestBodySize:           pub.MaxRequestBodySize,
		StreamRequestBody:            pub.StreamRequestBody,
		DisablePreParseMultipartForm: pub.DisablePreParseMultipartForm,
		ReadBufferSize:               pub.ReadBufferSize,
		ReadTimeout:                  pub.ReadTimeout,
		WriteTimeout:                 pub.WriteTimeout,
		IdleTimeout:                  pub.IdleTimeout,
		Logger:                       pub.Logger,
		CloseOnShutdown:              pub.CloseOnShutdown,
	}
}

// handlePeer serves a request that came over mutual TLS: peer routes go
// through Handle like any request (draining, recovery), others get 404.
func (s *Server) handlePeer(ctx *fasthttp.RequestCtx) {
	if !bytes.HasPrefix(ctx.Path(), prefixInternal) {
		admin.WriteError(ctx, fasthttp.StatusNotFound, "not_found", "only peer-to-peer routes are served over peer TLS")
		return
	}
	s.Handle(ctx)
}

// servePeerTLS serves ln split into its plain and TLS sides until Shutdown.
func (s *Server) servePeerTLS(ln net.Listener, tc *peertls.Config) error {
	plain, secure := peertls.Split(ln, tc, s.log.With("component", "peer-tls"))
	peerErr := make(chan error, 1)
	go func() { peerErr <- s.peerSrv.Serve(secure) }()
	err := s.srv.Serve(s.paced(plain))
	secure.Close()
	if perr := <-peerErr; err == nil {
		err = perr
	}
	return err
}

// shutdownBoth stops the public and the peer server together: each waits
// for its open connections in 100 ms steps, and one after the other would
// add a step to every stop.
func (s *Server) shutdownBoth(ctx context.Context) error {
	peerErr := make(chan error, 1)
	go func() { peerErr <- s.peerSrv.ShutdownWithContext(ctx) }()
	err := s.srv.ShutdownWithContext(ctx)
	if perr := <-peerErr; err == nil {
		err = perr
	}
	return err
}
