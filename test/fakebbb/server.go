// Package fakebbb is an in-memory BigBlueButton node for tests, the demo and
// benchmarks. It answers the BBB API as bbb-web 3.0 does — checksums over the
// raw query, the same XML (and, for text tracks, JSON) bodies and message
// keys, HTTP 200 on FAILED, join's failures as a redirect to the logout URL
// with errors=[…] — and keeps meetings, attendees and recordings in memory
// so a test can assert what a balancer did to a node. A join redirect lands
// on a page of the fake's own, and only that landing counts the attendee, as
// a real node counts a user once the browser arrives; a meeting is running
// from then on (not from its create), and only a running meeting takes chat
// messages. A recording is BBB's "video" format: with
// Config.PublishedDir, its files are written as a node's recording scripts
// write them (PublishedDir/video/<recordID>/), moved on unpublish and
// delete, and served at /playback/video/<recordID>/ as its nginx does.
//
// A test can make a node fail as BBB servers do: Close (it dies, and Start
// on the same address brings it back with its meetings), Restart (it comes
// back at once without its meetings), Hang and Resume (it accepts
// connections but answers nothing meanwhile). Process does the same to the
// fakebbb binary with signals.
package fakebbb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/conclave-lb/conclave/bbb"
)

// maxBody bounds request bodies: slides and caption files fit, a client
// cannot make the fake buffer without limit.
const maxBody = 32 << 20

const (
	apiRoot        = "/bigbluebutton/api"
	landingPath    = "/html5client/join"
	playbackPrefix = "/playback/video/" // BBB's video format, served by the node's nginx
	// RequestsPath answers Requests for every call as JSON, for tests
	// that run the fake as its own process (benchmarks count node calls).
	RequestsPath   = "/fakebbb/requests"
	captionsPrefix = "/bigbluebutton/captions/"
)

// Server is one fake BBB node. All methods are safe for concurrent use.
type Server struct {
	secret   string
	pubDir   string      // Config.PublishedDir, cleaned; "" when none
	recBytes int         // size of a recording's video-0.m4v
	errLog   *log.Logger // disk errors of the published tree

	mu             sync.Mutex
	meetings       map[string]*meeting   // running meetings by external meetingID
	sessions       map[string]*session   // join sessions by session token
	recordings     map[string]*recording // by recordID
	presentations  map[string][]string   // by meetingID; kept after end for tests
	chats          map[string][]string   // by meetingID; kept after end for tests
	requests       map[string]int        // by call name
	blockCallbacks bool
	client         *http.Client
	lastCreate     int64 // createTime of the newest meeting, to keep IDs unique

	life sync.Mutex // guards srv and addr; separate so serving never waits on state
	srv  *http.Server
	addr string // where srv listens

	holdMu sync.Mutex
	hold   *hold // non-nil while hung
}

// hold keeps requests waiting while the node hangs.
type hold struct {
	done  chan struct{} // closed by Resume, Restart or Close
	abort bool          // set before done closes: drop the connections
}

// Config sets up a node made with NewWithConfig.
type Config struct {
	// Secret is the API secret (BBB's securitySalt).
	Secret string
	// PublishedDir, when set, is BBB's /var/bigbluebutton/published: each
	// published recording's files are written to
	// PublishedDir/video/<recordID>/ (video-0.m4v, index.html, then
	// metadata.xml last), and served under /playback/video/<recordID>/.
	// Unpublished recordings move to <parent>/unpublished/video/<recordID>,
	// deleted ones to <parent>/deleted/video/<recordID>, as BBB does.
	PublishedDir string
	// RecordingBytes is the size of a recording's video-0.m4v;
	// 0 or less means DefaultRecordingBytes.
	RecordingBytes int
	// ErrorLog, when set, receives errors writing the published tree.
	ErrorLog *log.Logger
}

// DefaultRecordingBytes is a recording's media size when the Config gives
// none: 256 KiB.
const DefaultRecordingBytes = 256 << 10

// New returns a node that checks checksums with secret (BBB's securitySalt).
func New(secret string) *Server { return NewWithConfig(Config{Secret: secret}) }

