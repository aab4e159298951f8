// Package shippingtest is an in-memory peer for the recording transfer
// protocol (adminapi/transfer.go), for tests of the shipping package and
// of its users (the agent, conclavectl import). It checks what the real
// peer checks: the offer's limits, every chunk's size and SHA-256, and
// every assembled file's size and SHA-256.
package shippingtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/conclave-lb/conclave/adminapi"
)

// Server is the fake peer. Set its fields before the first request.
type Server struct {
	*httptest.Server

	// Token, when set, is the bearer token every request must carry.
	Token string
	// Unavailable makes offers fail with 409 "unavailable" (no central store).
	Unavailable bool
	// BeforeChunk, when set, may refuse a chunk PUT: a non-zero status is
	// answered (with code "unavailable") and the chunk is not kept.
	BeforeChunk func(file, chunk int) int
	// CorruptOnComplete: that many completes find the first non-empty file damaged (its
	// chunks are dropped, 422) before one succeeds.
	CorruptOnComplete int

	mu        sync.Mutex
	transfers map[string]*transfer
	central   map[string]map[string][]byte // format/recordID → path → bytes
	stats     Stats
}

// Stats counts what the server received.
type Stats struct {
	Offers, Completes, Chunks int
	ChunkBytes                int64
	BadAuth                   int
	Backends                  []string // the offers' Backend fields, in order
}

type transfer struct {
	id     string
	offer  adminapi.TransferOffer
	chunks map[[2]int][]byte
	state  string
}

// New starts a server; it is closed when the test ends (call Close).
func New() *Server {
	s := &Server{transfers: map[string]*transfer{}, central: map[string]map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Backends = append([]string(nil), st.Backends...)
	return st
}

// Central returns the files of a central recording format (nil if none).
func (s *Server) Central(format, recordID string) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.central[format+"/"+recordID]
}

// Staged is how many chunks of the transfer for (format, recordID) are staged.
func (s *Server) Staged(format, recordID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.transfers {
		if t.offer.Format == format && t.offer.RecordID == recordID {
			n += len(t.chunks)
		}
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, format string, a ...any) {
	writeJSON(w, status, adminapi.Error{Error: fmt.Sprintf(format, a...), Code: code})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		s.stats.BadAuth++
		writeErr(w, 401, "unauthorized", "a valid bearer token is required")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/transfers")
	if !ok {
		writeErr(w, 404, "not_found", "no route %s", r.URL.Path)
		return
	}
	p := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case rest == "" && r.Method == http.MethodPost:
		s.offer(w, r)
	case len(p) == 2 && p[1] == "complete" && r.Method == http.MethodPost:
		s.complete(w, p[0])
	case len(p) == 3 && r.Method == http.MethodPut:
		s.chunk(w, r, p[0], p[1], p[2])
	default:
		writeErr(w, 404, "not_found", "no route %s %s", r.Method, r.URL.Path)
	}
}

func nchunks(size, cs int64) int64 { return (size + cs - 1) / cs }

func validate(o *adminapi.TransferOffer) error {
	if o.Backend == "" || o.RecordID == "" || o.Format == "" {
		return fmt.Errorf("backend, record_id and format are required")
	}
	if o.ChunkSize < adminapi.TransferMinChunk || o.ChunkSize > adminapi.TransferMaxChunk {
		return fmt.Errorf("chunk_size %d out of range", o.ChunkSize)
	}
	if len(o.Files) == 0 || len(o.Files) > adminapi.TransferMaxFiles {
		return fmt.Errorf("%d files", len(o.Files))
	}
	var total int64
	seen := map[string]bool{}
	for _, f := range o.Files {
		if f.Path == "" || len(f.Path) > adminapi.TransferMaxPath || strings.HasPrefix(f.Path, "/") ||
			path.Clean(f.Path) != f.Path || f.Path == ".." || strings.HasPrefix(f.Path, "../") || seen[f.Path] {
			return fmt.Errorf("bad path %q", f.Path)
		}
		seen[f.Path] = true
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size || strings.ToLower(f.SHA256) != f.SHA256 {
			return fmt.Errorf("bad sha256 for %q", f.Path)
		}
		if f.Size < 0 {
			return fmt.Errorf("bad size for %q", f.Path)
		}
		total += f.Size
	}
	if total > adminapi.TransferMaxBytes {
		return fmt.Errorf("too large")
	}
	return nil
}

