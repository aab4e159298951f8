package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
)

// Timeouts for calls to backends.
const (
	backendCallTimeout   = 10 * time.Second
	backendCreateTimeout = 30 * time.Second // create may carry or fetch slides
	getMeetingsTimeout   = 3 * time.Second  // per backend, for the fan-out
	maxBackendResponse   = 16 << 20
)

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
func (s *Server) callBackend(b *fsm.Backend, call string, args *fasthttp.Args, body []byte, contentType string, timeout time.Duration) ([]byte, error) {
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