// NewWithConfig returns a node set up by c.
func NewWithConfig(c Config) *Server {
	if c.RecordingBytes <= 0 {
		c.RecordingBytes = DefaultRecordingBytes
	}
	if c.PublishedDir != "" {
		if abs, err := filepath.Abs(c.PublishedDir); err == nil {
			c.PublishedDir = abs // its parent holds unpublished/ and deleted/
		} else {
			c.PublishedDir = filepath.Clean(c.PublishedDir)
		}
	}
	if c.ErrorLog == nil {
		c.ErrorLog = log.New(io.Discard, "", 0)
	}
	return &Server{
		secret:        c.Secret,
		pubDir:        c.PublishedDir,
		recBytes:      c.RecordingBytes,
		errLog:        c.ErrorLog,
		meetings:      map[string]*meeting{},
		sessions:      map[string]*session{},
		recordings:    map[string]*recording{},
		presentations: map[string][]string{},
		chats:         map[string][]string{},
		requests:      map[string]int{},
		client: &http.Client{
			Timeout: 5 * time.Second,
			// BBB treats a redirect from a callback receiver as an error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Handler serves the BBB API under /bigbluebutton/api, the join landing
// page, recordings' playback files (/playback/video/<recordID>/) and
// uploaded caption files.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
// It returns the API base URL, http://host:port/bigbluebutton/api/.
func (s *Server) Start(addr string) (string, error) {
	s.life.Lock()
	defer s.life.Unlock()
	return s.startLocked(addr)
}

func (s *Server) startLocked(addr string) (string, error) {
	if s.srv != nil {
		return "", errors.New("fakebbb: already serving")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // clients that hang up are no news
	}
	s.srv, s.addr = srv, ln.Addr().String()
	go srv.Serve(ln)
	return "http://" + s.addr + apiRoot + "/", nil
}

// Close stops listening and drops open connections, like a node going down;
// requests held by Hang are dropped unanswered. Meetings and recordings
// stay, so Start on the same address "restarts" it with its state (Restart
// is the restart that loses the meetings).
func (s *Server) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.closeLocked()
	return nil
}

func (s *Server) closeLocked() {
	s.release(true)
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.srv = nil
}

// Hang makes the node hang as a stopped or overloaded BBB server does: it
// still accepts connections and reads requests, but answers none, not even
// the join landing page, until Resume (then they are answered), Restart or
// Close (then their connections are dropped unanswered). A client that
// gives up frees its request.
func (s *Server) Hang() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.hold == nil {
		s.hold = &hold{done: make(chan struct{})}
	}
}

// Resume ends Hang: the held requests are answered, and new ones at once.
func (s *Server) Resume() { s.release(false) }

// Hung reports whether the node is hanging.
func (s *Server) Hung() bool {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	return s.hold != nil
}

func (s *Server) release(abort bool) {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.hold != nil {
		s.hold.abort = abort
		close(s.hold.done)
		s.hold = nil
	}
}

// wait holds a request while the node hangs; false means drop it.
func (s *Server) wait(r *http.Request) bool {
	s.holdMu.Lock()
	h := s.hold
	s.holdMu.Unlock()
	if h == nil {
		return true
	}
	select {
	case <-h.done:
		return !h.abort
	case <-r.Context().Done():
		return false
	}
}

// Restart is a BBB server restarting: every meeting and join session is
// forgotten (bbb-web and akka-apps keep them in memory only, and send no
// end callback for them), recordings stay (they are files). A serving node
// drops its connections and listens again on the same address; a hung one
// is hung no more.
func (s *Server) Restart() error {
	s.life.Lock()
	defer s.life.Unlock()
	addr, serving := s.addr, s.srv != nil
	s.closeLocked()
	s.mu.Lock()
	s.meetings = map[string]*meeting{}
	s.sessions = map[string]*session{}
	s.mu.Unlock()
	if !serving {
		return nil
	}
	_, err := s.startLocked(addr)
	return err
}

// MeetingCount is the number of running meetings.
func (s *Server) MeetingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.meetings)
}

