// Package ctl is conclavectl: cobra commands over the admin REST API, and
// the typed API client they use (reusable by agents and tests).
package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
)

// DefaultAPI is where conclavectl looks for a peer when no --api is given.
const DefaultAPI = "http://127.0.0.1:42353"

// Client calls a peer's admin API (/api/v1). Any peer accepts any call;
// writes are forwarded to the Raft leader by the server.
type Client struct {
	API   string       // base URL, e.g. http://127.0.0.1:42353
	Token string       // bearer token; empty sends no Authorization header
	HTTP  *http.Client // 30s timeout by default
}

// NewClient returns a client for the admin API at api (a trailing slash is
// dropped; a bare host:port gets http://).
func NewClient(api, token string) *Client {
	api = strings.TrimRight(strings.TrimSpace(api), "/")
	if api != "" && !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return &Client{API: api, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is a non-2xx answer of the admin API (its body: an
// adminapi.Error).
type APIError struct {
	Status  int
	Code    string // invalid, not_found, exists, conflict, unauthorized, forbidden, unavailable, internal
	Message string // human-readable
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// ErrorCode is the admin API's error code carried by err ("" if err is not
// an *APIError), e.g. to tell "exists" from other failures.
func ErrorCode(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Do sends a request to path (below the API base, e.g. "/api/v1/backends").
// body is nil, raw JSON ([]byte or json.RawMessage), or a value to marshal.
// A 2xx answer is decoded into out unless out is nil (a *json.RawMessage
// gets the body as is); any other answer is returned as an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		rd = bytes.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.API+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s: %w", c.API, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		var body adminapi.Error
		if json.Unmarshal(data, &body) == nil {
			e.Code, e.Message = body.Code, body.Error
		}
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer to %s %s: %w", method, path, err)
	}
	return nil
}

func call[T any](ctx context.Context, c *Client, method, path string, body any) (T, error) {
	var v T
	err := c.Do(ctx, method, path, body, &v)
	return v, err
}

// seg escapes one path segment: a backend named by its full URL keeps its
// slashes inside the segment (%2F).
func seg(s string) string { return url.PathEscape(s) }

// Peers lists the Raft members with their status.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	return call[[]Peer](ctx, c, http.MethodGet, "/api/v1/peers", nil)
}

// JoinPeer adds a voter; httpAddr may be empty (the peer announces it).
func (c *Client) JoinPeer(ctx context.Context, id, raftAddr, httpAddr string) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/peers", JoinPeerRequest{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr}, nil)
}

// RemovePeer removes a member (a leader hands leadership over first).
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/peers/"+seg(id), nil, nil)
}

// Backends lists all backends.
func (c *Client) Backends(ctx context.Context) ([]Backend, error) {
	return call[[]Backend](ctx, c, http.MethodGet, "/api/v1/backends", nil)
}

// Backend finds one backend by ID, full URL or host.
func (c *Client) Backend(ctx context.Context, ref string) (*Backend, error) {
	return call[*Backend](ctx, c, http.MethodGet, "/api/v1/backends/"+seg(ref), nil)
}

// AddBackend registers a BBB server (AdminState init until enabled).
// settings may be nil.
func (c *Client) AddBackend(ctx context.Context, apiURL, secret string, settings json.RawMessage) (*Backend, error) {
	return call[*Backend](ctx, c, http.MethodPost, "/api/v1/backends", AddBackendRequest{URL: apiURL, Secret: secret, Settings: settings})
}

// SetBackend merges patch (an RFC 7396 JSON merge patch; null unsets a key)
// into a backend's settings.
func (c *Client) SetBackend(ctx context.Context, ref string, patch json.RawMessage) (*Backend, error) {
	return call[*Backend](ctx, c, http.MethodPatch, "/api/v1/backends/"+seg(ref), patch)
}

// EnableBackend sets AdminState ready: the backend takes new meetings.
func (c *Client) EnableBackend(ctx context.Context, ref string) (*Backend, error) {
	return call[*Backend](ctx, c, http.MethodPost, "/api/v1/backends/"+seg(ref)+"/enable", nil)
}

// DisableBackend sets AdminState stopped (cordon): no new meetings.
func (c *Client) DisableBackend(ctx context.Context, ref string) (*Backend, error) {
	return call[*Backend](ctx, c, http.MethodPost, "/api/v1/backends/"+seg(ref)+"/disable", nil)
}

// DeleteBackend decommissions a backend (removed when its last meeting
// ends), or removes it at once with force.
func (c *Client) DeleteBackend(ctx context.Context, ref string, force bool) (*BackendRemoval, error) {
	path := "/api/v1/backends/" + seg(ref)
	if force {
		path += "?force=true"
	}
	return call[*BackendRemoval](ctx, c, http.MethodDelete, path, nil)
}

// Frontends lists all frontends (with their secrets).
func (c *Client) Frontends(ctx context.Context) ([]Frontend, error) {
	return call[[]Frontend](ctx, c, http.MethodGet, "/api/v1/frontends", nil)
}

// Frontend returns one frontend.
func (c *Client) Frontend(ctx context.Context, key string) (*Frontend, error) {
	return call[*Frontend](ctx, c, http.MethodGet, "/api/v1/frontends/"+seg(key), nil)
}

// AddFrontend adds a tenant; settings may be nil.
func (c *Client) AddFrontend(ctx context.Context, key, secret string, settings json.RawMessage) (*Frontend, error) {
	return call[*Frontend](ctx, c, http.MethodPost, "/api/v1/frontends", AddFrontendRequest{Key: key, Secret: secret, Settings: settings})
}

// SetFrontend merges patch (JSON merge patch) into a frontend's settings.
func (c *Client) SetFrontend(ctx context.Context, key string, patch json.RawMessage) (*Frontend, error) {
	return call[*Frontend](ctx, c, http.MethodPatch, "/api/v1/frontends/"+seg(key), patch)
}

// DeleteFrontend deletes a frontend and forgets its meetings.
func (c *Client) DeleteFrontend(ctx context.Context, key string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/frontends/"+seg(key), nil, nil)
}

// Meetings lists meetings, all or one frontend's (frontend != "").
func (c *Client) Meetings(ctx context.Context, frontend string) ([]Meeting, error) {
	path := "/api/v1/meetings"
	if frontend != "" {
		path += "?" + url.Values{"frontend": {frontend}}.Encode()
	}
	return call[[]Meeting](ctx, c, http.MethodGet, path, nil)
}
