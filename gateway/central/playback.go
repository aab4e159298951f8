package central

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/recstore"
)

// Playback files are served where BBB's nginx serves them, so the URLs a
// node wrote keep their paths and only change host:
//
//	/playback/<format>/<recordID>/<file>   (the video format, e.g.)
//	/<format>/<recordID>/<file>            (what the presentation player fetches)
//
// for the formats BBB publishes. The presentation player itself
// (/playback/presentation/2.3/) is a static app the operator's proxy
// serves (docs/PRODUCTION.md), as Scalelite's does.

// knownFormats are BBB's recording formats, served at the root too.
var knownFormats = map[string]bool{"presentation": true, "video": true, "podcast": true, "notes": true, "screenshare": true}

// IsPlaybackPath reports whether path is a playback file's route.
func IsPlaybackPath(p []byte) bool {
	s := string(p)
	if rest, ok := strings.CutPrefix(s, "/playback/"); ok {
		return strings.Count(rest, "/") >= 1
	}
	first, _, ok := strings.Cut(strings.TrimPrefix(s, "/"), "/")
	return ok && knownFormats[first]
}

// getOrHead answers 405 (with Allow) to any other method.
func getOrHead(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsGet() || ctx.IsHead() {
		return true
	}
	ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed) // resets the headers: Allow after
	ctx.Response.Header.Set("Allow", "GET, HEAD")
	return false
}