// AttendeeCount is the number of users in running meetings: users whose
// browser reached the join landing page.
func (s *Server) AttendeeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.meetings {
		n += len(m.attendees)
	}
	return n
}

// MeetingIDs lists the running meetings' external IDs, sorted.
func (s *Server) MeetingIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.meetings))
}

// Requests counts the requests that reached /bigbluebutton/api/<call>,
// whatever their outcome (a bad checksum counts too). The API root counts
// under "".
func (s *Server) Requests(call string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[call]
}

// Presentations lists the documents given for a meeting, by create (POST
// slides) and insertDocument: URLs, or the name of embedded documents. The
// list survives the meeting's end and restarts with a new create.
func (s *Server) Presentations(meetingID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.presentations[meetingID]...)
}

// ChatMessages lists the messages sendChatMessage posted to a meeting.
func (s *Server) ChatMessages(meetingID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.chats[meetingID]...)
}

// RecordingIDs lists every recording the node holds, in any state, sorted.
func (s *Server) RecordingIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.recordings))
}

// SetBlockCallbacks, when true, keeps recording-ready callbacks from being
// sent (to test a balancer that must cope with a silent node).
func (s *Server) SetBlockCallbacks(block bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blockCallbacks = block
}

// SetCallbackClient replaces the HTTP client used for callbacks.
func (s *Server) SetCallbackClient(c *http.Client) {
	if c == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.client = c
}

// apiRequest is one API call being answered.
type apiRequest struct {
	w         http.ResponseWriter
	r         *http.Request
	call      string
	params    url.Values
	body      []byte
	mediaType string          // of a POST body, lower case; "" when none
	form      *multipart.Form // a multipart body, parsed
	base      string          // scheme://host of this node as the client sees it
}

// get returns a parameter; meetingID and recordID are stripped of spaces
// around them, as bbb-web does.
func (q *apiRequest) get(name string) string {
	v := q.params.Get(name)
	if name == "meetingID" || name == "recordID" {
		v = strings.TrimSpace(v)
	}
	return v
}

type callHandler func(s *Server, q *apiRequest)

var calls = map[string]callHandler{
	"create":                 (*Server).create,
	"join":                   (*Server).join,
	"end":                    (*Server).end,
	"isMeetingRunning":       (*Server).isMeetingRunning,
	"getMeetingInfo":         (*Server).getMeetingInfo,
	"getMeetings":            (*Server).getMeetings,
	"insertDocument":         (*Server).insertDocument,
	"sendChatMessage":        (*Server).sendChatMessage,
	"getRecordings":          (*Server).getRecordings,
	"publishRecordings":      (*Server).publishRecordings,
	"deleteRecordings":       (*Server).deleteRecordings,
	"updateRecordings":       (*Server).updateRecordings,
	"getRecordingTextTracks": (*Server).getRecordingTextTracks,
	"putRecordingTextTrack":  (*Server).putRecordingTextTrack,
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A panic is a bug in the fake, never an answer BBB would give:
		// answer 500 so tests notice, and keep serving.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			http.Error(w, fmt.Sprint("fakebbb: internal error: ", v), http.StatusInternalServerError)
		}
	}()
	if !s.wait(r) {
		panic(http.ErrAbortHandler) // the node went down meanwhile
	}
	p := r.URL.Path
	switch {
	case p == "/":
		s.home(w)
	case p == apiRoot || p == apiRoot+"/":
		s.count("")
		s.apiVersion(w, r)
	case strings.HasPrefix(p, apiRoot+"/"):
		s.apiCall(w, r, p[len(apiRoot)+1:])
	case p == landingPath:
		s.landing(w, r)
	case p == RequestsPath:
		s.mu.Lock()
		counts := maps.Clone(s.requests)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(counts)
	case strings.HasPrefix(p, playbackPrefix):
		s.playback(w, r, p[len(playbackPrefix):])
	case strings.HasPrefix(p, captionsPrefix):
		s.caption(w, r, p[len(captionsPrefix):])
	default:
		http.NotFound(w, r)
	}
}