func (s *Server) offer(w http.ResponseWriter, r *http.Request) {
	s.stats.Offers++
	var o adminapi.TransferOffer
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		writeErr(w, 400, "invalid", "bad JSON: %v", err)
		return
	}
	s.stats.Backends = append(s.stats.Backends, o.Backend)
	if s.Unavailable {
		writeErr(w, 409, "unavailable", "no central recording store is configured")
		return
	}
	if err := validate(&o); err != nil {
		writeErr(w, 400, "invalid", "%v", err)
		return
	}
	canon, _ := json.Marshal(o)
	sum := sha256.Sum256(canon)
	id := hex.EncodeToString(sum[:8])
	t := s.transfers[id]
	if t == nil {
		t = &transfer{id: id, offer: o, chunks: map[[2]int][]byte{}, state: "pending"}
		s.transfers[id] = t
	}
	writeJSON(w, 200, s.status(t))
}

func (s *Server) status(t *transfer) adminapi.TransferStatus {
	st := adminapi.TransferStatus{ID: t.id, State: t.state}
	for i, f := range t.offer.Files {
		st.Bytes += f.Size
		for c := range nchunks(f.Size, t.offer.ChunkSize) {
			if b, ok := t.chunks[[2]int{i, int(c)}]; ok || t.state == "central" {
				st.Have += int64(len(b))
				continue
			}
			st.Missing = append(st.Missing, adminapi.TransferChunk{File: i, Chunk: int(c)})
		}
	}
	if t.state == "central" {
		st.Have = st.Bytes
	} else if len(st.Missing) == 0 {
		st.State = "staged"
	} else {
		st.State = "pending"
	}
	return st
}

func (s *Server) chunk(w http.ResponseWriter, r *http.Request, id, fs, cs string) {
	t := s.transfers[id]
	if t == nil {
		writeErr(w, 404, "not_found", "no transfer %s", id)
		return
	}
	fi, err1 := strconv.Atoi(fs)
	ci, err2 := strconv.Atoi(cs)
	if err1 != nil || err2 != nil || fi < 0 || fi >= len(t.offer.Files) || ci < 0 || int64(ci) >= nchunks(t.offer.Files[fi].Size, t.offer.ChunkSize) {
		writeErr(w, 400, "invalid", "no chunk %s/%s", fs, cs)
		return
	}
	if s.BeforeChunk != nil {
		if code := s.BeforeChunk(fi, ci); code != 0 {
			io.Copy(io.Discard, r.Body)
			writeErr(w, code, "unavailable", "chunk refused by the test")
			return
		}
	}
	f := t.offer.Files[fi]
	want := min(t.offer.ChunkSize, f.Size-int64(ci)*t.offer.ChunkSize)
	if r.ContentLength != want {
		writeErr(w, 400, "invalid", "Content-Length %d, chunk is %d bytes", r.ContentLength, want)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, want+1))
	if err != nil || int64(len(data)) != want {
		writeErr(w, 400, "invalid", "body of %d bytes, chunk is %d", len(data), want)
		return
	}
	sum := sha256.Sum256(data)
	if r.Header.Get(adminapi.TransferSHA256Header) != hex.EncodeToString(sum[:]) {
		writeErr(w, 422, "invalid", "chunk does not match %s", adminapi.TransferSHA256Header)
		return
	}
	s.stats.Chunks++
	s.stats.ChunkBytes += want
	t.chunks[[2]int{fi, ci}] = data
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) complete(w http.ResponseWriter, id string) {
	s.stats.Completes++
	t := s.transfers[id]
	if t == nil {
		writeErr(w, 404, "not_found", "no transfer %s", id)
		return
	}
	if t.state == "central" {
		writeJSON(w, 200, s.status(t))
		return
	}
	if st := s.status(t); len(st.Missing) > 0 {
		writeJSON(w, 409, st) // as the real peer: the status, no error code
		return
	}
	if s.CorruptOnComplete > 0 {
		s.CorruptOnComplete--
		for i, f := range t.offer.Files { // damage the first non-empty file
			if k := [2]int{i, 0}; f.Size > 0 {
				t.chunks[k] = append([]byte{^t.chunks[k][0]}, t.chunks[k][1:]...)
				break
			}
		}
	}
	files := map[string][]byte{}
	for i, f := range t.offer.Files {
		var b bytes.Buffer
		for c := range nchunks(f.Size, t.offer.ChunkSize) {
			b.Write(t.chunks[[2]int{i, int(c)}])
		}
		sum := sha256.Sum256(b.Bytes())
		if int64(b.Len()) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
			for c := range nchunks(f.Size, t.offer.ChunkSize) {
				delete(t.chunks, [2]int{i, int(c)})
			}
			writeJSON(w, 422, s.status(t)) // as the real peer: the status, its chunks missing again
			return
		}
		files[f.Path] = append([]byte{}, b.Bytes()...)
	}
	t.state = "central"
	t.chunks = map[[2]int][]byte{}
	s.central[t.offer.Format+"/"+t.offer.RecordID] = files
	writeJSON(w, 200, s.status(t))
}
