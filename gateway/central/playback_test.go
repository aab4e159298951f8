package central

import (
	"encoding/json"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/recstore"
)

type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error { d.set = append(d.set, t); return nil }

// A long download keeps its connection while it moves: the write
// deadline is pushed back as the body is read, at most once a second.
func TestPlaybackDeadlineFollowsProgress(t *testing.T) {
	t.Parallel()
	conn := &deadlineConn{}
	p := &progressDeadline{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), conn: conn, every: time.Minute}
	buf := make([]byte, 10)
	for i := 0; i < 5; i++ {
		p.Read(buf)
	}
	if len(conn.set) != 1 || time.Until(conn.set[0]) < 50*time.Second {
		t.Fatalf("deadlines set: %v", conn.set)
	}
	p.last = p.last.Add(-2 * time.Second) // a second later, still moving
	p.Read(buf)
	if len(conn.set) != 2 {
		t.Fatalf("the deadline did not follow the progress: %v", conn.set)
	}
}

func rangeOf(header string, size int64) (int64, int64, int) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Range", header)
	return byteRange(&ctx, recstore.Info{Size: size, ETag: `"e"`}, time.Time{})
}

func TestByteRanges(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		h            string
		off, n       int64
		status, size int
	}{
		{"bytes=0-9", 0, 10, 206, 100},
		{"bytes=90-", 90, 10, 206, 100},
		{"bytes=90-1000", 90, 10, 206, 100},
		{"bytes=-10", 90, 10, 206, 100},
		{"bytes=-1000", 0, 100, 206, 100},
		{"bytes=100-", 0, 0, 416, 100},
		{"bytes=-0", 0, 0, 416, 100},
		{"bytes=5-1", 0, 100, 200, 100},
		{"bytes=0-1,5-6", 0, 100, 200, 100},
		{"items=0-1", 0, 100, 200, 100},
		{"bytes=x-y", 0, 100, 200, 100},
		{"bytes=0-", 0, 0, 416, 0},
	} {
		off, n, st := rangeOf(c.h, int64(c.size))
		if off != c.off || n != c.n || st != c.status {
			t.Errorf("%q of %d: %d+%d %d, want %d+%d %d", c.h, c.size, off, n, st, c.off, c.n, c.status)
		}
	}
}

// Whatever a Range header says, the answer stays inside the file.
func FuzzByteRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=9223372036854775807-", "bytes=-9223372036854775808", "bytes=1-0"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		off, n, st := rangeOf(h, size)
		if st == 206 && (off < 0 || n <= 0 || off+n > size || off+n < off) {
			t.Fatalf("%q of %d: %d+%d", h, size, off, n)
		}
		if st == 200 && (off != 0 || n != size) {
			t.Fatalf("%q of %d: 200 with %d+%d", h, size, off, n)
		}
	})
}

// Whatever an offer holds, checkOffer never panics, and an offer it
// passes names only store keys that stay inside their recording.
func FuzzCheckOffer(f *testing.F) {
	f.Add(`{"record_id":"r1","format":"video","chunk_size":65536,"files":[{"path":"a/b.png","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`)
	f.Add(`{"record_id":"..","format":"video","chunk_size":65536,"files":[{"path":"../x","size":-1,"sha256":""}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var o adminapi.TransferOffer
		if json.Unmarshal([]byte(doc), &o) != nil || checkOffer(&o) != nil {
			return
		}
		for _, file := range o.Files {
			key := publishedKey(o.Format, o.RecordID, offerID(&o), file.Path)
			if !recstore.ValidKey(key) || !strings.HasPrefix(key, "published/"+o.Format+"/"+o.RecordID+"/"+offerID(&o)+"/") ||
				slices.Contains(strings.Split(key, "/"), "..") {
				t.Fatalf("accepted offer makes key %q", key)
			}
		}
	})
}

// Any method but GET and HEAD gets 405 and says which are allowed.
func TestPlaybackAllowsGetAndHead(t *testing.T) {
	t.Parallel()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	if getOrHead(&ctx) || ctx.Response.StatusCode() != 405 || string(ctx.Response.Header.Peek("Allow")) != "GET, HEAD" {
		t.Fatalf("POST: %d, Allow %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("Allow"))
	}
}
