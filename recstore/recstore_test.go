package recstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/conclave-lb/conclave/recstore"
	"github.com/conclave-lb/conclave/test/harness"
)

// behaviour is what every store must do; TestStores runs each case against
// a directory and against a real S3 server.
var behaviour = []struct {
	name string
	run  func(t *testing.T, s recstore.Store)
}{
	{"PutGet", testPutGet},
	{"Empty", testEmpty},
	{"OverwriteAtomic", testOverwriteAtomic},
	{"ShortOrLongReader", testShortOrLongReader},
	{"Large", testLarge},
	{"List", testList},
	{"Delete", testDelete},
	{"DeletePrefix", testDeletePrefix},
	{"InvalidKeys", testInvalidKeys},
	{"NotFound", testNotFound},
}

func TestStores(t *testing.T) {
	backends := []struct {
		name string
		// setup runs once per backend and returns a maker of empty stores.
		setup func(t *testing.T) func(t *testing.T) recstore.Store
	}{
		{"file", func(t *testing.T) func(t *testing.T) recstore.Store {
			return func(t *testing.T) recstore.Store {
				s, err := recstore.Open("file://"+t.TempDir(), nil)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
		{"s3", func(t *testing.T) func(t *testing.T) recstore.Store {
			srv := harness.StartS3(t)
			var n atomic.Int32
			return func(t *testing.T) recstore.Store {
				// One server, a fresh prefix per case.
				s, err := recstore.Open(srv.URL(fmt.Sprintf("case%d/x", n.Add(1))), srv.Getenv)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			mk := b.setup(t)
			for _, c := range behaviour {
				t.Run(c.name, func(t *testing.T) { c.run(t, mk(t)) })
			}
		})
	}
}

func put(t *testing.T, s recstore.Store, key, data string) {
	t.Helper()
	if err := s.Put(context.Background(), key, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, s recstore.Store, key string, off, n int64) (string, recstore.Info) {
	t.Helper()
	r, info, err := s.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("get %s %d %d: %v", key, off, n, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b), info
}

func keys(list []recstore.Info) []string {
	var out []string
	for _, i := range list {
		out = append(out, i.Key)
	}
	return out
}

func testPutGet(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	const data = "0123456789abcdef"
	before := time.Now().Add(-time.Minute)
	put(t, s, "pres/slides/1.svg", data)

	got, info := get(t, s, "pres/slides/1.svg", 0, -1)
	if got != data {
		t.Fatalf("whole: got %q", got)
	}
	if info.Key != "pres/slides/1.svg" || info.Size != int64(len(data)) {
		t.Errorf("info %+v", info)
	}
	if len(info.ETag) < 3 || info.ETag[0] != '"' || info.ETag[len(info.ETag)-1] != '"' {
		t.Errorf("ETag %q not quoted", info.ETag)
	}
	if info.ModTime.Before(before) || info.ModTime.After(time.Now().Add(time.Minute)) {
		t.Errorf("ModTime %v", info.ModTime)
	}

	for _, c := range []struct {
		off, n int64
		want   string
	}{
		{2, 3, "234"},
		{2, -1, data[2:]},
		{0, 1, "0"},
		{15, 1, "f"},
		{10, 100, data[10:]}, // cut at the end
		{1, math.MaxInt64, data[1:]},
		{16, -1, ""}, // at the end: nothing
		{16, 5, ""},
		{3, 0, ""},
	} {
		got, ginfo := get(t, s, "pres/slides/1.svg", c.off, c.n)
		if got != c.want {
			t.Errorf("get %d,%d = %q, want %q", c.off, c.n, got, c.want)
		}
		if ginfo.Size != int64(len(data)) || ginfo.ETag != info.ETag {
			t.Errorf("get %d,%d: info %+v describes the range, not the object %+v", c.off, c.n, ginfo, info)
		}
	}
	if _, _, err := s.Get(ctx, "pres/slides/1.svg", 17, -1); err == nil {
		t.Error("offset past the end: no error")
	}
	if _, _, err := s.Get(ctx, "pres/slides/1.svg", -1, 2); err == nil {
		t.Error("negative offset: no error")
	}

	st, err := s.Stat(ctx, "pres/slides/1.svg")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != info.Size || st.ETag != info.ETag || st.Key != info.Key || !st.ModTime.Truncate(time.Second).Equal(info.ModTime.Truncate(time.Second)) {
		t.Errorf("stat %+v, get %+v", st, info)
	}
	if st2, _ := s.Stat(ctx, "pres/slides/1.svg"); st2.ETag != st.ETag {
		t.Errorf("ETag changed without a write: %q, %q", st.ETag, st2.ETag)
	}

	put(t, s, "pres/slides/1.svg", "new")
	if got, _ := get(t, s, "pres/slides/1.svg", 0, -1); got != "new" {
		t.Errorf("after overwrite: %q", got)
	}
	if st3, _ := s.Stat(ctx, "pres/slides/1.svg"); st3.Size != 3 || st3.ETag == st.ETag {
		t.Errorf("after overwrite: %+v (before %+v)", st3, st)
	}
}

func testEmpty(t *testing.T, s recstore.Store) {
	put(t, s, "e/empty", "")
	got, info := get(t, s, "e/empty", 0, -1)
	if got != "" || info.Size != 0 {
		t.Errorf("got %q, %+v", got, info)
	}
	if got, _ := get(t, s, "e/empty", 0, 10); got != "" {
		t.Errorf("ranged: %q", got)
	}
}

// testOverwriteAtomic replaces an object while readers read it: each must
// see one version whole, never a mix or a truncation.
func testOverwriteAtomic(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	versions := [][]byte{bytes.Repeat([]byte("a"), 300<<10), bytes.Repeat([]byte("b"), 200<<10)}
	const key = "atomic/video.webm"
	if err := s.Put(ctx, key, bytes.NewReader(versions[0]), int64(len(versions[0]))); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int32
	errs := make(chan error, 8)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				r, info, err := s.Get(ctx, key, 0, -1)
				if err != nil {
					errs <- fmt.Errorf("get during overwrite: %v", err)
					return
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errs <- fmt.Errorf("read during overwrite: %v", err)
					return
				}
				if !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
					errs <- fmt.Errorf("read a mix: %d bytes, first %q last %q", len(b), b[:1], b[len(b)-1:])
					return
				}
				if info.Size != int64(len(b)) {
					errs <- fmt.Errorf("info size %d for %d bytes read", info.Size, len(b))
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := range 20 {
		v := versions[(i+1)%2]
		if err := s.Put(ctx, key, bytes.NewReader(v), int64(len(v))); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("no read completed during the overwrites")
	}
}

func testShortOrLongReader(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"short", strings.NewReader("12345"), 10},
		{"short trickle", iotest.OneByteReader(strings.NewReader("12345")), 10},
		{"long", strings.NewReader("12345678901"), 10},
		{"long by one", iotest.OneByteReader(strings.NewReader("12345678901")), 10},
		{"long empty", strings.NewReader("x"), 0},
		{"failing", io.MultiReader(strings.NewReader("123"), iotest.ErrReader(errors.New("disk gone"))), 10},
	} {
		if err := s.Put(ctx, "bad/new", c.r, c.size); err == nil {
			t.Errorf("%s: no error", c.name)
		}
		if _, err := s.Stat(ctx, "bad/new"); !errors.Is(err, recstore.ErrNotFound) {
			t.Errorf("%s: left something: %v", c.name, err)
		}
	}
	// Over an existing object: the old one stays whole.
	put(t, s, "bad/old", "old content")
	if err := s.Put(ctx, "bad/old", strings.NewReader("new"), 10); err == nil {
		t.Error("short over existing: no error")
	}
	if got, _ := get(t, s, "bad/old", 0, -1); got != "old content" {
		t.Errorf("old object now %q", got)
	}
	list, err := s.List(ctx, "bad/", 0)
	if err != nil || !slices.Equal(keys(list), []string{"bad/old"}) {
		t.Errorf("list after failed puts: %v, %v", keys(list), err)
	}
}

// testLarge goes past 16 MiB, where the S3 client switches to a multipart
// upload: a short reader must still leave nothing.
func testLarge(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), (17<<20)/16)
	if err := s.Put(ctx, "big/short", bytes.NewReader(data[:len(data)-1]), int64(len(data))); err == nil {
		t.Error("short reader: no error")
	}
	if err := s.Put(ctx, "big/long", io.MultiReader(bytes.NewReader(data), strings.NewReader("x")), int64(len(data))); err == nil {
		t.Error("long reader: no error")
	}
	if list, err := s.List(ctx, "big/", 0); err != nil || len(list) != 0 {
		t.Errorf("failed puts left %v, %v", keys(list), err)
	}
	if err := s.Put(ctx, "big/ok", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, info := get(t, s, "big/ok", 1<<20, -1); got != string(data[1<<20:]) || info.Size != int64(len(data)) {
		t.Errorf("read back %d bytes, info %+v", len(got), info)
	}
}

func testList(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	// "a-c" and "a.d" sort before "a/..." bytewise, though a directory
	// walk meets "a/" first.
	for _, k := range []string{"l/b", "l/a/b", "l/a-c", "l/a/a/z", "l/a.d", "other/x", "l2/y"} {
		put(t, s, k, k)
	}
	all, err := s.List(ctx, "l/", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"l/a-c", "l/a.d", "l/a/a/z", "l/a/b", "l/b"}
	if !slices.Equal(keys(all), want) {
		t.Errorf("list l/ = %v, want %v", keys(all), want)
	}
	for _, i := range all {
		if i.Size != int64(len(i.Key)) || i.ETag == "" || i.ModTime.IsZero() {
			t.Errorf("list info %+v", i)
		}
	}
	if two, err := s.List(ctx, "l/", 2); err != nil || !slices.Equal(keys(two), want[:2]) {
		t.Errorf("list l/ limit 2 = %v, %v", keys(two), err)
	}
	if sub, err := s.List(ctx, "l/a/", 0); err != nil || !slices.Equal(keys(sub), []string{"l/a/a/z", "l/a/b"}) {
		t.Errorf("list l/a/ = %v, %v", keys(sub), err)
	}
	if every, err := s.List(ctx, "", 0); err != nil || len(every) != 7 {
		t.Errorf("list everything = %v, %v", keys(every), err)
	}
	if none, err := s.List(ctx, "nothing/here/", 0); err != nil || len(none) != 0 {
		t.Errorf("list of an absent prefix = %v, %v", keys(none), err)
	}
	// A file is not a directory: nothing is under "l/b/".
	if none, err := s.List(ctx, "l/b/", 0); err != nil || len(none) != 0 {
		t.Errorf("list under a file = %v, %v", keys(none), err)
	}
	if _, err := s.List(ctx, "l", 0); !errors.Is(err, recstore.ErrInvalidKey) {
		t.Errorf("prefix without a slash: %v", err)
	}
}

func testDelete(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	put(t, s, "del/x", "x")
	put(t, s, "del/y", "y")
	if err := s.Delete(ctx, "del/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "del/x"); !errors.Is(err, recstore.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if got, _ := get(t, s, "del/y", 0, -1); got != "y" {
		t.Errorf("neighbour: %q", got)
	}
	if err := s.Delete(ctx, "del/x"); err != nil {
		t.Errorf("delete again: %v", err)
	}
	if err := s.Delete(ctx, "never/was"); err != nil {
		t.Errorf("delete absent: %v", err)
	}
	if err := s.Delete(ctx, "del"); err != nil {
		t.Errorf("delete of a key that is only a prefix: %v", err)
	}
	if got, _ := get(t, s, "del/y", 0, -1); got != "y" {
		t.Errorf("deleting the prefix as a key touched %q", got)
	}
}

func testDeletePrefix(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	for _, k := range []string{"d/1/a", "d/1/b/c", "d/10/x", "d/1-x", "d/2"} {
		put(t, s, k, k)
	}
	if err := s.DeletePrefix(ctx, "d/1/"); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d/1-x", "d/10/x", "d/2"}; !slices.Equal(keys(list), want) {
		t.Errorf("left %v, want %v", keys(list), want)
	}
	if err := s.DeletePrefix(ctx, "d/1/"); err != nil {
		t.Errorf("again: %v", err)
	}
	if err := s.DeletePrefix(ctx, "d/2/"); err != nil { // a file, not a prefix
		t.Errorf("prefix naming a file: %v", err)
	}
	if _, err := s.Stat(ctx, "d/2"); err != nil {
		t.Errorf("d/2/ took d/2: %v", err)
	}
	// Many objects: more than one batch for S3's multi-delete is 1000;
	// this keeps the test quick but exercises the streaming.
	for i := range 30 {
		put(t, s, fmt.Sprintf("many/%02d/f", i), "x")
	}
	if err := s.DeletePrefix(ctx, "many/"); err != nil {
		t.Fatal(err)
	}
	if left, err := s.List(ctx, "many/", 0); err != nil || len(left) != 0 {
		t.Errorf("left under many/: %v, %v", keys(left), err)
	}
	for _, p := range []string{"", "d", "/d/", "../", "d//"} {
		if err := s.DeletePrefix(ctx, p); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("DeletePrefix(%q) = %v", p, err)
		}
	}
	if list, _ := s.List(ctx, "", 0); len(list) != 3 {
		t.Errorf("a refused DeletePrefix removed something: %v", keys(list))
	}
}

