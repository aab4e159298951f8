package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
)

// serveBBB answers the BBB API for a frontend (named by the URL, or found by
// its secret when key is empty). rest is the path after /bigbluebutton/api.
func (s *Server) serveBBB(ctx *fasthttp.RequestCtx, key string, rest []byte) {
	ctx.SetContentType("text/xml; charset=utf-8")
	ctx.SetBody(bbb.FailedXML(bbb.KeyUnsupportedRequest, bbb.MsgUnsupportedRequest))
}
