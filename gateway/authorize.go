package gateway

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
)

// authorize checks the bearer token for scope, writing 401/403 itself.
// With no JWT secret configured only loopback callers get in (as admin).
func (s *Server) authorize(ctx *fasthttp.RequestCtx, scope string) (*auth.Claims, bool) {
	if s.cfg.JWTSecret == "" {
		if ip := s.clientIP(ctx); ip != nil && ip.IsLoopback() {
			return &auth.Claims{Scope: auth.ScopeAdmin}, true
		}
		admin.WriteError(ctx, fasthttp.StatusForbidden, "forbidden", "admin API is closed: no JWT secret set and the caller is not on loopback")
		return nil, false
	}
	h := string(ctx.Request.Header.Peek("Authorization"))
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="conclave"`)
		admin.WriteError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "a bearer token is required")
		return nil, false
	}
	c, err := auth.Verify(s.cfg.JWTSecret, tok)
	if err != nil {
		admin.WriteError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "invalid token")
		return nil, false
	}
	if !c.HasScope(scope) {
		admin.WriteError(ctx, fasthttp.StatusForbidden, "forbidden", "token lacks scope "+scope)
		return nil, false
	}
	return c, true
}

func now() int64 { return time.Now().UnixNano() }

// adminRequests lends the admin API the gateway's request plumbing.
type adminRequests struct{ s *Server }

func (r adminRequests) Authorize(ctx *fasthttp.RequestCtx, scope string) (*auth.Claims, bool) {
	return r.s.authorize(ctx, scope)
}

func (adminRequests) HasBody(ctx *fasthttp.RequestCtx) bool { return guard.HasBody(ctx) }

func (r adminRequests) ReadBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, func(), bool) {
	body, hold, res := r.s.guard.ReadBody(ctx, limit, true)
	if res != guard.BodyOK {
		guard.WriteBodyRefused(ctx, res, limit)
		return nil, nil, false
	}
	return body, func() { r.s.guard.Release(&hold) }, true
}

func (r adminRequests) RefuseUnread(ctx *fasthttp.RequestCtx) {
	r.s.guard.Refuse(ctx, guard.ReasonUnsigned)
}