var badKeys = []string{
	"", "../x", "a/../../x", "/abs", "a//b", "a/./b", ".", "..", "a/", "a/..",
	"a\x00b", "a\\b", "a\nb", "a\x7fb", "\xff\xfe", strings.Repeat("k", recstore.MaxKeyLen+1),
}

func testInvalidKeys(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	for _, k := range badKeys {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v", k, err)
		}
		if _, _, err := s.Get(ctx, k, 0, -1); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v", k, err)
		}
		if k == "" {
			continue // List("") is everything
		}
		if _, err := s.List(ctx, k+"/", 0); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("List(%q) = %v", k+"/", err)
		}
		if err := s.DeletePrefix(ctx, k+"/"); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("DeletePrefix(%q) = %v", k+"/", err)
		}
	}
	if list, err := s.List(ctx, "", 0); err != nil || len(list) != 0 {
		t.Errorf("store not empty after refused puts: %v, %v", keys(list), err)
	}
}

func testNotFound(t *testing.T, s recstore.Store) {
	ctx := context.Background()
	put(t, s, "nf/file", "x")
	for _, k := range []string{"nf/missing", "nf", "nf/file/under", "elsewhere"} {
		if _, _, err := s.Get(ctx, k, 0, -1); !errors.Is(err, recstore.ErrNotFound) {
			t.Errorf("Get(%q) = %v", k, err)
		}
		if _, _, err := s.Get(ctx, k, 1, 2); !errors.Is(err, recstore.ErrNotFound) {
			t.Errorf("ranged Get(%q) = %v", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, recstore.ErrNotFound) {
			t.Errorf("Stat(%q) = %v", k, err)
		}
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range badKeys {
		if recstore.ValidKey(k) {
			t.Errorf("ValidKey(%q) = true", k)
		}
	}
	for _, k := range []string{"a", "a/b", "published/presentation/abc-123/video/webcams.webm", "a..b/.c/..d", "é/ü", strings.Repeat("k", recstore.MaxKeyLen)} {
		if !recstore.ValidKey(k) {
			t.Errorf("ValidKey(%q) = false", k)
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, want string }{
		{"file://" + filepath.Join(dir, "missing"), "does not exist"},
		{"file://" + file, "not a directory"},
		{"file:relative/path", "absolute"},
		{"file://host/x", "local path"},
		{"ftp://x/y", "want file:///path or s3://bucket/prefix"},
		{"s3:///prefix", "no bucket"},
		{"s3://user:pass@bucket/p", "no user"},
		{"s3://bucket/p", "AWS_ACCESS_KEY_ID"},
	} {
		_, err := recstore.Open(c.url, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %v, want an error saying %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pass@") {
			t.Errorf("Open(%q) error shows the password: %v", c.url, err)
		}
	}
	s, err := recstore.Open("file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "file://"+dir {
		t.Errorf("String() = %q", s.String())
	}
}

func TestOpenS3(t *testing.T) {
	srv := harness.StartS3(t)
	s, err := recstore.Open(srv.URL("pre/fix"), srv.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if str := s.String(); strings.Contains(str, srv.SecretKey) || strings.Contains(str, srv.AccessKey) || !strings.Contains(str, "pre/fix") {
		t.Errorf("String() = %q", str)
	}
	// Keys live under the URL's prefix, and List gives them back without it.
	put(t, s, "k/v", "x")
	whole, err := recstore.Open(srv.URL(""), srv.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := get(t, whole, "pre/fix/k/v", 0, -1); got != "x" {
		t.Errorf("object not under the prefix: %q", got)
	}
	if list, err := s.List(context.Background(), "", 0); err != nil || !slices.Equal(keys(list), []string{"k/v"}) {
		t.Errorf("list = %v, %v", keys(list), err)
	}

	_, err = recstore.Open("s3://no-such-bucket/x", srv.Getenv)
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Errorf("missing bucket: %v", err)
	}
	wrong := func(k string) string {
		if k == "AWS_SECRET_ACCESS_KEY" {
			return "wrong"
		}
		return srv.Getenv(k)
	}
	if _, err := recstore.Open(srv.URL(""), wrong); err == nil {
		t.Error("wrong secret: no error")
	}
	for _, ep := range []string{"ftp://h:1", "http://h:1/path", "http://"} {
		env := func(k string) string {
			if k == "CONCLAVE_S3_ENDPOINT" {
				return ep
			}
			return srv.Getenv(k)
		}
		if _, err := recstore.Open(srv.URL(""), env); err == nil || !strings.Contains(err.Error(), "CONCLAVE_S3_ENDPOINT") {
			t.Errorf("endpoint %q: %v", ep, err)
		}
	}
}

// TestFileStaysInRoot: a symlink planted in the tree does not lead a key
// outside the directory, and the temp directory is not an object.
func TestFileStaysInRoot(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	s, err := recstore.Open("file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "link/secret", 0, -1); err == nil {
		t.Error("read through a symlink out of the root")
	}
	if err := s.Put(ctx, "link/planted", strings.NewReader("x"), 1); err == nil {
		t.Error("wrote through a symlink out of the root")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Error("file planted outside the root")
	}
	for _, k := range []string{".tmp", ".tmp/x"} {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); !errors.Is(err, recstore.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v", k, err)
		}
	}
	// Failed puts leave no temp files behind.
	_ = s.Put(ctx, "a/b", strings.NewReader("x"), 2)
	if left, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if list, err := s.List(ctx, "", 0); err != nil || len(list) != 0 {
		t.Errorf("list = %v, %v", keys(list), err)
	}
}