// ServePlayback serves one central playback file (GET or HEAD).
func (c *Central) ServePlayback(ctx *fasthttp.RequestCtx) {
	if !getOrHead(ctx) {
		return
	}
	if !c.Enabled() {
		c.refuse(ctx, fasthttp.StatusNotFound, "disabled")
		return
	}
	segs := strings.Split(strings.TrimPrefix(string(ctx.Path()), "/"), "/")
	if segs[0] == "playback" {
		segs = segs[1:]
	}
	if len(segs) < 2 {
		c.refuse(ctx, fasthttp.StatusNotFound, "unknown")
		return
	}
	format, recordID, file := segs[0], segs[1], strings.Join(segs[2:], "/")
	if file == "" || strings.HasSuffix(file, "/") {
		file += "index.html"
	}
	if !formatName.MatchString(format) || !simpleName.MatchString(recordID) || !recstore.ValidKey(file) {
		c.refuse(ctx, fasthttp.StatusNotFound, "unknown")
		return
	}
	rec, ok := c.cluster.FSM().Recording(recordID)
	if !ok {
		c.refuse(ctx, fasthttp.StatusNotFound, "unknown")
		return
	}
	cc, ok := rec.CentralFormat(format)
	if !ok {
		c.refuse(ctx, fasthttp.StatusNotFound, "not_central")
		return
	}
	if rec.State != "published" {
		c.refuse(ctx, fasthttp.StatusNotFound, "unpublished")
		return
	}
	fe, _ := c.cluster.FSM().Frontend(rec.Frontend)
	protected := Protected(&rec, &fe)
	if protected && !c.admitted(ctx, recordID) {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := publishedKey(format, recordID, cc.Version, file)
	info, err := c.store.Stat(rctx, key)
	if errors.Is(err, recstore.ErrNotFound) {
		c.refuse(ctx, fasthttp.StatusNotFound, "no_file")
		return
	}
	if err != nil {
		c.log.Warn("central recordings store failed", "step", "playback stat", "store", c.store.String(), "err", err)
		ctx.Error("recording storage unavailable", fasthttp.StatusServiceUnavailable)
		return
	}
	c.serveObject(ctx, rctx, key, info, protected)
}

// ServeLink serves a protected recording's link (LinkPrefix): a valid
// token sets the recording's cookie and redirects to the format's playback
// URL on the host the link named; anything else gets 403 or 404.
func (c *Central) ServeLink(ctx *fasthttp.RequestCtx) {
	if !getOrHead(ctx) {
		return
	}
	recordID, format, _ := strings.Cut(strings.TrimPrefix(string(ctx.Path()), LinkPrefix), "/")
	rec, ok := c.cluster.FSM().Recording(recordID)
	if !c.Enabled() || !ok || rec.State != "published" {
		c.refuse(ctx, fasthttp.StatusNotFound, "unknown")
		return
	}
	if _, ok := rec.CentralFormat(format); !ok {
		c.refuse(ctx, fasthttp.StatusNotFound, "not_central")
		return
	}
	base, ok := c.publicBase(ctx)
	target, ok2 := playbackURL(&rec, format, base)
	if !ok || !ok2 {
		c.refuse(ctx, fasthttp.StatusNotFound, "unknown")
		return
	}
	if !c.admitted(ctx, recordID) {
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Redirect(target, fasthttp.StatusFound)
}

// publicBase is the scheme://host the client reached the cluster by.
func (c *Central) publicBase(ctx *fasthttp.RequestCtx) (string, bool) {
	if c.cfg.PublicBase == nil {
		return "", false
	}
	return c.cfg.PublicBase(ctx)
}

// admitted checks a protected recording's link (query) or cookie,
// answering 403 itself when neither is valid; a valid link sets the cookie.
func (c *Central) admitted(ctx *fasthttp.RequestCtx, recordID string) bool {
	if tok := ctx.QueryArgs().Peek(TokenParam); len(tok) > 0 {
		exp, ok := c.validToken(recordID, string(tok))
		if !ok {
			c.refuse(ctx, fasthttp.StatusForbidden, "bad_link")
			return false
		}
		ck := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(ck)
		ck.SetKey(cookiePrefix + recordID)
		ck.SetValue(string(tok))
		ck.SetPath("/")
		ck.SetExpire(exp)
		ck.SetHTTPOnly(true)
		// An LMS often embeds the player in an iframe: a cross-site
		// context, where only SameSite=None cookies go, and those must be
		// Secure. Over plain HTTP (a test, a demo) Lax is what browsers take.
		if base, ok := c.publicBase(ctx); ok && strings.HasPrefix(base, "https://") {
			ck.SetSecure(true)
			ck.SetSameSite(fasthttp.CookieSameSiteNoneMode)
		} else {
			ck.SetSameSite(fasthttp.CookieSameSiteLaxMode)
		}
		ctx.Response.Header.SetCookie(ck)
		return true
	}
	if tok := ctx.Request.Header.Cookie(cookiePrefix + recordID); len(tok) > 0 {
		if _, ok := c.validToken(recordID, string(tok)); ok {
			return true
		}
	}
	c.refuse(ctx, fasthttp.StatusForbidden, "no_link")
	return false
}

func (c *Central) refuse(ctx *fasthttp.RequestCtx, status int, reason string) {
	c.m.playRefused.WithLabelValues(reason).Inc()
	if status == fasthttp.StatusForbidden {
		ctx.Error("forbidden: this recording plays through the link your learning platform gives, for a limited time", status)
		return
	}
	ctx.Error("not found", status)
}

// serveObject answers a GET or HEAD of one stored file as nginx's static
// module would: validators, conditional requests, one byte range.
func (c *Central) serveObject(ctx *fasthttp.RequestCtx, rctx context.Context, key string, info recstore.Info, protected bool) {
	h := &ctx.Response.Header
	ct := mime.TypeByExtension(path.Ext(key))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.SetContentType(ct)
	// Recordings are files a node wrote; never let a browser sniff one
	// into HTML on the cluster's origin.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Accept-Ranges", "bytes")
	if info.ETag != "" {
		h.Set("ETag", info.ETag)
	}
	mod := info.ModTime.UTC().Truncate(time.Second)
	if !info.ModTime.IsZero() {
		h.Set("Last-Modified", mod.Format(http.TimeFormat))
	}
	if protected {
		h.Set("Cache-Control", "private")
	}
	if notModified(ctx, info.ETag, mod) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	off, n, status := byteRange(ctx, info, mod)
	switch status {
	case fasthttp.StatusRequestedRangeNotSatisfiable:
		ctx.Error("range not satisfiable", status) // resets the headers: set after
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(info.Size, 10))
		return
	case fasthttp.StatusPartialContent:
		h.Set("Content-Range", "bytes "+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+n-1, 10)+"/"+strconv.FormatInt(info.Size, 10))
	}
	ctx.SetStatusCode(status)
	if ctx.IsHead() {
		ctx.Response.SkipBody = true
		h.SetContentLength(int(n))
		return
	}
	if n == 0 {
		return
	}
	// The store's reader outlives this handler (fasthttp streams it after
	// return), so it gets its own context, bounded by the server's write
	// timeout through the connection.
	r, got, err := c.store.Get(context.Background(), key, off, n)
	if err == nil && (got.Size != info.Size || got.ETag != info.ETag) {
		// Replaced between the headers and the bytes (a copy shipped
		// again): the headers would describe another file.
		r.Close()
		err = errors.New("the file changed while it was opened")
	}
	if err != nil {
		c.log.Warn("central recordings store failed", "step", "playback read", "store", c.store.String(), "err", err)
		h.Del("Content-Range")
		ctx.Error("recording storage unavailable", fasthttp.StatusServiceUnavailable)
		return
	}
	c.m.played.Add(float64(n))
	ctx.SetBodyStream(&progressDeadline{ReadCloser: r, conn: ctx.Conn(), every: playbackWriteWindow}, int(n))
	_ = rctx
}

