// Package bbbapi answers the BBB API (/bigbluebutton/api/*, /bbb/<key>/...)
// for a Conclave peer: checksum and frontend resolution, create, join and
// the meeting calls, failover (re-creating a meeting whose node died), and
// the hand-over of a request to the leader. getMeetings and the recording
// calls are answered by packages getmeetings and recordings, which see the
// pooled request through small interfaces; nodes are called through
// nodeclient. It depends on the cluster only through Cluster, and on the
// rest of the server through Placement, Relay and the body gate (guard);
// package gateway routes to it and wires it.
package bbbapi

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/central"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/getmeetings"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
	"github.com/conclave-lb/conclave/gateway/nodeclient"
	"github.com/conclave-lb/conclave/gateway/recordings"
)

// Cluster is what the BBB API needs of the replicated core.
// *raftnode.Node implements it (through gateway.Cluster).
type Cluster interface {
	// FSM is the local replica, for reads.
	FSM() *fsm.FSM
	// Apply returns once the local replica holds the write.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// Commit returns on the leader's answer alone (meeting claims).
	Commit(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// ConsistentRead waits until the local replica has applied what the
	// leader had (raftnode.ErrBehind when it could not catch up quickly).
	ConsistentRead(ctx context.Context) error
	IsLeader() bool
	// LeaderHTTP is the leader's HTTP address ("" when this peer leads or
	// none is known), for requests a lagging replica hands over.
	LeaderHTTP() string
}

// Placement chooses a node for a new meeting (*control.Control).
type Placement interface {
	PlaceTagged(fe *fsm.Frontend, exclude map[string]bool, st control.ServerTags) (*fsm.Backend, error)
	// AddPending counts a create on its way to a node (d is +1 or -1).
	AddPending(id string, d int)
}

// Relay points a create's callbacks at this peer (*callbacks.Relay).
type Relay interface {
	RelayArgs(args *fasthttp.Args, fe *fsm.Frontend, b *fsm.Backend, mid string, createdAt int64)
}

// Config configures the BBB API; every field but Logger and MaxBodySize
// is required.
type Config struct {
	Logger      *slog.Logger
	MaxBodySize int
	// Guard is the server's body gate (bounded reads, per-client counts).
	Guard     *guard.Guard
	Placement Placement
	Relay     Relay
	Metrics   *Metrics
	// Central holds recordings copied to central storage (may be disabled).
	Central *central.Central
}

// API serves the BBB API over a cluster.
type API struct {
	cfg     Config
	cluster Cluster
	log     *slog.Logger
	node    *nodeclient.Client // calls to backends
	// recordings answers the recording calls and keeps their index.
	recordings *recordings.Recordings
	meetings   *getmeetings.Lister
	metrics    *Metrics
	guard      *guard.Guard
	ctl        Placement
	relay      Relay
	// lastConfirmed: when a checksum miss last made the replica consistent.
	lastConfirmed atomic.Int64
}

// New builds the BBB API.
func New(cfg Config, cluster Cluster) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	node := nodeclient.New(cfg.Metrics.observeBackend)
	return &API{cfg: cfg, cluster: cluster, log: cfg.Logger, node: node,
		recordings: recordings.New(cluster, node, cfg.Logger, cfg.Central, cfg.Guard.PublicBase),
		meetings:   getmeetings.New(cluster, node, cfg.Logger, cfg.Metrics.TooLarge, cfg.Metrics.listingAge()),
		metrics:    cfg.Metrics, guard: cfg.Guard, ctl: cfg.Placement, relay: cfg.Relay}
}

// Metrics are the BBB API's collectors. Label values are IDs, keys and
// call names: never secrets.
type Metrics struct {
	BBBRequests    *prometheus.CounterVec
	BBBLatency     *prometheus.HistogramVec
	BackendCalls   *prometheus.CounterVec
	BackendLatency *prometheus.HistogramVec
	Placements     *prometheus.CounterVec
	PlaceFailures  *prometheus.CounterVec
	ApplyLatency   prometheus.Histogram
	LeaderAnswers  prometheus.Counter
	// ListingAge: how old the node listings getMeetings answered from were.
	ListingAge  prometheus.Histogram
	TooLarge    *prometheus.CounterVec // backend answers over control.MaxBackendResponse
	Recreations prometheus.Counter     // meetings re-created by failover
}

func (m *Metrics) observeBBB(call, frontend, result string, d time.Duration) {
	m.BBBRequests.WithLabelValues(call, frontend, result).Inc()
	m.BBBLatency.WithLabelValues(call).Observe(d.Seconds())
}

func (m *Metrics) observeBackend(backend, call string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.BackendCalls.WithLabelValues(backend, metricCall(call), result).Inc()
	m.BackendLatency.WithLabelValues(backend).Observe(d.Seconds())
}

// requestContext bounds work done for one request.
func requestContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

func now() int64 { return time.Now().UnixNano() }

// CallBackend makes one signed call to a BBB node, bounded by timeout
// (the control loops' Caller).
func (s *API) CallBackend(b *fsm.Backend, call string, args *fasthttp.Args, timeout time.Duration) ([]byte, error) {
	return s.node.Call(b, call, args, nil, "", timeout)
}

// Release gives a meeting's claim back (the callback relay's meeting-ended hook).
// (createdAt: only the instance claimed then; 0: whichever).
func (s *API) Release(internal, backendID string, createdAt int64) {
	s.releaseInstance(internal, backendID, createdAt)
}

// SyncRecordings refreshes the recordings index from b (all of them when
// ids is empty); with wait, until the local replica holds the entries.
func (s *API) SyncRecordings(b *fsm.Backend, ids []string, wait bool) error {
	return s.recordings.Sync(b, ids, wait)
}

// SyncRecordingsWith is the recordings sync's round for b, committing
// through apply (the leader's term-bound apply).
func (s *API) SyncRecordingsWith(ctx context.Context, apply control.ApplyFunc, b *fsm.Backend) error {
	return s.recordings.SyncWith(ctx, apply, b)
}

// listingAge is ListingAge as an Observer, nil when unset (a nil
// Histogram inside an interface would not compare nil).
func (m *Metrics) listingAge() prometheus.Observer {
	if m == nil || m.ListingAge == nil {
		return nil
	}
	return m.ListingAge
}
