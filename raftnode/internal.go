package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/peertls"
)

// InternalPrefix is where the gateway mounts ServeInternal.
const InternalPrefix = "/api/v1/internal/"

// forwardAttemptTimeout bounds one forwarded call to the leader.
const forwardAttemptTimeout = 2 * time.Second

// MaxInternalBody bounds a peer-to-peer request body.
const MaxInternalBody = 4 << 20

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// JoinRequest asks the leader to add a voter.
type JoinRequest struct {
	ID         string `json:"id"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

type removeRequest struct {
	ID string `json:"id"`
}

// errorBody is how a peer reports a failure; NotLeader tells the caller to
// find the leader again and retry.
type errorBody struct {
	Error     string `json:"error"`
	NotLeader bool   `json:"not_leader,omitempty"`
}

// ServeInternal answers a peer-to-peer call: op is the path after
// InternalPrefix. The caller (gateway) has authenticated the peer. body is
// not retained after the call returns.
func (n *Node) ServeInternal(ctx context.Context, op string, body []byte) (status int, resp []byte) {
	var (
		v   any
		err error
	)
	switch op {
	case "apply":
		if n.raftState() != "Leader" {
			return notLeaderAnswer()
		}
		var ar applyResponse
		var res *fsm.Result
		// Raft keeps Log.Data (in its log cache, to replicate later), while
		// the caller's body buffer may be reused once we return (fasthttp
		// does): hand raft its own copy, or lagging followers receive
		// whatever the buffer holds by then.
		res, ar.Index, err = n.applyLocal(ctx, bytes.Clone(body))
		if res != nil {
			ar.Result = *res
		}
		v = ar
	case "readindex":
		var idx uint64
		idx, err = n.readIndex()
		v = readIndexResponse{Index: idx}
	case "join":
		var req JoinRequest
		if err = json.Unmarshal(body, &req); err == nil {
			err = n.Join(ctx, req)
		}
		v = map[string]bool{"ok": err == nil}
	case "remove":
		var req removeRequest
		if err = json.Unmarshal(body, &req); err == nil {
			err = n.Remove(ctx, req.ID)
		}
		v = map[string]bool{"ok": err == nil}
	case "status":
		v = n.Status()
	default:
		return http.StatusNotFound, mustJSON(errorBody{Error: "unknown internal call " + op})
	}
	if err != nil {
		switch {
		case errors.Is(err, errNotLeader), errors.Is(err, errLeaderNotYet), errors.Is(err, ErrNoLeader):
			return notLeaderAnswer()
		case errors.Is(err, ErrNotFound):
			return http.StatusNotFound, mustJSON(errorBody{Error: err.Error()})
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return http.StatusBadRequest, mustJSON(errorBody{Error: err.Error()})
		}
		return http.StatusInternalServerError, mustJSON(errorBody{Error: err.Error()})
	}
	return http.StatusOK, mustJSON(v)
}

func notLeaderAnswer() (int, []byte) {
	return http.StatusServiceUnavailable, mustJSON(errorBody{Error: "not the leader", NotLeader: true})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"encoding failed"}`)
	}
	return b
}

// peerError is a failure reported by another peer.
type peerError struct {
	status int
	msg    string
	retry  bool
}

func (e *peerError) Error() string { return e.msg }

// IsNotFound reports whether err says a peer or resource was not found.
func IsNotFound(err error) bool {
	var pe *peerError
	return errors.Is(err, ErrNotFound) || (errors.As(err, &pe) && pe.status == http.StatusNotFound)
}

type peerClient struct {
	http   *http.Client
	token  func() string
	scheme string // "http://", or "https://" under mutual TLS
}

// newPeerClient calls other peers' internal routes: over mutual TLS (this
// peer's certificate, the other's verified against the cluster CA) when
// tc is set, else plain HTTP.
func newPeerClient(token func() string, tc *peertls.Config) *peerClient {
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
	return &peerClient{http: &http.Client{Transport: tr}, token: token, scheme: scheme}
}

// call POSTs body to a peer's internal op and decodes the JSON answer.
func (c *peerClient) call(ctx context.Context, httpAddr, op string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+httpAddr+InternalPrefix+op, bytes.NewReader(body))
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxInternalBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = json.Unmarshal(data, &eb)
		if eb.Error == "" {
			eb.Error = fmt.Sprintf("peer %s answered %s", httpAddr, resp.Status)
		}
		return &peerError{status: resp.StatusCode, msg: eb.Error, retry: eb.NotLeader}
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

// forward sends an internal call to the current leader.
func (n *Node) forward(ctx context.Context, op string, body []byte, out any) error {
	id, addr := n.Leader()
	if id == "" {
		return ErrNoLeader
	}
	if addr == "" {
		return fmt.Errorf("%w: leader %s has no HTTP address yet", ErrNoLeader, id)
	}
	if id == n.cfg.ID {
		return errNotLeader // we were leader a moment ago; look again
	}
	// Each attempt gets its own bound: a leader cut off by a partition
	// would otherwise hold the call until the caller's whole deadline,
	// while retry() could already reach the new leader.
	actx, cancel := context.WithTimeout(ctx, forwardAttemptTimeout)
	defer cancel()
	return n.client.call(actx, addr, op, body, out)
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe)
}

// ResultError turns an FSM domain error into a Go error.
func ResultError(r *fsm.Result) error {
	if r != nil && r.Error != nil {
		return r.Error
	}
	return nil
}
