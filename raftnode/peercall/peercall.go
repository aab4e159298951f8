// Package peercall is the peer-to-peer protocol of raftnode: JSON bodies
// POSTed to another peer's /api/v1/internal/<op> (forwarded writes,
// read-index, join, remove, status), the answers' shapes, how a peer
// reports a failure, and the client that makes the calls (mutual TLS under
// --tls-*, connections that drop undelivered bytes on close).
//
// It knows nothing of Raft: raftnode decides what each op does
// (ServeInternal) and when to call whom.
package peercall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/peertls"
)

// Prefix is where the gateway mounts the peer calls; the op follows it.
const Prefix = "/api/v1/internal/"

// MaxBody bounds a peer-to-peer request or answer body.
const MaxBody = 4 << 20

// ApplyResponse is the leader's answer to a forwarded command ("apply").
type ApplyResponse struct {
	Result fsm.Result `json:"result"`
	Index  uint64     `json:"index"`
}

// ReadIndexResponse is the leader's answer to "readindex".
type ReadIndexResponse struct {
	Index uint64 `json:"index"`
}

// JoinRequest asks the leader to add a voter ("join").
type JoinRequest struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// RemoveRequest asks the leader to remove a member ("remove").
type RemoveRequest struct {
	ID string `json:"id"`
}

// errorBody is how a peer reports a failure; NotLeader tells the caller to
// find the leader again and retry.
type errorBody struct {
	Error     string `json:"error"`
	NotLeader bool   `json:"not_leader,omitempty"`
}

// Fail is the answer reporting a failure with status and msg.
func Fail(status int, msg string) (int, []byte) {
	return status, JSON(errorBody{Error: msg})
}

// NotLeader is the answer of a peer that does not lead (or not yet).
func NotLeader() (int, []byte) {
	return http.StatusServiceUnavailable, JSON(errorBody{Error: "not the leader", NotLeader: true})
}

// JSON encodes an answer; a value that does not encode becomes an error
// body.
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"encoding failed"}`)
	}
	return b
}

// Error is a failure reported by another peer.
type Error struct {
	Status int    // the HTTP status it answered
	Msg    string // its error message
	// NotLeader: the peer does not lead; find the leader again and retry.
	NotLeader bool
}

func (e *Error) Error() string { return e.Msg }

// Client calls other peers' internal routes.
type Client struct {
	http   *http.Client
	token  func() string
	scheme string // "http://", or "https://" under mutual TLS
}

// New returns a Client that calls other peers over mutual TLS (this
// peer's certificate, the other's verified against the cluster CA) when
// tc is set, else plain HTTP. token, when set, gives the bearer token of
// each call ("" = none).
func New(token func() string, tc *peertls.Config) *Client {
	tr := &http.Transport{
		DialContext:         dialNoLinger,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     60 * time.Second,
	}
	scheme := "http://"
	if tc != nil {
		tr.TLSClientConfig = tc.Client()
		tr.TLSHandshakeTimeout = peertls.HandshakeTimeout
		scheme = "https://"
	}
	return &Client{http: &http.Client{Transport: tr}, token: token, scheme: scheme}
}

// Call POSTs body to a peer's internal op and decodes the JSON answer into
// out (nil: the answer is not read). A failure the peer reports is an
// *Error.
func (c *Client) Call(ctx context.Context, httpAddr, op string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+httpAddr+Prefix+op, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if c.token != nil {
		if t := c.token(); t != "" {
			req.Header.Set("Authorization", "Bearer "+t)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = json.Unmarshal(data, &eb)
		if eb.Error == "" {
			eb.Error = fmt.Sprintf("peer %s answered %s", httpAddr, resp.Status)
		}
		return &Error{Status: resp.StatusCode, Msg: eb.Error, NotLeader: eb.NotLeader}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// dialNoLinger dials a peer on a connection whose close drops what it
// has not yet delivered. When a forwarded attempt times out (a partition),
// its connection is closed; the kernel would otherwise keep retransmitting
// the request, and deliver it after the partition heals: the leader would
// then commit a claim the caller had long answered as failed, leaving a
// meeting bound that no node ever created.
func dialNoLinger(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c, err
}
