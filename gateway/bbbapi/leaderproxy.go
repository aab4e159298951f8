package bbbapi

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
)

// HeaderVia marks a request a peer handed to the leader, so the leader
// never hands it on again.
const HeaderVia = "X-Conclave-Via"

// leaderProxyTimeout bounds the leader's answer to a handed-over request.
const leaderProxyTimeout = 3 * time.Second

var errAnsweredByLeader = errors.New("answered by the leader")

// AnswerFromLeader sends the client's request, unchanged, to the leader and
// relays its answer. A follower whose replica lags (after a partition heals,
// raft may wait seconds before sending it what it missed) would otherwise
// answer serverUnavailable for meetings created meanwhile. The leader checks
// the checksum itself. It reports false, having written nothing, when there
// is no leader to ask or the leader did not answer.
func (r *bbbRequest) AnswerFromLeader() bool {
	if len(r.ctx.Request.Header.Peek(HeaderVia)) > 0 {
		return false
	}
	addr := r.s.cluster.LeaderHTTP()
	if addr == "" {
		return false
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	r.ctx.Request.CopyTo(req)
	req.URI().SetScheme("http")
	req.URI().SetHost(addr)
	req.Header.SetHost(addr)
	req.Header.Set(HeaderVia, "1")
	if err := r.s.node.DoTimeout(req, resp, leaderProxyTimeout); err != nil {
		r.s.log.Warn("could not hand a request to the leader", "leader", addr, "err", err)
		return false
	}
	r.s.metrics.LeaderAnswers.Inc()
	resp.CopyTo(&r.ctx.Response)
	return true
}
