package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
	"github.com/conclave-lb/conclave/raftnode"
)

// serveInternal answers peer-to-peer calls. They need a peer (or admin)
// token, or, with no JWT secret configured, a loopback caller. Under peer
// TLS they must also arrive over mutual TLS (the peer server only hands
// over connections with a certificate from the cluster CA); with no JWT
// secret that certificate is the credential.
func (s *Server) serveInternal(ctx *fasthttp.RequestCtx, op string) {
	if s.cfg.PeerTLS != nil && !ctx.IsTLS() {
		admin.WriteError(ctx, fasthttp.StatusForbidden, "forbidden", "peer calls need mutual TLS with a certificate from the cluster CA")
		return
	}
	if !ctx.IsPost() {
		admin.WriteError(ctx, fasthttp.StatusMethodNotAllowed, "invalid", "peer calls are POST")
		return
	}
	if !(ctx.IsTLS() && s.cfg.JWTSecret == "") {
		if _, ok := s.authorize(ctx, auth.ScopePeer); !ok {
			return
		}
	}
	// Read within its bound, after the token: peers' calls are small, and
	// not gated per address (one peer forwards many creates at once).
	body, _, res := s.guard.ReadBody(ctx, raftnode.MaxInternalBody, false)
	if res != guard.BodyOK {
		guard.WriteBodyRefused(ctx, res, raftnode.MaxInternalBody)
		return
	}
	rctx, cancel := requestContext(15e9)
	defer cancel()
	status, resp := s.cluster.ServeInternal(rctx, op, body)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(resp)
}
