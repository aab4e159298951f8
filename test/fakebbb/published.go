package fakebbb

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"html"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A recording's playback, as BBB's "video" format lays it out: the node's
// nginx serves /var/bigbluebutton/published/video/<recordID>/ at
// /playback/video/<recordID>/, where index.html plays video-0.m4v.
const (
	playbackFormat = "video"
	mediaFile      = "video-0.m4v"
	indexFile      = "index.html"
	metadataFile   = "metadata.xml"
)

// Simple names only: no separators, no leading dot, so no "..".
var (
	simpleRecordID = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	simpleFileName = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// RecordingMedia is the content of a recording's video-0.m4v: size
// pseudo-random bytes derived from recordID alone, so every write of it,
// and a test's own copy, is the same.
func RecordingMedia(recordID string, size int) []byte {
	seed := sha256.Sum256([]byte("fakebbb " + mediaFile + "\x00" + recordID))
	b := make([]byte, max(size, 0))
	rand.NewChaCha8(seed).Read(b)
	return b
}

// recordingIndex is the recording's index.html: a page playing the media.
func recordingIndex(r *recording) []byte {
	return []byte("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.EscapeString(r.name) +
		"</title></head>\n<body><video src=\"" + mediaFile + "\" controls></video></body></html>\n")
}

// recordingMetadata is the recording's metadata.xml, in the shape BBB's
// recording scripts write and bbb-web reads (RecordingMetadata).
func recordingMetadata(r *recording, mediaBytes int) []byte {
	x := &xmlWriter{}
	x.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.open("recording")
	x.leaf("id", r.id)
	x.leaf("state", r.state)
	x.leafBool("published", r.state == statePublished)
	x.leafInt("start_time", r.startTime)
	x.leafInt("end_time", r.endTime)
	x.leafInt("participants", int64(r.participants))
	x.leafInt("raw_size", 1<<20+(r.endTime-r.startTime)*16)
	breakout := r.meta["isBreakout"]
	if breakout == "" {
		breakout = "false"
	}
	x.open("meeting", "id", r.internalMeetingID, "externalId", r.meetingID, "name", r.name, "breakout", breakout)
	x.close("meeting")
	x.kvs("meta", r.meta)
	x.open("playback")
	x.leaf("format", playbackFormat)
	x.leaf("link", r.playbackURL())
	x.leafInt("processing_time", 1500)
	x.leafInt("duration", r.endTime-r.startTime)
	x.leafInt("size", int64(mediaBytes))
	x.close("playback")
	x.close("recording")
	x.b.WriteByte('\n')
	return x.b.Bytes()
}

// recordingDir is where a recording in state lives on disk, as BBB keeps
// them: published/, and unpublished/ and deleted/ beside it.
func (s *Server) recordingDir(state, id string) string {
	switch state {
	case statePublished:
		return filepath.Join(s.pubDir, playbackFormat, id)
	case stateUnpublished, stateDeleted:
		return filepath.Join(filepath.Dir(s.pubDir), state, playbackFormat, id)
	}
	return ""
}

// placeRecording brings the recording's files on disk in line with its
// state and metadata, when the node has a published dir. Called with s.mu
// held, so the tree changes in the order of the calls.
func (s *Server) placeRecording(r *recording) {
	if s.pubDir == "" {
		return
	}
	if err := s.place(r); err != nil {
		s.errLog.Printf("fakebbb: recording %s: %v", r.id, err)
	}
}

func (s *Server) place(r *recording) error {
	if !simpleRecordID.MatchString(r.id) {
		return errors.New("record ID is not a simple name")
	}
	target := s.recordingDir(r.state, r.id)
	if target == "" {
		return nil
	}
	meta := recordingMetadata(r, s.recBytes)
	// A move: metadata.xml is brought up to date first, then the whole
	// directory is renamed, so it appears complete and right.
	for _, st := range []string{statePublished, stateUnpublished, stateDeleted} {
		cur := s.recordingDir(st, r.id)
		if st == r.state || cur == target || !isDir(cur) {
			continue
		}
		if err := writeFileAtomic(filepath.Join(cur, metadataFile), meta); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.RemoveAll(target); err != nil {
			return err
		}
		return os.Rename(cur, target)
	}
	if r.state == stateDeleted {
		return nil // nothing on disk to move
	}
	// In place, or new: the media and page if missing, metadata.xml last
	// (an agent takes a directory with metadata.xml as complete).
	if !isFile(filepath.Join(target, mediaFile)) {
		if err := writeFileAtomic(filepath.Join(target, mediaFile), RecordingMedia(r.id, s.recBytes)); err != nil {
			return err
		}
	}
	if !isFile(filepath.Join(target, indexFile)) {
		if err := writeFileAtomic(filepath.Join(target, indexFile), recordingIndex(r)); err != nil {
			return err
		}
	}
	return writeFileAtomic(filepath.Join(target, metadataFile), meta)
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it there, so a reader sees the old file or the whole new one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// playback serves /playback/video/<recordID>/<file> as the node's nginx
// does: GET and HEAD, ranges, the directory as its index.html. With a
// published dir, from the files there (an unpublished or deleted
// recording's are elsewhere: 404); without one, the same files made in
// memory for a published recording.
func (s *Server) playback(w http.ResponseWriter, r *http.Request, rest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id, file, dir := strings.Cut(rest, "/")
	if !simpleRecordID.MatchString(id) {
		http.NotFound(w, r)
		return
	}
	if !dir {
		// nginx redirects a directory to its path with a slash.
		http.Redirect(w, r, playbackPrefix+id+"/", http.StatusMovedPermanently)
		return
	}
	if file == "" {
		file = indexFile
	}
	if !simpleFileName.MatchString(file) {
		http.NotFound(w, r)
		return
	}
	setContentType(w, file)
	if s.pubDir != "" {
		s.playbackFile(w, r, filepath.Join(s.pubDir, playbackFormat, id, file))
		return
	}
	s.mu.Lock()
	rec := s.recordings[id]
	var content []byte
	var mod time.Time
	if rec != nil && rec.state == statePublished {
		mod = time.UnixMilli(rec.endTime)
		switch file {
		case indexFile:
			content = recordingIndex(rec)
		case mediaFile:
			content = RecordingMedia(rec.id, s.recBytes)
		case metadataFile:
			content = recordingMetadata(rec, s.recBytes)
		}
	}
	s.mu.Unlock()
	if content == nil {
		w.Header().Del("Content-Type")
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, file, mod, bytes.NewReader(content))
}

func (s *Server) playbackFile(w http.ResponseWriter, r *http.Request, path string) {
	f, err := os.Open(path)
	if err != nil {
		w.Header().Del("Content-Type")
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(w, r)
		} else {
			http.Error(w, "forbidden", http.StatusForbidden)
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		w.Header().Del("Content-Type")
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func setContentType(w http.ResponseWriter, file string) {
	var ct string
	switch filepath.Ext(file) {
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".m4v", ".mp4":
		ct = "video/mp4"
	case ".xml":
		ct = "text/xml; charset=utf-8"
	case ".vtt":
		ct = "text/vtt; charset=utf-8"
	default:
		return // ServeContent guesses
	}
	w.Header().Set("Content-Type", ct)
}
