package recstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// openTimeout bounds Open's check that the bucket exists, so a peer with a
// wrong endpoint says so at start instead of hanging.
const openTimeout = 10 * time.Second

// s3Store keeps objects in a bucket, under an optional key prefix.
type s3Store struct {
	core     minio.Core // Core.GetObject answers at once, with the headers
	bucket   string
	prefix   string // "" or "some/prefix/"
	endpoint string // for String: scheme://host, no credentials
}

func openS3(u *url.URL, getenv func(string) string) (*s3Store, error) {
	bucket := u.Host
	if bucket == "" {
		return nil, fmt.Errorf("recstore: %s: no bucket (want s3://bucket/prefix)", u.Redacted())
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if !ValidKey(prefix) {
			return nil, fmt.Errorf("recstore: %s: bad prefix %q", u.Redacted(), prefix)
		}
		prefix += "/"
	}
	region := getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	access, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if access == "" || secret == "" {
		return nil, errors.New("recstore: s3 store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	host, secure, lookup := "s3."+region+".amazonaws.com", true, minio.BucketLookupAuto
	if ep := getenv("CONCLAVE_S3_ENDPOINT"); ep != "" {
		var err error
		if host, secure, err = parseEndpoint(ep); err != nil {
			return nil, err
		}
		// Path style works on every S3-compatible server; virtual hosts
		// need DNS set up for each bucket.
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, ""),
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("recstore: s3 endpoint %s: %w", host, err)
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	s := &s3Store{core: minio.Core{Client: client}, bucket: bucket, prefix: prefix, endpoint: scheme + "://" + host}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("recstore: %s: checking bucket: %w", s, err)
	}
	if !ok {
		return nil, fmt.Errorf("recstore: %s: bucket %q does not exist", s, bucket)
	}
	return s, nil
}

// parseEndpoint reads http://host:port, https://host:port or host:port
// (https).
func parseEndpoint(ep string) (host string, secure bool, err error) {
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		strings.Trim(u.Path, "/") != "" || u.User != nil || u.RawQuery != "" {
		return "", false, fmt.Errorf("recstore: CONCLAVE_S3_ENDPOINT %q: want http://host:port or https://host:port", redactEndpoint(ep))
	}
	return u.Host, u.Scheme == "https", nil
}

// redactEndpoint hides a password someone put in the endpoint URL.
func redactEndpoint(ep string) string {
	if u, err := url.Parse(ep); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

func (s *s3Store) String() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.endpoint
}

// mapErr turns the server's "no such key" into ErrNotFound.
func (s *s3Store) mapErr(op, key string, err error) error {
	er := minio.ToErrorResponse(err)
	if er.Code == minio.NoSuchKey || (er.StatusCode == http.StatusNotFound && er.Code != minio.NoSuchBucket) {
		return ErrNotFound
	}
	return fmt.Errorf("recstore: %s %s: %w", op, key, err)
}

func (s *s3Store) info(key string, oi minio.ObjectInfo, size int64) Info {
	etag := oi.ETag
	if etag != "" && !strings.HasPrefix(etag, `"`) {
		etag = `"` + etag + `"`
	}
	return Info{Key: key, Size: size, ModTime: oi.LastModified, ETag: etag}
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !ValidKey(key) {
		return ErrInvalidKey
	}
	if size < 0 {
		return fmt.Errorf("recstore: put %s: negative size %d", key, size)
	}
	// One PUT (or, for large objects, a multipart upload completed only at
	// the end) is atomic on S3. exactReader fails before the last byte
	// leaves when r is short or long, so the server never completes it.
	body := io.Reader(&exactReader{r: r, n: size})
	if size == 0 {
		// The client reads nothing for an empty object: check r here.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("recstore: put %s: %w", key, err)
		}
		body = strings.NewReader("")
	}
	_, err := s.core.Client.PutObject(ctx, s.bucket, s.prefix+key, body, size, minio.PutObjectOptions{})
	if err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	return nil
}

