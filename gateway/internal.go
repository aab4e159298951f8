package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/raftnode"
)

// serveInternal answers peer-to-peer calls. They need a peer (or admin)
// token, or, with no JWT secret configured, a loopback caller.
func (s *Server) serveInternal(ctx *fasthttp.RequestCtx, op string) {
	if !ctx.IsPost() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "invalid", "peer calls are POST")
		return
	}
	if _, ok := s.authorize(ctx, auth.ScopePeer); !ok {
		return
	}
	// Read within its bound, after the token: peers' calls are small, and
	// not gated per address (one peer forwards many creates at once).
	body, _, res := s.readBody(ctx, raftnode.MaxInternalBody, false)
	if res != bodyOK {
		writeBodyRefused(ctx, res, raftnode.MaxInternalBody)
		return
	}
	rctx, cancel := requestContext(15e9)
	defer cancel()
	status, resp := s.cluster.ServeInternal(rctx, op, body)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(resp)
}
