// Package shipping moves published recordings to the cluster's central
// storage over the admin API's transfer protocol (adminapi/transfer.go):
// Scan finds the units (one recording format of one recording), Manifest
// describes one, and a Shipper offers it, sends the chunks the cluster
// does not have yet and completes it. Shipping resumes by design: an
// interrupted unit offered again gets the same transfer and only the
// chunks still missing.
package shipping

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/conclave-lb/conclave/adminapi"
)

// MetadataFile is the file BBB writes into every published recording
// format's directory; a directory without it is not (yet) a recording.
const MetadataFile = "metadata.xml"

// DefaultPublishedDir is where BBB publishes recordings.
const DefaultPublishedDir = "/var/bigbluebutton/published"

// Unit is one published recording format: <published>/<Format>/<RecordID>/.
type Unit struct {
	Format, RecordID string
	Dir              string    // the unit's directory
	Newest           time.Time // the newest modification time of its files and directories
}

// String is format/recordID.
func (u Unit) String() string { return u.Format + "/" + u.RecordID }

// SimpleName reports whether s is usable as a format or record ID: made of
// [A-Za-z0-9._-], and not "." or "..".
func SimpleName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Scan lists every <dir>/<format>/<recordID>/ holding a metadata.xml, by
// format then record ID. Names that are not simple, symbolic links and
// anything but directories are skipped. A missing or unreadable dir is an
// error; an unreadable format directory is skipped.
func Scan(dir string) ([]Unit, error) {
	formats, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Unit
	for _, f := range formats {
		if !f.IsDir() || !SimpleName(f.Name()) {
			continue
		}
		fdir := filepath.Join(dir, f.Name())
		recs, err := os.ReadDir(fdir)
		if err != nil {
			continue
		}
		for _, r := range recs {
			if !r.IsDir() || !SimpleName(r.Name()) {
				continue
			}
			rdir := filepath.Join(fdir, r.Name())
			if fi, err := os.Lstat(filepath.Join(rdir, MetadataFile)); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			u := Unit{Format: f.Name(), RecordID: r.Name(), Dir: rdir}
			u.Newest = newest(rdir)
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Format != out[j].Format {
			return out[i].Format < out[j].Format
		}
		return out[i].RecordID < out[j].RecordID
	})
	return out, nil
}

// newest is the latest modification time below dir (symbolic links not
// followed). An unreadable entry counts as modified now: it is not settled.
func newest(dir string) time.Time {
	var t time.Time
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			t = time.Now()
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			t = time.Now()
			return nil
		}
		if fi.ModTime().After(t) {
			t = fi.ModTime()
		}
		return nil
	})
	return t
}

// formatName is the protocol's rule for formats.
func formatName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// shippablePath is the protocol's rule for a file's path (the central
// store's key rule): valid UTF-8, no control character or backslash.
func shippablePath(p string) bool {
	if !utf8.ValidString(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// ErrTooLarge: a unit is past the transfer protocol's limits.
var ErrTooLarge = errors.New("past the transfer limits")

// Manifest describes u as an offer: every regular file below u.Dir with
// its size and SHA-256, paths relative and slash-separated, in lexical
// order. Symbolic links (which could point anywhere) and special files are
// skipped. chunkSize 0 is adminapi.TransferDefaultSize. The caller sets
// Backend.
func Manifest(u Unit, chunkSize int64) (adminapi.TransferOffer, error) {
	if chunkSize == 0 {
		chunkSize = adminapi.TransferDefaultSize
	}
	if chunkSize < adminapi.TransferMinChunk || chunkSize > adminapi.TransferMaxChunk {
		return adminapi.TransferOffer{}, fmt.Errorf("chunk size %d: want %d to %d bytes", chunkSize, adminapi.TransferMinChunk, adminapi.TransferMaxChunk)
	}
	if !SimpleName(u.Format) || !SimpleName(u.RecordID) {
		return adminapi.TransferOffer{}, fmt.Errorf("%s: format and record ID must be simple names", u)
	}
	if !formatName(u.Format) {
		return adminapi.TransferOffer{}, fmt.Errorf("%s: the transfer protocol takes formats of 1 to 64 of [a-z0-9_-]", u)
	}
	offer := adminapi.TransferOffer{RecordID: u.RecordID, Format: u.Format, ChunkSize: chunkSize, Files: []adminapi.TransferFile{}}
	if fi, err := os.Lstat(u.Dir); err != nil {
		return offer, err
	} else if !fi.IsDir() {
		return offer, fmt.Errorf("%s: not a directory", u.Dir)
	}
	var total int64
	err := filepath.WalkDir(u.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil // directories are walked; links and special files skipped
		}
		rel, err := filepath.Rel(u.Dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "" || strings.HasPrefix(rel, "../") || rel == ".." || strings.HasPrefix(rel, "/") {
			return fmt.Errorf("%s: outside %s", p, u.Dir)
		}
		if !shippablePath(rel) {
			return fmt.Errorf("%s: a name with control characters, a backslash or invalid UTF-8 cannot be shipped", p)
		}
		if len(rel) > adminapi.TransferMaxPath {
			return fmt.Errorf("%s: %w: path longer than %d bytes", p, ErrTooLarge, adminapi.TransferMaxPath)
		}
		if len(offer.Files) >= adminapi.TransferMaxFiles {
			return fmt.Errorf("%s: %w: more than %d files", u.Dir, ErrTooLarge, adminapi.TransferMaxFiles)
		}
		size, sum, err := hashFile(p)
		if err != nil {
			return err
		}
		if total += size; total > adminapi.TransferMaxBytes {
			return fmt.Errorf("%s: %w: more than %d bytes", u.Dir, ErrTooLarge, int64(adminapi.TransferMaxBytes))
		}
		offer.Files = append(offer.Files, adminapi.TransferFile{Path: rel, Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return offer, err
	}
	return offer, nil
}

// openRegular opens p, refusing anything that is not (or is no longer) the
// regular file a no-follow stat saw.
func openRegular(p string) (*os.File, os.FileInfo, error) {
	before, err := os.Lstat(p)
	if err != nil {
		return nil, nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !os.SameFile(before, fi) {
		f.Close()
		return nil, nil, fmt.Errorf("%s: replaced while being read", p)
	}
	return f, fi, nil
}

func hashFile(p string) (int64, string, error) {
	f, _, err := openRegular(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// chunks is how many chunks a file of size has (an empty file has none).
func chunks(size, chunkSize int64) int64 {
	return (size + chunkSize - 1) / chunkSize
}

// chunkLen is the length of chunk c of a file of size.
func chunkLen(size, chunkSize int64, c int64) int64 {
	return min(chunkSize, size-c*chunkSize)
}
