package gateway

import (
	"bytes"
	"fmt"
	"runtime/debug"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/admin"
)

// keyInternalError is the messageKey of a BBB call that failed inside the
// gateway. bbb-web has no key of its own for this: an unexpected exception
// there ends in Grails' "500" URL mapping (an error page, HTTP 500).
const keyInternalError = "internalError"

// recoverRequest is deferred by Handle: a panic in any handler becomes an
// error answer, one log line with the stack, and a count in
// conclave_panics_total, and the peer goes on serving.
func (s *Server) recoverRequest(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	s.guard.Panics.Inc()
	// Never the query or the body: they carry checksums and passwords.
	s.log.Error("panic while serving a request; answered with an error, peer keeps serving",
		"panic", fmt.Sprint(v), "method", string(ctx.Method()), "path", string(ctx.Path()),
		"stack", string(debug.Stack()))
	ctx.Response.Reset()
	// The handler may have left the request body half read: do not reuse
	// the connection.
	ctx.SetConnectionClose()
	if isBBBPath(ctx.Path()) {
		// bbb-web answers an unexpected exception with HTTP 500 (its "500"
		// URL mapping), not 200 with a FAILED envelope: a 500 tells the
		// client and any proxy that the server failed, not the request, and
		// is what clients already see from BBB in that case. The body is
		// still BBB's XML envelope, so a client that parses it anyway reads
		// returncode FAILED and a messageKey instead of an HTML page.
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetContentType("text/xml; charset=utf-8")
		ctx.SetBody(bbb.FailedXML(keyInternalError, "An internal error occurred. The request was not completed; please retry."))
		return
	}
	admin.WriteError(ctx, fasthttp.StatusInternalServerError, "internal", "internal error: the request was not completed")
}

func isBBBPath(path []byte) bool {
	return bytes.HasPrefix(path, prefixBBB) || bytes.HasPrefix(path, prefixTenant)
}
