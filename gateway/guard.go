package gateway

// The HTTP path's defences: no panic stops the peer, X-Forwarded-For is
// believed only from trusted proxies, and a request body is read only after
// the request has proved it may send one (checksum, token), within a size
// bound, a per-client count and a global budget.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/admin"
)

// Request-path limits.
const (
	// readBufferSize bounds the request line plus headers. BBB behind
	// nginx takes 8 KB; the official PHP client's create URLs reach 5 KB.
	readBufferSize = 20 << 10
	// maxBodiesPerClient bounds the requests with a body one client
	// address may have in flight (being read or held) at once; it may also
	// hold at most half of the byte budget (newBodyGate).
	maxBodiesPerClient = 8
	// smallBody: bodies up to this size (admin JSON, an LMS's XML slides
	// list) count against the byte budgets only, so a client's parallel
	// small writes are not refused; larger ones count against
	// maxBodiesPerClient too.
	smallBody = 64 << 10
	// minBodyBudget is the least global budget of body bytes in flight.
	minBodyBudget = 16 << 20
	// retryAfter is the Retry-After (seconds) of a request refused as busy.
	retryAfter = "2"
)

// Reasons a request was refused before its body was read (metric label).
const (
	reasonTooLarge = "too_large"
	reasonBusy     = "busy"
	reasonUnsigned = "unsigned"
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
	s.guard.panics.Inc()
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

// ParseTrustedProxies reads a comma-separated list of CIDRs; a plain
// address counts as /32 (IPv4) or /128 (IPv6).
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", f)
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", f)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// loopbackProxies are believed in reverse-proxy mode when no trusted
// proxies are configured: a proxy on the same host.
var loopbackProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr is the connection's peer address (IPv4 unmapped).
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// clientAddr is the caller's address. X-Forwarded-For is believed only in
// reverse-proxy mode and only when the connection comes from a trusted
// proxy; then, as nginx's real_ip_recursive does, the answer is the
// right-most address that is not itself a trusted proxy (entries to its
// left were written by the client and prove nothing).
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	cur := remoteAddr(ctx)
	if !s.cfg.ReverseProxy || !s.trustedProxy(cur) {
		return cur
	}
	hdrs := ctx.Request.Header.PeekAll("X-Forwarded-For")
	for i := len(hdrs) - 1; i >= 0; i-- {
		h := hdrs[i]
		for len(h) > 0 {
			j := bytes.LastIndexByte(h, ',')
			entry := bytes.TrimSpace(h[j+1:])
			h = h[:max(j, 0)]
			if len(entry) == 0 {
				continue
			}
			a, ok := parseForwardedAddr(string(entry))
			if !ok {
				// A trusted proxy does not write garbage: it came from the
				// client. The last address vouched for is the answer.
				return cur
			}
			cur = a
			if !s.trustedProxy(a) {
				return a
			}
		}
	}
	return cur
}

