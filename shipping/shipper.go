package shipping

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
)

// Defaults.
const (
	// MaxRounds bounds the complete → 422 → resend rounds of one Ship.
	MaxRounds = 3
	// maxAnswer bounds an answer's body (an offer's answer gets more room
	// per chunk it may list as missing).
	maxAnswer = 1 << 20
	// requestTimeout bounds one request, plus the time its body takes at
	// the configured rate.
	requestTimeout = 60 * time.Second
	// verifyRate is the slowest a peer is expected to assemble and hash
	// a recording on complete (bytes per second).
	verifyRate = 32 << 20
)

// request is one call to a peer's admin API.
type request struct {
	step, method, path string
	body               *body // nil: none
	ctype              string
	hdr                http.Header
	limit              int64         // the answer's bound
	out                any           // a 2xx answer's JSON goes here (nil: ignored)
	extra              time.Duration // added to the request's deadline
}

// Shipper ships units to the cluster, one request at a time.
type Shipper struct {
	// Peers lists the peers' HTTP base URLs (e.g. http://10.0.0.1:42353);
	// asked on every Ship. A peer that cannot be reached (or answers
	// 502/503/504) is left for the next: any peer takes any step.
	Peers     func() []string
	Token     string       // bearer token (never logged)
	Backend   string       // the offers' Backend: the BBB API URL or backend ID
	Frontend  string       // the offers' Frontend: imports of recordings made before Conclave (admin token)
	Client    *http.Client // default: no overall timeout (each request has its own)
	Rate      int64        // bytes per second of chunk data; 0 = unlimited
	ChunkSize int64        // 0 = adminapi.TransferDefaultSize
	Progress  *Progress    // counters; one is made when nil
	Log       *slog.Logger // default: discard

	once  sync.Once
	lim   *limiter
	mu    sync.Mutex
	next  int // index of the peer to try first (the last that answered)
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

// Error is a failed step of a Ship.
type Error struct {
	Step    string // manifest, offer, chunk, complete, read
	Peer    string // the peer that answered (or the last one tried)
	Status  int    // HTTP status; 0 when no peer answered
	Code    string // the admin API's error code (unavailable, not_found, conflict, …)
	Message string
	// Unreachable: no peer answered at all.
	Unreachable bool
	Err         error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Step)
	if e.Peer != "" {
		b.WriteString(" at " + e.Peer)
	}
	b.WriteString(": ")
	switch {
	case e.Status != 0 && e.Message != "":
		fmt.Fprintf(&b, "%s (HTTP %d", e.Message, e.Status)
		if e.Code != "" {
			b.WriteString(", " + e.Code)
		}
		b.WriteString(")")
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d %s", e.Status, http.StatusText(e.Status))
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode is the admin API's error code in err ("" if none).
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrorStatus is the HTTP status in err (0 if none).
func ErrorStatus(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Unreachable reports whether err is a step no peer answered.
func Unreachable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Unreachable
}

// NoCentralStore reports whether err is the offer refused because the
// cluster has no central recording store configured (409 unavailable).
func NoCentralStore(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Step == "offer" && e.Status == http.StatusConflict && e.Code == "unavailable"
}

// Retryable reports whether shipping the unit later may succeed as it
// is: the cluster has no central store yet (unavailable), does not know
// the recording yet (not_found, conflict), or could not be reached.
func Retryable(err error) bool {
	switch ErrorCode(err) {
	case "unavailable", "not_found", "conflict":
		return true
	}
	s := ErrorStatus(err)
	return Unreachable(err) || s == http.StatusTooManyRequests || s >= 500
}

func (s *Shipper) init() {
	s.once.Do(func() {
		if s.Progress == nil {
			s.Progress = &Progress{}
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.Client == nil {
			s.Client = &http.Client{}
		}
		if s.now == nil {
			s.now = time.Now
		}
		if s.sleep == nil {
			s.sleep = sleepCtx
		}
		s.lim = newLimiter(s.Rate, s.now)
	})
}

// Ship makes u central: it offers u's manifest, sends the chunks the
// cluster is missing (paced to Rate), completes the transfer, and on a
// file that fails verification (422) offers again and resends, at most
// MaxRounds times. It returns the last status (State "central" on
// success). An interrupted Ship resumes where it stopped when called again.
func (s *Shipper) Ship(ctx context.Context, u Unit) (adminapi.TransferStatus, error) {
	s.init()
	st, err := s.ship(ctx, u)
	if err != nil {
		s.Progress.failed.Add(1)
		return st, err
	}
	s.Progress.done.Add(1)
	return st, nil
}

func (s *Shipper) ship(ctx context.Context, u Unit) (adminapi.TransferStatus, error) {
	offer, err := Manifest(u, s.ChunkSize)
	if err != nil {
		return adminapi.TransferStatus{}, &Error{Step: "manifest", Err: err}
	}
	offer.Backend, offer.Frontend = s.Backend, s.Frontend
	body, err := json.Marshal(offer)
	if err != nil {
		return adminapi.TransferStatus{}, &Error{Step: "manifest", Err: err}
	}
	var total, nchunks int64
	for _, f := range offer.Files {
		total += f.Size
		nchunks += chunks(f.Size, offer.ChunkSize)
	}
	s.Progress.offered.Add(total)
	answerLimit := maxAnswer + 40*nchunks

	files := &openFiles{dir: u.Dir, offer: &offer, open: map[int]*os.File{}}
	defer files.close()

	var st adminapi.TransferStatus
	for round := 1; ; round++ {
		st = adminapi.TransferStatus{}
		if err := s.call(ctx, request{step: "offer", method: http.MethodPost, path: "/api/v1/transfers",
			body: jsonBody(body), ctype: "application/json", limit: answerLimit, out: &st}); err != nil {
			return st, err
		}
		if st.ID == "" {
			return st, &Error{Step: "offer", Message: "the answer names no transfer ID"}
		}
		missing, err := checkMissing(&offer, st.Missing)
		if err != nil {
			return st, &Error{Step: "offer", Err: err}
		}
		if round == 1 {
			s.Progress.resumed.Add(total - missing)
		}
		if st.State == "central" {
			return st, nil
		}
		for _, c := range st.Missing {
			if err := s.sendChunk(ctx, st.ID, files, c); err != nil {
				return st, err
			}
		}
		var done adminapi.TransferStatus
		err = s.call(ctx, request{step: "complete", method: http.MethodPost, path: "/api/v1/transfers/" + url.PathEscape(st.ID) + "/complete",
			limit: answerLimit, out: &done, extra: time.Duration(float64(total) / verifyRate * float64(time.Second))})
		if err == nil {
			if done.ID == "" {
				done.ID = st.ID
			}
			if done.State != "" && done.State != "central" {
				return done, &Error{Step: "complete", Message: fmt.Sprintf("transfer %s is %s, not central", st.ID, done.State)}
			}
			return done, nil
		}
		// 422: a file failed verification and its chunks were dropped;
		// 409 with no error code: chunks went missing. Either way, the
		// next offer lists what to send again.
		status := ErrorStatus(err)
		if !(status == http.StatusUnprocessableEntity || status == http.StatusConflict && ErrorCode(err) == "") || round >= MaxRounds {
			return st, err
		}
		s.Log.Warn("recording transfer: chunks are needed again; offering again", "unit", u.String(),
			"transfer", st.ID, "round", round, "err", err)
	}
}

// checkMissing validates the chunks an answer lists and sums their bytes.
func checkMissing(offer *adminapi.TransferOffer, missing []adminapi.TransferChunk) (int64, error) {
	var n int64
	for _, c := range missing {
		if c.File < 0 || c.File >= len(offer.Files) {
			return 0, fmt.Errorf("missing chunk names file %d of %d", c.File, len(offer.Files))
		}
		f := offer.Files[c.File]
		if c.Chunk < 0 || int64(c.Chunk) >= chunks(f.Size, offer.ChunkSize) {
			return 0, fmt.Errorf("missing chunk %d of %s: it has %d", c.Chunk, f.Path, chunks(f.Size, offer.ChunkSize))
		}
		n += chunkLen(f.Size, offer.ChunkSize, int64(c.Chunk))
	}
	return n, nil
}

// openFiles keeps a unit's files open while its chunks are sent.
type openFiles struct {
	dir   string
	offer *adminapi.TransferOffer
	open  map[int]*os.File
}

func (o *openFiles) get(i int) (*os.File, error) {
	if f, ok := o.open[i]; ok {
		return f, nil
	}
	tf := o.offer.Files[i]
	f, fi, err := openRegular(filepath.Join(o.dir, filepath.FromSlash(tf.Path)))
	if err != nil {
		return nil, err
	}
	if fi.Size() != tf.Size {
		f.Close()
		return nil, fmt.Errorf("%s changed since the manifest: %d bytes, was %d", tf.Path, fi.Size(), tf.Size)
	}
	o.open[i] = f
	return f, nil
}

func (o *openFiles) close() {
	for _, f := range o.open {
		f.Close()
	}
}

// sendChunk reads one chunk and PUTs it, paced.
func (s *Shipper) sendChunk(ctx context.Context, id string, files *openFiles, c adminapi.TransferChunk) error {
	tf := files.offer.Files[c.File]
	cs := files.offer.ChunkSize
	n := chunkLen(tf.Size, cs, int64(c.Chunk))
	f, err := files.get(c.File)
	if err != nil {
		return &Error{Step: "read", Err: err}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(io.NewSectionReader(f, int64(c.Chunk)*cs, n), buf); err != nil {
		return &Error{Step: "read", Err: fmt.Errorf("%s chunk %d: %w", tf.Path, c.Chunk, err)}
	}
	sum := sha256.Sum256(buf)
	hdr := http.Header{adminapi.TransferSHA256Header: {hex.EncodeToString(sum[:])}}
	path := "/api/v1/transfers/" + url.PathEscape(id) + "/" + strconv.Itoa(c.File) + "/" + strconv.Itoa(c.Chunk)
	step := fmt.Sprintf("chunk %d of %s", c.Chunk, tf.Path)
	b := &body{n: n, open: func(ctx context.Context) io.Reader {
		return &pacedReader{ctx: ctx, r: bytes.NewReader(buf), l: s.lim, sleep: s.sleep}
	}}
	if err := s.call(ctx, request{step: step, method: http.MethodPut, path: path, body: b,
		ctype: "application/octet-stream", hdr: hdr, limit: maxAnswer}); err != nil {
		return err
	}
	s.Progress.sent.Add(n)
	return nil
}

// body is a request body, made afresh for each attempt (bound to the
// attempt's context), and its exact length.
type body struct {
	n    int64
	open func(ctx context.Context) io.Reader
}

func jsonBody(b []byte) *body {
	return &body{n: int64(len(b)), open: func(context.Context) io.Reader { return bytes.NewReader(b) }}
}

// call sends one request to the peers in turn, starting with the last one
// that answered, until one answers other than 502/503/504 or all have
// been tried. A 2xx answer is decoded into out (unless nil); anything
// else is an *Error.
func (s *Shipper) call(ctx context.Context, r request) error {
	step := r.step
	var peers []string
	if s.Peers != nil {
		peers = s.Peers()
	}
	if len(peers) == 0 {
		return &Error{Step: step, Unreachable: true, Message: "no peer known"}
	}
	s.mu.Lock()
	start := s.next
	s.mu.Unlock()
	var last *Error
	for i := range peers {
		idx := (start + i) % len(peers)
		peer := strings.TrimRight(peers[idx], "/")
		status, e := s.try(ctx, peer, r)
		if e == nil {
			s.mu.Lock()
			s.next = idx
			s.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return e
		}
		last = e
		if status == 0 || status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout {
			if status == 0 {
				s.Log.Debug("recording transfer: peer unreachable; trying the next", "step", step, "peer", peer, "err", e.Err)
			}
			continue
		}
		s.mu.Lock()
		s.next = idx
		s.mu.Unlock()
		return e
	}
	if last != nil && last.Status == 0 && len(peers) > 0 {
		last.Unreachable = true
	}
	return last
}

// try sends one request to one peer; status 0 means no answer.
func (s *Shipper) try(ctx context.Context, peer string, r request) (int, *Error) {
	step, mk, limit := r.step, r.body, r.limit
	// A request may take requestTimeout plus its body's time at the rate;
	// completing also gets the time to verify what it assembles.
	timeout := requestTimeout
	if mk != nil && s.Rate > 0 {
		timeout += time.Duration(float64(mk.n) / float64(s.Rate) * float64(time.Second))
	}
	timeout += r.extra
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	var n int64
	if mk != nil {
		rd, n = mk.open(ctx), mk.n
	}
	req, err := http.NewRequestWithContext(ctx, r.method, peer+r.path, rd)
	if err != nil {
		return 0, &Error{Step: step, Peer: peer, Err: err}
	}
	req.ContentLength = n
	if rd == nil {
		req.Body = http.NoBody
		req.ContentLength = 0
	}
	for k, v := range r.hdr {
		req.Header[k] = v
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	req.Header.Set("Accept", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, &Error{Step: step, Peer: peer, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, &Error{Step: step, Peer: peer, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if int64(len(data)) > limit {
		return resp.StatusCode, &Error{Step: step, Peer: peer, Status: resp.StatusCode, Message: fmt.Sprintf("answer longer than %d bytes", limit)}
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Step: step, Peer: peer, Status: resp.StatusCode}
		var ae adminapi.Error
		var ts adminapi.TransferStatus
		if json.Unmarshal(data, &ae) == nil {
			e.Code, e.Message = ae.Code, ae.Error
		}
		if e.Message == "" && json.Unmarshal(data, &ts) == nil && ts.ID != "" {
			e.Message = fmt.Sprintf("transfer %s is %s: %d chunks to send (again)", ts.ID, ts.State, len(ts.Missing))
		}
		if e.Message == "" {
			e.Message = truncate(strings.TrimSpace(string(data)), 200)
		}
		return resp.StatusCode, e
	}
	if r.out != nil {
		if err := json.Unmarshal(data, r.out); err != nil {
			return resp.StatusCode, &Error{Step: step, Peer: peer, Status: 0, Err: fmt.Errorf("unreadable answer (HTTP %d): %w", resp.StatusCode, err)}
		}
	}
	return resp.StatusCode, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