// playbackWriteWindow is how long a playback answer may go without
// progress. The server's write timeout bounds a whole answer, which would
// cut a long video to a slow client; nginx bounds the time between two
// writes instead (send_timeout), and so does this.
const playbackWriteWindow = 60 * time.Second

// progressDeadline pushes the connection's write deadline back each time
// the answer moves on: a client that reads keeps its download, one that
// stops reading is cut after the window.
type progressDeadline struct {
	io.ReadCloser
	conn  net.Conn
	every time.Duration
	last  time.Time
}

func (p *progressDeadline) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(p.last) > time.Second {
		p.last = now
		_ = p.conn.SetWriteDeadline(now.Add(p.every))
	}
	return p.ReadCloser.Read(b)
}

// notModified applies If-None-Match, then If-Modified-Since.
func notModified(ctx *fasthttp.RequestCtx, etag string, mod time.Time) bool {
	if inm := string(ctx.Request.Header.Peek("If-None-Match")); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			if t = strings.TrimSpace(t); t == "*" || (etag != "" && strings.TrimPrefix(t, "W/") == etag) {
				return true
			}
		}
		return false
	}
	if ims := string(ctx.Request.Header.Peek("If-Modified-Since")); ims != "" && !mod.IsZero() {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			return true
		}
	}
	return false
}

// byteRange reads a single-range Range header (honouring If-Range): the
// offset, length and status to answer. A multi-range or malformed header
// is ignored (the whole file, 200), as RFC 9110 allows.
func byteRange(ctx *fasthttp.RequestCtx, info recstore.Info, mod time.Time) (int64, int64, int) {
	size := info.Size
	spec, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Range")), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, fasthttp.StatusOK
	}
	if ir := string(ctx.Request.Header.Peek("If-Range")); ir != "" {
		t, err := http.ParseTime(ir)
		if ir != info.ETag && (err != nil || !t.Equal(mod)) {
			return 0, size, fasthttp.StatusOK
		}
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, fasthttp.StatusOK
	}
	if a == "" { // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, size, fasthttp.StatusOK
		}
		if n == 0 || size == 0 {
			return 0, 0, fasthttp.StatusRequestedRangeNotSatisfiable
		}
		n = min(n, size)
		return size - n, n, fasthttp.StatusPartialContent
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, size, fasthttp.StatusOK
	}
	if start >= size {
		return 0, 0, fasthttp.StatusRequestedRangeNotSatisfiable
	}
	end := size - 1
	if b != "" {
		e, err := strconv.ParseInt(b, 10, 64)
		if err != nil || e < start {
			return 0, size, fasthttp.StatusOK
		}
		end = min(e, size-1)
	}
	return start, end - start + 1, fasthttp.StatusPartialContent
}
