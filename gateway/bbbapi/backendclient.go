package bbbapi

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
)

// Timeouts for calls to backends. A node that hangs (accepts connections,
// never answers: SIGSTOP, a full disk, a stuck JVM) holds a client no
// longer than its call's bound; once the prober has marked it error (within
// ~4 s), calls do not go to it at all (backendDead).
const (
	// backendCallTimeout, passed to callBackend, means the call's own bound
	// (callTimeout).
	backendCallTimeout time.Duration = 0
	// Reads: getMeetingInfo, isMeetingRunning, getMeetings, join (XML),
	// getRecordings of a few recordings, getRecordingTextTracks.
	backendReadTimeout = 3 * time.Second
	// Writes: end, sendChatMessage, publish/update/deleteRecordings. Quick
	// on a node (a message to akka, a directory move, a metadata file), but
	// they change something there, so a slow answer gets a little longer.
	backendWriteTimeout = 5 * time.Second
	// Calls with a body: insertDocument, putRecordingTextTrack (bbb-web
	// stores the body and processes it afterwards).
	backendUploadTimeout = 15 * time.Second
	backendCreateTimeout = 30 * time.Second // create may carry or fetch slides
	// The leader's background getRecordings of a whole node: bbb-web reads
	// every recording's metadata.xml, seconds with thousands of them. No
	// client waits for it.
	backendSyncTimeout = 30 * time.Second
	// GetMeetingsTimeout bounds each backend's answer in getMeetings' fan-out.
	GetMeetingsTimeout = backendReadTimeout
	maxBackendResponse = control.MaxBackendResponse
)

// callTimeout is the bound of one BBB call on a backend.
func callTimeout(call string) time.Duration {
	switch call {
	case "create":
		return backendCreateTimeout
	case "insertDocument", "putRecordingTextTrack":
		return backendUploadTimeout
	case "end", "sendChatMessage", "publishRecordings", "updateRecordings", "deleteRecordings":
		return backendWriteTimeout
	}
	return backendReadTimeout
}

var errBackendStatus = errors.New("backend answered with a non-200 status")

func newBackendHTTPClient() *fasthttp.Client {
	return &fasthttp.Client{
		Name:                     "conclave",
		MaxConnsPerHost:          1024,
		MaxIdleConnDuration:      30 * time.Second,
		ReadTimeout:              backendCreateTimeout,
		WriteTimeout:             backendCreateTimeout,
		MaxResponseBodySize:      maxBackendResponse,
		NoDefaultUserAgentHeader: false,
	}
}

// signedBackendURL is the URL of call on backend b with query re-signed
// with the backend's secret.
func signedBackendURL(b *fsm.Backend, call string, query []byte) string {
	return string(bbb.AppendSignedURL(nil, b.URL, call, query, b.Secret))
}

// callBackend performs one BBB API call on a backend and returns the body.
// A timeout of backendCallTimeout (0) is the call's own (callTimeout).
func (s *API) callBackend(b *fsm.Backend, call string, args *fasthttp.Args, body []byte, contentType string, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = callTimeout(call)
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var query []byte
	if args != nil {
		query = args.QueryString()
	}
	req.SetRequestURI(signedBackendURL(b, call, query))
	if body != nil {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType(contentType)
		req.SetBody(body)
	}
	start := time.Now()
	err := s.bc.DoTimeout(req, resp, timeout)
	s.metrics.observeBackend(b.ID, call, err, time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("backend %s %s: %w", b.ID, call, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("backend %s %s: %w (%d)", b.ID, call, errBackendStatus, resp.StatusCode())
	}
	return append([]byte(nil), resp.Body()...), nil
}