func (s *s3Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error) {
	if !ValidKey(key) {
		return nil, Info{}, ErrInvalidKey
	}
	if err := checkRange(offset, length); err != nil {
		return nil, Info{}, err
	}
	if length == 0 { // no Range header asks for nothing
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, Info{}, err
		}
		if offset > info.Size {
			return nil, info, fmt.Errorf("get %s offset %d size %d: %w", key, offset, info.Size, errRange)
		}
		return io.NopCloser(strings.NewReader("")), info, nil
	}
	var opts minio.GetObjectOptions
	end := int64(-1) // last byte wanted; -1: to the end
	if length > 0 && length <= math.MaxInt64-offset {
		end = offset + length - 1
	}
	ranged := offset > 0 || end >= 0
	switch {
	case end >= 0:
		opts.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, end))
	case offset > 0:
		opts.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	body, oi, h, err := s.core.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			// S3 refuses a range starting at the end; reading nothing
			// there is fine, past it is not.
			info, serr := s.Stat(ctx, key)
			if serr != nil {
				return nil, Info{}, serr
			}
			if offset == info.Size {
				return io.NopCloser(strings.NewReader("")), info, nil
			}
			return nil, info, fmt.Errorf("get %s offset %d size %d: %w", key, offset, info.Size, errRange)
		}
		return nil, Info{}, s.mapErr("get", key, err)
	}
	// A ranged answer carries the whole size in Content-Range. A server
	// that ignored the range sent everything: skip to offset here.
	start, total := int64(0), oi.Size
	if cr := h.Get("Content-Range"); ranged && cr != "" {
		a, t, ok := parseContentRange(cr)
		if !ok {
			body.Close()
			return nil, Info{}, fmt.Errorf("recstore: get %s: bad Content-Range %q", key, cr)
		}
		start, total = a, t
	}
	info := s.info(key, oi, total)
	if start != offset {
		if start > offset {
			body.Close()
			return nil, Info{}, fmt.Errorf("recstore: get %s: asked for offset %d, got %d", key, offset, start)
		}
		if _, err := io.CopyN(io.Discard, body, offset-start); err != nil {
			body.Close()
			return nil, Info{}, s.mapErr("get", key, err)
		}
	}
	n := total - offset
	if length >= 0 && length < n {
		n = length
	}
	return readCloser{io.LimitReader(body, n), body}, info, nil
}

// parseContentRange reads "bytes a-b/total".
func parseContentRange(cr string) (start, total int64, ok bool) {
	spec, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, tot, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, false
	}
	a, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	total, err2 := strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || total < start {
		return 0, 0, false
	}
	return start, total, true
}

func (s *s3Store) Stat(ctx context.Context, key string) (Info, error) {
	if !ValidKey(key) {
		return Info{}, ErrInvalidKey
	}
	oi, err := s.core.Client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.mapErr("stat", key, err)
	}
	return s.info(key, oi, oi.Size), nil
}

func (s *s3Store) List(ctx context.Context, prefix string, limit int) ([]Info, error) {
	if !validPrefix(prefix, true) {
		return nil, ErrInvalidKey
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine if we return early
	var out []Info
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.mapErr("list", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		if !ValidKey(key) {
			continue // not one of ours, e.g. a "dir/" marker
		}
		out = append(out, s.info(key, oi, oi.Size))
	}
	// S3 lists in key order, but not every compatible server does (one
	// walking directories lists "a/b" before "a-c"): sort all, then cut.
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return ErrInvalidKey
	}
	err := s.core.Client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil {
		if err = s.mapErr("delete", key, err); errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

func (s *s3Store) DeletePrefix(ctx context.Context, prefix string) error {
	if !validPrefix(prefix, false) {
		return ErrInvalidKey
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Everything under the prefix goes, including keys we would not have
	// written ("dir/" markers): the caller asked for the whole subtree.
	listed := s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true})
	toRemove := make(chan minio.ObjectInfo)
	var listErr error
	go func() {
		defer close(toRemove)
		for oi := range listed {
			if oi.Err != nil {
				listErr = oi.Err
				return
			}
			select {
			case toRemove <- oi:
			case <-ctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for re := range s.core.Client.RemoveObjects(ctx, s.bucket, toRemove, minio.RemoveObjectsOptions{}) {
		if re.Err != nil && firstErr == nil && minio.ToErrorResponse(re.Err).Code != minio.NoSuchKey {
			firstErr = fmt.Errorf("recstore: delete %s%s: %w", prefix, strings.TrimPrefix(re.ObjectName, s.prefix+prefix), re.Err)
		}
	}
	// RemoveObjects ends only after toRemove is closed, so listErr is set.
	if listErr != nil {
		return fmt.Errorf("recstore: delete %s: listing: %w", prefix, listErr)
	}
	return firstErr
}
