package guard

import "github.com/valyala/fasthttp"

// PublicBase is the scheme and host the client used to reach the cluster
// (https://bbb.example.org), for URLs written into answers, such as
// central recordings' playback links. A trusted proxy's X-Forwarded-Proto
// and X-Forwarded-Host win over the connection's own; a host that is not a
// plain host[:port] (it is the client's to write) gives false, so nothing
// a client sends can break the XML the URL lands in.
func (g *Guard) PublicBase(ctx *fasthttp.RequestCtx) (string, bool) {
	scheme, host := "http", ctx.Request.Header.Host()
	if ctx.IsTLS() {
		scheme = "https"
	}
	if g.cfg.ReverseProxy && g.trustedProxy(remoteAddr(ctx)) {
		switch string(ctx.Request.Header.Peek("X-Forwarded-Proto")) {
		case "https":
			scheme = "https"
		case "http":
			scheme = "http"
		}
		if h := ctx.Request.Header.Peek("X-Forwarded-Host"); len(h) > 0 {
			host = h
		}
	}
	if !plainHost(host) {
		return "", false
	}
	return scheme + "://" + string(host), true
}

// plainHost accepts a DNS name, an IPv4 address or a bracketed IPv6
// address, with an optional port: letters, digits and . - : [ ] only.
func plainHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}
