package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode/peercall"
)

// InternalPrefix is where the gateway mounts ServeInternal.
const InternalPrefix = peercall.Prefix

// forwardAttemptTimeout bounds one forwarded call to the leader.
const forwardAttemptTimeout = 2 * time.Second

// MaxInternalBody bounds a peer-to-peer request body.
const MaxInternalBody = peercall.MaxBody

// JoinRequest asks the leader to add a voter.
type JoinRequest = peercall.JoinRequest

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
			return peercall.NotLeader()
		}
		var ar peercall.ApplyResponse
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
		v = peercall.ReadIndexResponse{Index: idx}
	case "join":
		var req JoinRequest
		if err = json.Unmarshal(body, &req); err == nil {
			err = n.Join(ctx, req)
		}
		v = map[string]bool{"ok": err == nil}
	case "remove":
		var req peercall.RemoveRequest
		if err = json.Unmarshal(body, &req); err == nil {
			err = n.Remove(ctx, req.ID)
		}
		v = map[string]bool{"ok": err == nil}
	case "status":
		v = n.Status()
	default:
		return peercall.Fail(http.StatusNotFound, "unknown internal call "+op)
	}
	if err != nil {
		switch {
		case errors.Is(err, errNotLeader), errors.Is(err, errLeaderNotYet), errors.Is(err, ErrNoLeader):
			return peercall.NotLeader()
		case errors.Is(err, ErrNotFound):
			return peercall.Fail(http.StatusNotFound, err.Error())
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return peercall.Fail(http.StatusBadRequest, err.Error())
		}
		return peercall.Fail(http.StatusInternalServerError, err.Error())
	}
	return http.StatusOK, peercall.JSON(v)
}

// IsNotFound reports whether err says a peer or resource was not found.
func IsNotFound(err error) bool {
	var pe *peercall.Error
	return errors.Is(err, ErrNotFound) || (errors.As(err, &pe) && pe.Status == http.StatusNotFound)
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
	return n.client.Call(actx, addr, op, body, out)
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
