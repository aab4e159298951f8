// Package guard holds the HTTP path's defences, shared by every route of
// a peer: the body gate, X-Forwarded-For from trusted proxies only, the
// lingering close of refused connections, and their metrics.
package guard

// The HTTP path's defences: no panic stops the peer, X-Forwarded-For is
// believed only from trusted proxies, and a request body is read only after
// the request has proved it may send one (checksum, token), within a size
// bound, a per-client count and a global budget.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/gateway/admin"
)

// Request-path limits.
const (
	// ReadBufferSize bounds the request line plus headers. BBB behind
	// nginx takes 8 KB; the official PHP client's create URLs reach 5 KB.
	ReadBufferSize = 20 << 10
	// MaxBodiesPerClient bounds the requests with a body one client
	// address may have in flight (being read or held) at once; it may also
	// hold at most half of the byte budget (newBodyGate).
	MaxBodiesPerClient = 8
	// SmallBody: bodies up to this size (admin JSON, an LMS's XML slides
	// list) count against the byte budgets only, so a client's parallel
	// small writes are not refused; larger ones count against
	// MaxBodiesPerClient too.
	SmallBody = 64 << 10
	// MinBodyBudget is the least global budget of body bytes in flight.
	MinBodyBudget = 16 << 20
	// RetryAfter is the Retry-After (seconds) of a request refused as busy.
	RetryAfter = "2"
)

// Reasons a request was refused before its body was read (metric label).
const (
	ReasonTooLarge = "too_large"
	ReasonBusy     = "busy"
	ReasonUnsigned = "unsigned"
)

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

