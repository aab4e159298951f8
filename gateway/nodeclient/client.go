// Package nodeclient calls the BBB nodes: one signed BBB API call per
// request, re-signed with the node's secret and bounded by the call's own
// timeout, and reads a node's XML answer (its <response> envelope, the
// meeting IDs it echoes) without re-serialising it.
package nodeclient

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
)

// Timeouts for calls to nodes. A node that hangs (accepts connections,
// never answers: SIGSTOP, a full disk, a stuck JVM) holds a client no
// longer than its call's bound; once the prober has marked it error (within
// ~4 s), calls do not go to it at all (control.BackendDead).
const (
	// DefaultTimeout, passed to Call, means the call's own bound
	// (CallTimeout).
	DefaultTimeout time.Duration = 0
	// Reads: getMeetingInfo, isMeetingRunning, getMeetings, join (XML),
	// getRecordings of a few recordings, getRecordingTextTracks.
	ReadTimeout = 3 * time.Second
	// Writes: end, sendChatMessage, publish/update/deleteRecordings. Quick
	// on a node (a message to akka, a directory move, a metadata file), but
	// they change something there, so a slow answer gets a little longer.
	writeTimeout = 5 * time.Second
	// Calls with a body: insertDocument, putRecordingTextTrack (bbb-web
	// stores the body and processes it afterwards).
	uploadTimeout = 15 * time.Second
	CreateTimeout = 30 * time.Second // create may carry or fetch slides
	// The leader's background getRecordings of a whole node: bbb-web reads
	// every recording's metadata.xml, seconds with thousands of them. No
	// client waits for it.
	SyncTimeout = 30 * time.Second
)

// CallTimeout is the bound of one BBB call on a node.
func CallTimeout(call string) time.Duration {
	switch call {
	case "create":
		return CreateTimeout
	case "insertDocument", "putRecordingTextTrack":
		return uploadTimeout
	case "end", "sendChatMessage", "publishRecordings", "updateRecordings", "deleteRecordings":
		return writeTimeout
	}
	return ReadTimeout
}

var errStatus = errors.New("backend answered with a non-200 status")

// ObserveFunc records one call's outcome (metrics); err is the call's.
type ObserveFunc func(backendID, call string, err error, took time.Duration)

// Client makes signed BBB API calls to nodes over one pool of connections.
type Client struct {
	http    *fasthttp.Client
	observe ObserveFunc
}

// New builds a client; observe is told of every call.
func New(observe ObserveFunc) *Client {
	return &Client{observe: observe, http: &fasthttp.Client{
		Name:                     "conclave",
		MaxConnsPerHost:          1024,
		MaxIdleConnDuration:      30 * time.Second,
		ReadTimeout:              CreateTimeout,
		WriteTimeout:             CreateTimeout,
		MaxResponseBodySize:      control.MaxBackendResponse,
		NoDefaultUserAgentHeader: false,
	}}
}

// signedURL is the URL of call on backend b with query re-signed with the
// backend's secret.
func signedURL(b *fsm.Backend, call string, query []byte) string {
	return string(bbb.AppendSignedURL(nil, b.URL, call, query, b.Secret))
}

// Call performs one BBB API call on a backend and returns the body of its
// 200 answer. A timeout of DefaultTimeout (0) is the call's own
// (CallTimeout).
func (c *Client) Call(b *fsm.Backend, call string, args *fasthttp.Args, body []byte, contentType string, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = CallTimeout(call)
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var query []byte
	if args != nil {
		query = args.QueryString()
	}
	req.SetRequestURI(signedURL(b, call, query))
	if body != nil {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType(contentType)
		req.SetBody(body)
	}
	start := time.Now()
	err := c.http.DoTimeout(req, resp, timeout)
	c.observe(b.ID, call, err, time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("backend %s %s: %w", b.ID, call, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("backend %s %s: %w (%d)", b.ID, call, errStatus, resp.StatusCode())
	}
	return append([]byte(nil), resp.Body()...), nil
}

// DoTimeout sends req as it stands over the client's pool (the hand-over
// of a request to the leader shares it).
func (c *Client) DoTimeout(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	return c.http.DoTimeout(req, resp, timeout)
}
