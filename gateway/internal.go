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
	body := ctx.PostBody()
	if len(body) > raftnode.MaxInternalBody {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "invalid", "body too large")
		return
	}
	rctx, cancel := requestContext(15e9)
	defer cancel()
	status, resp := s.cluster.ServeInternal(rctx, op, body)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(resp)
}
