package recstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// tmpDir holds uploads in progress, under the root so that the rename into
// place stays on one filesystem and is atomic.
const tmpDir = ".tmp"

// staleTmp is how old a temp file must be before Open removes it: a peer
// that crashed mid-upload leaves it behind, and on a shared directory
// another peer may still be writing a young one.
const staleTmp = 24 * time.Hour

// fileStore keeps objects as files under a directory. All access goes
// through an os.Root, so neither a key nor a symlink planted in the tree
// can reach outside it, on top of ValidKey refusing ".." outright.
type fileStore struct {
	dir  string
	root *os.Root
}

func openFile(dir string) (*fileStore, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("recstore: file URL needs an absolute path (file:///path), got %q", dir)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("recstore: directory %s does not exist (create it, or mount the shared volume there)", dir)
		}
		return nil, fmt.Errorf("recstore: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("recstore: %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("recstore: %w", err)
	}
	if err := root.MkdirAll(tmpDir, 0o755); err != nil {
		root.Close()
		return nil, fmt.Errorf("recstore: %s: %w", dir, err)
	}
	s := &fileStore{dir: dir, root: root}
	s.removeStaleTmp()
	return s, nil
}

func (s *fileStore) String() string { return "file://" + filepath.ToSlash(s.dir) }

// removeStaleTmp deletes temp files of uploads that can no longer finish.
func (s *fileStore) removeStaleTmp() {
	d, err := s.root.Open(tmpDir)
	if err != nil {
		return
	}
	defer d.Close()
	entries, _ := d.ReadDir(-1)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
			_ = s.root.RemoveAll(tmpDir + "/" + e.Name())
		}
	}
}

// validKey adds the file store's one reservation to ValidKey: the temp
// directory is not an object.
func (s *fileStore) validKey(key string) bool {
	return ValidKey(key) && key != tmpDir && !strings.HasPrefix(key, tmpDir+"/")
}

func (s *fileStore) validPrefix(prefix string, emptyOK bool) bool {
	return validPrefix(prefix, emptyOK) && (prefix == "" || s.validKey(strings.TrimSuffix(prefix, "/")))
}

// absent reports whether err means there is nothing at the path, including
// a path through a file ("a/b" where "a" is a file).
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func (s *fileStore) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if !s.validKey(key) {
		return ErrInvalidKey
	}
	if size < 0 {
		return fmt.Errorf("recstore: put %s: negative size %d", key, size)
	}
	if err := s.root.MkdirAll(tmpDir, 0o755); err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	tmp := tmpDir + "/" + rand.Text() + ".part"
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = s.root.Remove(tmp)
		}
	}()
	if _, err = io.Copy(f, &exactReader{r: ctxReader{ctx, r}, n: size}); err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	// The data must be on disk before the name points at it, or a crash
	// could publish an empty or partial file.
	if err = f.Sync(); err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("recstore: put %s: %w", key, err)
	}
	// A concurrent DeletePrefix may remove the parent between MkdirAll and
	// Rename: make it again and retry a few times.
	dir := path.Dir(key)
	for try := 0; ; try++ {
		if err = s.root.MkdirAll(dir, 0o755); err == nil {
			if err = s.root.Rename(tmp, key); err == nil {
				break
			}
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 3 {
			return fmt.Errorf("recstore: put %s: %w", key, err)
		}
	}
	// Best effort: make the new name durable too (not every filesystem
	// can sync a directory).
	if d, derr := s.root.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func (s *fileStore) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, Info, error) {
	if !s.validKey(key) {
		return nil, Info{}, ErrInvalidKey
	}
	if err := checkRange(offset, length); err != nil {
		return nil, Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Info{}, err
	}
	f, err := s.root.Open(key)
	if err != nil {
		if absent(err) {
			return nil, Info{}, ErrNotFound
		}
		return nil, Info{}, fmt.Errorf("recstore: get %s: %w", key, err)
	}
	// Info comes from the open file, so it describes the bytes we read
	// even if a Put renames a new file into place meanwhile.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("recstore: get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, Info{}, ErrNotFound
	}
	info := fileInfo(key, fi)
	if offset > info.Size {
		f.Close()
		return nil, info, fmt.Errorf("get %s offset %d size %d: %w", key, offset, info.Size, errRange)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, Info{}, fmt.Errorf("recstore: get %s: %w", key, err)
		}
	}
	n := info.Size - offset
	if length >= 0 && length < n {
		n = length
	}
	return readCloser{io.LimitReader(f, n), f}, info, nil
}

func (s *fileStore) Stat(ctx context.Context, key string) (Info, error) {
	if !s.validKey(key) {
		return Info{}, ErrInvalidKey
	}
	fi, err := s.root.Stat(key)
	if err != nil {
		if absent(err) {
			return Info{}, ErrNotFound
		}
		return Info{}, fmt.Errorf("recstore: stat %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, ErrNotFound
	}
	return fileInfo(key, fi), nil
}

// fileInfo describes a file; the ETag is nginx's: modification time in
// seconds and size, both in hex.
func fileInfo(key string, fi fs.FileInfo) Info {
	return Info{
		Key:     key,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
		ETag:    fmt.Sprintf(`"%x-%x"`, fi.ModTime().Unix(), fi.Size()),
	}
}

func (s *fileStore) List(ctx context.Context, prefix string, limit int) ([]Info, error) {
	if !s.validPrefix(prefix, true) {
		return nil, ErrInvalidKey
	}
	start := "."
	if prefix != "" {
		start = strings.TrimSuffix(prefix, "/")
	}
	var out []Info
	err := fs.WalkDir(s.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Gone meanwhile (a concurrent delete), or no such prefix.
			if absent(err) {
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() {
			if p == tmpDir {
				return fs.SkipDir
			}
			return nil
		}
		// Regular files only: a symlink is not an object, and the key
		// must lie under the prefix (start may itself be a file).
		if !d.Type().IsRegular() || !strings.HasPrefix(p, prefix) || !s.validKey(p) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if absent(err) {
				return nil
			}
			return err
		}
		out = append(out, fileInfo(p, fi))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recstore: list %s: %w", prefix, err)
	}
	// The walk goes directory by directory ("a/b" before "a-c"); keys sort
	// bytewise, as S3 lists them.
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	if !s.validKey(key) {
		return ErrInvalidKey
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		if absent(err) {
			return nil
		}
		return fmt.Errorf("recstore: delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a directory is not an object
	}
	if err := s.root.Remove(key); err != nil && !absent(err) {
		return fmt.Errorf("recstore: delete %s: %w", key, err)
	}
	return nil
}

func (s *fileStore) DeletePrefix(ctx context.Context, prefix string) error {
	if !s.validPrefix(prefix, false) {
		return ErrInvalidKey
	}
	dir := strings.TrimSuffix(prefix, "/")
	fi, err := s.root.Lstat(dir)
	if err != nil {
		if absent(err) {
			return nil
		}
		return fmt.Errorf("recstore: delete %s: %w", prefix, err)
	}
	if !fi.IsDir() {
		return nil // a file "a" is not under "a/"
	}
	if err := s.root.RemoveAll(dir); err != nil {
		return fmt.Errorf("recstore: delete %s: %w", prefix, err)
	}
	return nil
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