// parseForwardedAddr reads one X-Forwarded-For entry: an address, or an
// address with a port as some proxies write it.
func parseForwardedAddr(e string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(e); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(e); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// bodyGate bounds the request bodies in flight: per client address (a
// count and bytes), and in bytes over all clients. A body holds its place
// from before it is read until its request has been answered; a body of
// unknown length (chunked) holds the most it may grow to.
type bodyGate struct {
	lingering      atomic.Int32 // connections in lingerClose
	mu             sync.Mutex
	perClient      map[netip.Addr]clientBodies
	bytes          int64
	maxBytes       int64
	maxClient      int
	maxClientBytes int64
}

type clientBodies struct {
	n     int
	bytes int64
}

// newBodyGate: one client may hold half of the byte budget (the server
// makes it at least two of the largest bodies), so one client alone cannot
// take it all.
func newBodyGate(maxBytes int64, perClient int) *bodyGate {
	return &bodyGate{perClient: map[netip.Addr]clientBodies{}, maxBytes: maxBytes, maxClient: perClient, maxClientBytes: maxBytes / 2}
}

// bodyHold is a place taken in the gate; the zero value holds nothing.
type bodyHold struct {
	addr netip.Addr
	n    int64
	held bool
}

func (g *bodyGate) acquire(addr netip.Addr, n int64) (bodyHold, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.perClient[addr]
	large := n > smallBody
	if large && c.n >= g.maxClient || c.bytes+n > g.maxClientBytes || g.bytes+n > g.maxBytes {
		return bodyHold{}, false
	}
	if large {
		c.n++
	}
	c.bytes += n
	g.perClient[addr] = c
	g.bytes += n
	return bodyHold{addr: addr, n: n, held: true}, true
}

// inFlight is how many large bodies addr has in flight.
func (g *bodyGate) inFlight(addr netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perClient[addr].n
}

func (g *bodyGate) release(h *bodyHold) {
	if !h.held {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.perClient[h.addr]
	if h.n > smallBody {
		c.n--
	}
	if c.bytes -= h.n; c.bytes <= 0 && c.n <= 0 {
		delete(g.perClient, h.addr)
	} else {
		g.perClient[h.addr] = c
	}
	g.bytes -= h.n
	*h = bodyHold{}
}

// bodyResult says why readBody gave no body.
type bodyResult int

const (
	bodyOK       bodyResult = iota
	bodyTooLarge            // over the limit (declared, or counted while reading)
	bodyBusy                // the client, or all clients together, have too many bodies in flight
	bodyBroken              // the client stopped sending, or sent a malformed chunked body
)

var errBodyTooLarge = errors.New("request body too large")

// hasBody reports whether the request announces a body (a length, or
// chunked encoding), or, built in memory rather than read from a
// connection (tests, fuzzing), has one.
func hasBody(ctx *fasthttp.RequestCtx) bool {
	return bodyLength(ctx) != 0
}

// bodyLength is the declared body length, -1 for chunked. It never reads
// a streamed body.
func bodyLength(ctx *fasthttp.RequestCtx) int {
	if ctx.RequestBodyStream() == nil { // the body, if any, is in memory
		return len(ctx.Request.Body())
	}
	return ctx.Request.Header.ContentLength()
}

// readBody reads the request body, at most limit bytes, into a buffer of
// its own (not fasthttp's pooled one, which would keep a large body's
// memory after the request). With gated, the body takes a place in the
// gate first, released with the returned hold once the request is over.
// A body that is refused is left unread and the connection is closed.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, limit int, gated bool) ([]byte, bodyHold, bodyResult) {
	cl := bodyLength(ctx) // -1: chunked
	if cl == 0 {
		return nil, bodyHold{}, bodyOK
	}
	if cl > limit {
		s.refuse(ctx, reasonTooLarge)
		return nil, bodyHold{}, bodyTooLarge
	}
	var hold bodyHold
	if gated {
		reserve := int64(cl)
		if cl < 0 {
			reserve = int64(limit)
		}
		var ok bool
		if hold, ok = s.gate.acquire(s.clientAddr(ctx), reserve); !ok {
			s.refuse(ctx, reasonBusy)
			return nil, bodyHold{}, bodyBusy
		}
	}
	body, err := readLimited(ctx, cl, limit)
	if err != nil {
		s.gate.release(&hold)
		if errors.Is(err, errBodyTooLarge) { // counted while reading: the client may still be sending
			s.refuse(ctx, reasonTooLarge)
			return nil, bodyHold{}, bodyTooLarge
		}
		ctx.SetConnectionClose()
		return nil, bodyHold{}, bodyBroken
	}
	return body, hold, bodyOK
}

// refuse counts a request refused before its body was read; its
// connection is closed after the answer, so the unread body is never
// taken in (lingerClose).
func (s *Server) refuse(ctx *fasthttp.RequestCtx, reason string) {
	s.guard.refused.WithLabelValues(reason).Inc()
	s.lingerClose(ctx)
}

// Lingering close of refused connections.
const (
	lingerTime   = 5 * time.Second
	lingerBytes  = 64 << 20
	maxLingering = 512
)

// lingerClose ends the connection once the answer is written, as nginx's
// lingering close does: closing a socket with unread data makes the kernel
// reset the connection, and a client still sending its body (most do
// before they read) would get the reset instead of the answer. So the
// answer is written, the connection half-closed, and what the client still
// sends is read and dropped (never kept: a small buffer) for at most
// lingerTime and lingerBytes, before it is closed. Past maxLingering
// connections at once, the connection is just closed.
func (s *Server) lingerClose(ctx *fasthttp.RequestCtx) {
	if s.gate.lingering.Add(1) > maxLingering {
		s.gate.lingering.Add(-1)
		ctx.SetConnectionClose()
		return
	}
	raw := ctx.Conn()
	// The hijack runs after the answer is written; the server closes the
	// connection when it returns.
	ctx.Hijack(func(c net.Conn) {
		defer s.gate.lingering.Add(-1)
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c, lingerBytes) // io.Discard reads into a small pooled buffer
	})
}

