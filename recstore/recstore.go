// Package recstore is the central storage of published recordings, shared
// by every peer: a directory (file:///path, e.g. an NFS mount) or an
// S3-compatible bucket (s3://bucket/prefix), chosen by one URL.
//
// Keys are clean relative slash paths. They come partly from manifests an
// attacker may write, so every method checks them again (ValidKey), even
// when the caller already did: no key reaches outside the store.
package recstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

var (
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("recstore: not found")
	// ErrInvalidKey: the key or prefix is not a clean relative slash path.
	ErrInvalidKey = errors.New("recstore: invalid key")
)

// errRange: Get was asked for bytes past the end of the object.
var errRange = errors.New("recstore: range beyond the end of the object")

// MaxKeyLen is the longest key, in bytes: S3's limit for a whole object name.
const MaxKeyLen = 1024

// Info describes one stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	ETag    string // quoted, as in HTTP; stable while the content is unchanged
}

// Store is where published recordings live.
type Store interface {
	// Put stores size bytes from r under key, atomically: readers see the
	// old object or the whole new one, never a part. A short or long reader
	// is an error and leaves nothing.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get reads length bytes from offset (length -1: to the end; a length
	// past the end is cut there). Info describes the whole object. An
	// offset equal to the size gives no bytes; beyond it, an error.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error)
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects under prefix (recursively), sorted by key,
	// at most limit (limit <= 0: all). Prefix is "" (everything) or a valid
	// key followed by "/".
	List(ctx context.Context, prefix string, limit int) ([]Info, error)
	// Delete removes the object; an absent one is not an error.
	Delete(ctx context.Context, key string) error
	// DeletePrefix removes every object under prefix, a valid key followed
	// by "/" ("" is refused: it would empty the store).
	DeletePrefix(ctx context.Context, prefix string) error
	// String names the store for logs, never with credentials.
	String() string
}

// Open opens the store named by rawURL: file:///absolute/path (the
// directory must exist) or s3://bucket[/prefix]. For s3://, getenv reads
// CONCLAVE_S3_ENDPOINT (http://host:port, https://host:port, or host:port
// meaning https; empty: AWS), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_REGION (default us-east-1).
func Open(rawURL string, getenv func(string) string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("recstore: bad URL: %w", err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// Credentials in the URL would end up in logs and process listings.
		return nil, fmt.Errorf("recstore: %s: no user, query or fragment allowed (S3 credentials come from the environment)", u.Redacted())
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("recstore: %s: a file URL names a local path (file:///path)", rawURL)
		}
		return openFile(u.Path)
	case "s3":
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		return openS3(u, getenv)
	default:
		return nil, fmt.Errorf("recstore: %q: want file:///path or s3://bucket/prefix", rawURL)
	}
}

// ValidKey reports whether key is a clean relative slash path: non-empty
// segments other than "." and "..", no leading slash, no backslash, NUL or
// other control character, valid UTF-8 (S3 requires it, so both stores
// agree), at most MaxKeyLen bytes.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen || !utf8.ValidString(key) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// validPrefix reports whether prefix is a valid key followed by "/", or ""
// when empty is allowed.
func validPrefix(prefix string, emptyOK bool) bool {
	if prefix == "" {
		return emptyOK
	}
	k, ok := strings.CutSuffix(prefix, "/")
	return ok && ValidKey(k)
}

// checkRange refuses a negative offset or a length below -1.
func checkRange(offset, length int64) error {
	if offset < 0 || length < -1 {
		return fmt.Errorf("recstore: bad range offset %d length %d", offset, length)
	}
	return nil
}

var (
	errShort = errors.New("recstore: reader ended before the declared size")
	errLong  = errors.New("recstore: reader has more than the declared size")
)

// exactReader passes on exactly n bytes of r. It fails when r ends early,
// and when r has more: it looks for one byte past the end before handing
// over the last bytes, so an upload fails before the store has it whole.
type exactReader struct {
	r    io.Reader
	n    int64
	done bool
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.done {
		return 0, io.EOF
	}
	n := 0
	if e.n > 0 {
		if int64(len(p)) > e.n {
			p = p[:e.n]
		}
		var err error
		n, err = e.r.Read(p)
		e.n -= int64(n)
		if e.n > 0 {
			if err == io.EOF {
				return n, errShort
			}
			return n, err
		}
	}
	// All n bytes are here: r must be at its end.
	var one [1]byte
	for {
		m, err := e.r.Read(one[:])
		if m > 0 {
			return 0, errLong
		}
		if err == io.EOF {
			e.done = true
			return n, io.EOF
		}
		if err != nil {
			return 0, err
		}
	}
}

// readCloser joins a reader to what closes its source.
type readCloser struct {
	io.Reader
	io.Closer
}