// home is the server's own page, where a failed join's redirect leads
// (BBB's default logout URL is the server's URL).
func (s *Server) home(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte("<!DOCTYPE html><html><head><title>BigBlueButton</title></head><body><p>Welcome to BigBlueButton.</p></body></html>\n"))
}

func (s *Server) count(call string) {
	s.mu.Lock()
	s.requests[call]++
	s.mu.Unlock()
}

func (s *Server) apiCall(w http.ResponseWriter, r *http.Request, call string) {
	s.count(call)
	h, ok := calls[call]
	if !ok {
		fail(w, bbb.KeyUnsupportedRequest, bbb.MsgUnsupportedRequest)
		return
	}
	q := &apiRequest{w: w, r: r, call: call, base: baseURL(r)}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		body, err := readBody(w, r)
		if err != nil {
			// What nginx in front of bbb-web does with an oversized body.
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		q.body = body
		q.mediaType = mediaType(r.Header.Get("Content-Type"))
	}
	// Values of a malformed query are kept as far as they parse, as a
	// servlet container does; the checksum still covers the raw text.
	q.params, _ = url.ParseQuery(r.URL.RawQuery)
	rest, sum, found := bbb.SplitChecksum(r.URL.RawQuery)
	switch q.mediaType {
	case "application/x-www-form-urlencoded":
		// bbb-web also takes every parameter, checksum included, in a form
		// body; then the checksum covers the body's text.
		bodyParams, _ := url.ParseQuery(string(q.body))
		if !found {
			rest, sum, found = bbb.SplitChecksum(string(q.body))
		}
		for k, v := range bodyParams {
			if _, dup := q.params[k]; !dup {
				q.params[k] = v
			}
		}
	case "multipart/form-data":
		q.form = parseMultipart(q.body, r.Header.Get("Content-Type"))
		if q.form != nil {
			for k, v := range q.form.Value {
				if _, dup := q.params[k]; !dup {
					q.params[k] = v
				}
			}
		}
	}
	if !found || !bbb.VerifySplit(call, rest, sum, s.secret) {
		switch call {
		case "putRecordingTextTrack":
			failJSON(w, bbb.KeyChecksumError, bbb.MsgChecksumError)
			return
		case "join":
			// A validation error of join's, sent to the logout URL.
			joinFailed(q, true, bbb.KeyChecksumError, bbb.MsgChecksumError)
			return
		}
		fail(w, bbb.KeyChecksumError, bbb.MsgChecksumError)
		return
	}
	h(s, q)
}

// apiVersion answers the API root, which needs no checksum.
func (s *Server) apiVersion(w http.ResponseWriter, r *http.Request) {
	base := baseURL(r)
	ws := "ws" + strings.TrimPrefix(base, "http")
	x := newResponse("SUCCESS")
	x.leaf("version", "2.0")
	x.leaf("apiVersion", "2.0")
	x.leaf("bbbVersion", BBBVersion)
	x.leaf("html5PluginSdkVersion", "0.0.95")
	x.leaf("graphqlWebsocketUrl", ws+"/graphql")
	x.leaf("graphqlApiUrl", base+"/api/rest")
	writeXML(w, x.done())
}

// BBBVersion is the BBB release the fake answers like.
const BBBVersion = "3.0.19"

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, err
	}
	// Any other read error leaves what arrived; the call judges it.
	return body, nil
}

func mediaType(header string) string {
	if header == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return "invalid"
	}
	return strings.ToLower(mt)
}

func parseMultipart(body []byte, header string) *multipart.Form {
	_, params, err := mime.ParseMediaType(header)
	if err != nil || params["boundary"] == "" {
		return nil
	}
	form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(maxBody)
	if err != nil {
		return nil
	}
	return form
}

// baseURL is scheme://host of this node as the client addressed it; join
// and playback URLs point there, as bbb-web's serverURL would.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	host := r.Host
	if host == "" || strings.ContainsAny(host, "/ \\\"<>") {
		host = "localhost"
	}
	return scheme + "://" + host
}

// randToken returns n random lower-case letters and digits, the alphabet of
// bbb-web's tokens and user IDs.
func randToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