// readLimited reads a body of declared length cl (-1: unknown) of at most
// limit bytes from the request's stream.
func readLimited(ctx *fasthttp.RequestCtx, cl, limit int) ([]byte, error) {
	stream := ctx.RequestBodyStream()
	if stream == nil { // not served with streaming (tests build requests by hand)
		b := ctx.Request.Body()
		if len(b) > limit {
			return nil, errBodyTooLarge
		}
		return append([]byte(nil), b...), nil
	}
	if cl >= 0 {
		buf := make([]byte, cl)
		if _, err := io.ReadFull(stream, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf := make([]byte, 0, min(limit+1, 64<<10))
	for {
		if len(buf) == cap(buf) { // grow, never past limit+1 (enough to see it is over)
			nb := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(nb, buf)
			buf = nb
		}
		n, err := stream.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// maxCallbackBody bounds the body of a BBB callback relayed by the peer.
const maxCallbackBody = 64 << 10

// withBody reads the request body within limit (gated), makes it the
// request's body in memory, and runs fn; a refused body is answered as
// JSON and fn does not run.
func (s *Server) withBody(ctx *fasthttp.RequestCtx, limit int, fn func()) {
	if !hasBody(ctx) {
		fn()
		return
	}
	body, hold, res := s.readBody(ctx, limit, true)
	defer s.gate.release(&hold)
	if res != bodyOK {
		writeBodyRefused(ctx, res, limit)
		return
	}
	if ctx.RequestBodyStream() != nil {
		ctx.Request.SetBody(body) // the stream is consumed; parsers read this copy
	}
	fn()
}

// noBody refuses, unread, a body sent to a route that takes none (and
// whose handler would read it whole).
func (s *Server) noBody(ctx *fasthttp.RequestCtx) bool {
	if !hasBody(ctx) {
		return true
	}
	s.refuse(ctx, reasonTooLarge)
	admin.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "this route takes no request body")
	return false
}

// writeBusy answers a request refused because too many bodies are in
// flight: 503 with Retry-After (admin API, peer calls).
func writeBusy(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Retry-After", retryAfter)
	admin.WriteError(ctx, fasthttp.StatusServiceUnavailable, "busy", "too many requests with a body in flight from this address; retry in "+retryAfter+" s")
}

// writeBodyRefused answers a body readBody refused, as JSON (admin API and
// peer calls).
func writeBodyRefused(ctx *fasthttp.RequestCtx, res bodyResult, limit int) {
	switch res {
	case bodyTooLarge:
		admin.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "request body over the limit of "+strconv.Itoa(limit)+" bytes")
	case bodyBusy:
		writeBusy(ctx)
	default:
		admin.WriteError(ctx, fasthttp.StatusBadRequest, "invalid", "the request body could not be read")
	}
}
