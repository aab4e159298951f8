package guard

import (
	"fmt"
	"net/url"

	"github.com/valyala/fasthttp"
)

// ParsePublicURL checks a configured public URL: http or https, a plain
// host[:port], nothing after it (a trailing slash is dropped).
func ParsePublicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !plainHost([]byte(u.Host)) ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: want http(s)://host[:port], nothing after it", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// PublicBase is the scheme and host the client used to reach the cluster
// (https://bbb.example.org), for URLs written into answers, such as
// central recordings' playback links: the configured public URL when
// there is one (an LMS may call the cluster by an internal name its users'
// browsers cannot reach), else the request's. A trusted proxy's
// X-Forwarded-Proto and X-Forwarded-Host win over the connection's own; a
// host that is not a plain host[:port] (it is the client's to write) gives
// false, so nothing a client sends can break the XML the URL lands in.
func (g *Guard) PublicBase(ctx *fasthttp.RequestCtx) (string, bool) {
	if g.cfg.PublicURL != "" {
		return g.cfg.PublicURL, true
	}
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
