package control

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
)

// memCluster is a one-peer, in-memory Cluster: the FSM without Raft,
// leading in term 1 for good. Commands go through the codec, as they would
// through the log.
type memCluster struct {
	f   *fsm.FSM
	mu  sync.Mutex
	idx uint64
}

func newMemCluster() *memCluster { return &memCluster{f: fsm.New()} }

func (m *memCluster) FSM() *fsm.FSM { return m.f }

func (m *memCluster) Apply(_ context.Context, c fsm.Command) (*fsm.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.idx++
	return m.f.Apply(m.idx, fsm.Encode(c)), nil
}

// MustApply applies c and panics on any error: for test setup only.
func (m *memCluster) MustApply(c fsm.Command) *fsm.Result {
	r, _ := m.Apply(context.Background(), c)
	if r.Error != nil {
		panic(r.Error)
	}
	return r
}

func (m *memCluster) LeaderLoops(ctx context.Context, fn func(context.Context, uint64)) {
	go fn(ctx, 1)
}

func (m *memCluster) ApplyAsLeader(ctx context.Context, _ uint64, c fsm.Command) (*fsm.Result, error) {
	return m.Apply(ctx, c)
}

// httpCaller calls backends as the gateway does: signed with the
// backend's secret, the answer of a 200 read whole within MaxBackendResponse.
type httpCaller struct{}

var testClient = &fasthttp.Client{MaxResponseBodySize: MaxBackendResponse}

func (httpCaller) CallBackend(b *fsm.Backend, call string, args *fasthttp.Args, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	var query []byte
	if args != nil {
		query = args.QueryString()
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(string(bbb.AppendSignedURL(nil, b.URL, call, query, b.Secret)))
	if err := testClient.DoTimeout(req, resp, timeout); err != nil {
		return nil, fmt.Errorf("backend %s %s: %w", b.ID, call, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("backend %s %s: status %d", b.ID, call, resp.StatusCode())
	}
	return append([]byte(nil), resp.Body()...), nil
}

func newTestControl(cfg Config, c Cluster) *Control { return New(cfg, c, httpCaller{}) }