func (g *Guard) trustedProxy(a netip.Addr) bool {
	for _, p := range g.trusted {
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

// ClientAddr is the caller's address. X-Forwarded-For is believed only in
// reverse-proxy mode and only when the connection comes from a trusted
// proxy; then, as nginx's real_ip_recursive does, the answer is the
// right-most address that is not itself a trusted proxy (entries to its
// left were written by the client and prove nothing).
func (g *Guard) ClientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	cur := remoteAddr(ctx)
	if !g.cfg.ReverseProxy || !g.trustedProxy(cur) {
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
			if !g.trustedProxy(a) {
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

// Hold is a place taken in the gate; the zero value holds nothing.
type Hold struct {
	addr netip.Addr
	n    int64
	held bool
}

func (g *bodyGate) acquire(addr netip.Addr, n int64) (Hold, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.perClient[addr]
	large := n > SmallBody
	if large && c.n >= g.maxClient || c.bytes+n > g.maxClientBytes || g.bytes+n > g.maxBytes {
		return Hold{}, false
	}
	if large {
		c.n++
	}
	c.bytes += n
	g.perClient[addr] = c
	g.bytes += n
	return Hold{addr: addr, n: n, held: true}, true
}

// inFlight is how many large bodies addr has in flight.
func (g *bodyGate) inFlight(addr netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perClient[addr].n
}

func (g *bodyGate) release(h *Hold) {
	if !h.held {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.perClient[h.addr]
	if h.n > SmallBody {
		c.n--
	}
	if c.bytes -= h.n; c.bytes <= 0 && c.n <= 0 {
		delete(g.perClient, h.addr)
	} else {
		g.perClient[h.addr] = c
	}
	g.bytes -= h.n
	*h = Hold{}
}

// Result says why readBody gave no body.
type Result int

const (
	BodyOK       Result = iota
	BodyTooLarge        // over the limit (declared, or counted while reading)
	BodyBusy            // the client, or all clients together, have too many bodies in flight
	BodyBroken          // the client stopped sending, or sent a malformed chunked body
)

var errBodyTooLarge = errors.New("request body too large")

// HasBody reports whether the request announces a body (a length, or
// chunked encoding), or, built in memory rather than read from a
// connection (tests, fuzzing), has one.
func HasBody(ctx *fasthttp.RequestCtx) bool {
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

// ReadBody reads the request body, at most limit bytes, into a buffer of
// its own (not fasthttp's pooled one, which would keep a large body's
// memory after the request). With gated, the body takes a place in the
// gate first, released with the returned hold once the request is over.
// A body that is refused is left unread and the connection is closed.
func (g *Guard) ReadBody(ctx *fasthttp.RequestCtx, limit int, gated bool) ([]byte, Hold, Result) {
	cl := bodyLength(ctx) // -1: chunked
	if cl == 0 {
		return nil, Hold{}, BodyOK
	}
	if cl > limit {
		g.Refuse(ctx, ReasonTooLarge)
		return nil, Hold{}, BodyTooLarge
	}
	var hold Hold
	if gated {
		reserve := int64(cl)
		if cl < 0 {
			reserve = int64(limit)
		}
		var ok bool
		if hold, ok = g.gate.acquire(g.ClientAddr(ctx), reserve); !ok {
			g.Refuse(ctx, ReasonBusy)
			return nil, Hold{}, BodyBusy
		}
	}
	body, err := readLimited(ctx, cl, limit)
	if err != nil {
		g.gate.release(&hold)
		if errors.Is(err, errBodyTooLarge) { // counted while reading: the client may still be sending
			g.Refuse(ctx, ReasonTooLarge)
			return nil, Hold{}, BodyTooLarge
		}
		ctx.SetConnectionClose()
		return nil, Hold{}, BodyBroken
	}
	return body, hold, BodyOK
}

// Refuse counts a request refused before its body was read; its
// connection is closed after the answer, so the unread body is never
// taken in (lingerClose).
func (g *Guard) Refuse(ctx *fasthttp.RequestCtx, reason string) {
	g.Refused.WithLabelValues(reason).Inc()
	g.lingerClose(ctx)
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
func (g *Guard) lingerClose(ctx *fasthttp.RequestCtx) {
	if g.gate.lingering.Add(1) > maxLingering {
		g.gate.lingering.Add(-1)
		ctx.SetConnectionClose()
		return
	}
	raw := ctx.Conn()
	// The hijack runs after the answer is written; the server closes the
	// connection when it returns.
	ctx.Hijack(func(c net.Conn) {
		defer g.gate.lingering.Add(-1)
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

// WithBody reads the request body within limit (gated), makes it the
// request's body in memory, and runs fn; a refused body is answered as
// JSON and fn does not run.
func (g *Guard) WithBody(ctx *fasthttp.RequestCtx, limit int, fn func()) {
	if !HasBody(ctx) {
		fn()
		return
	}
	body, hold, res := g.ReadBody(ctx, limit, true)
	defer g.gate.release(&hold)
	if res != BodyOK {
		WriteBodyRefused(ctx, res, limit)
		return
	}
	if ctx.RequestBodyStream() != nil {
		ctx.Request.SetBody(body) // the stream is consumed; parsers read this copy
	}
	fn()
}

// NoBody refuses, unread, a body sent to a route that takes none (and
// whose handler would read it whole).
func (g *Guard) NoBody(ctx *fasthttp.RequestCtx) bool {
	if !HasBody(ctx) {
		return true
	}
	g.Refuse(ctx, ReasonTooLarge)
	admin.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "this route takes no request body")
	return false
}

// WriteBusy answers a request refused because too many bodies are in
// flight: 503 with Retry-After (admin API, peer calls).
func WriteBusy(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Retry-After", RetryAfter)
	admin.WriteError(ctx, fasthttp.StatusServiceUnavailable, "busy", "too many requests with a body in flight from this address; retry in "+RetryAfter+" s")
}

// WriteBodyRefused answers a body ReadBody refused, as JSON (admin API and
// peer calls).
func WriteBodyRefused(ctx *fasthttp.RequestCtx, res Result, limit int) {
	switch res {
	case BodyTooLarge:
		admin.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, "too_large", "request body over the limit of "+strconv.Itoa(limit)+" bytes")
	case BodyBusy:
		WriteBusy(ctx)
	default:
		admin.WriteError(ctx, fasthttp.StatusBadRequest, "invalid", "the request body could not be read")
	}
}

// Config configures a Guard.
type Config struct {
	// ReverseProxy trusts X-Forwarded-For from a proxy in front, when the
	// connection comes from one of TrustedProxies (loopback if empty).
	ReverseProxy   bool
	TrustedProxies []netip.Prefix
	// MaxBodySize is the largest request body: the gate's byte budget is
	// four of them (at least MinBodyBudget).
	MaxBodySize int
	Registry    *prometheus.Registry
	Logger      *slog.Logger
	// PublicURL, when set (ParsePublicURL), is the cluster's own
	// scheme://host, whatever a request's Host says (PublicBase).
	PublicURL string
}

// Guard is one server's defences and their counters.
type Guard struct {
	cfg     Config
	trusted []netip.Prefix // proxies whose X-Forwarded-For is believed
	gate    *bodyGate      // request bodies in flight
	// Panics counts panics recovered while serving (conclave_panics_total);
	// Refused, requests refused before their body was read, by reason.
	Panics  prometheus.Counter
	Refused *prometheus.CounterVec
}

// New makes a server's guard and registers its metrics.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Guard{cfg: cfg, trusted: cfg.TrustedProxies,
		gate: newBodyGate(max(4*int64(cfg.MaxBodySize), MinBodyBudget), MaxBodiesPerClient)}
	switch {
	case cfg.ReverseProxy && len(g.trusted) == 0:
		g.trusted = loopbackProxies
		cfg.Logger.Warn("reverse-proxy mode without CONCLAVE_TRUSTED_PROXIES: X-Forwarded-For is believed only from loopback proxies")
	case !cfg.ReverseProxy && len(g.trusted) > 0:
		cfg.Logger.Warn("CONCLAVE_TRUSTED_PROXIES is ignored: reverse-proxy mode (CONCLAVE_REVERSE_PROXY_MODE) is off")
	}
	g.Panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "conclave_panics_total", Help: "Panics recovered while serving an HTTP request (the request got an error answer; the peer kept serving).",
	})
	g.Refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "conclave_requests_refused_total", Help: "Requests refused before their body was read, by reason (too_large, busy, unsigned).",
	}, []string{"reason"})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(g.Panics, g.Refused)
	}
	for _, r := range []string{ReasonTooLarge, ReasonBusy, ReasonUnsigned} {
		g.Refused.WithLabelValues(r)
	}
	return g
}

// Release gives back a body's place in the gate (the zero Hold: nothing).
func (g *Guard) Release(h *Hold) { g.gate.release(h) }

// InFlight is how many large bodies addr has in flight.
func (g *Guard) InFlight(addr netip.Addr) int { return g.gate.inFlight(addr) }

// Held is what the gate holds: client addresses and bytes.
func (g *Guard) Held() (clients int, bytes int64) {
	g.gate.mu.Lock()
	defer g.gate.mu.Unlock()
	return len(g.gate.perClient), g.gate.bytes
}
