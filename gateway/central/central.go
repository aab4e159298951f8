// Package central keeps recordings in the cluster's central store (a
// shared directory or an S3-compatible bucket, package recstore), so they
// play after the node that made them is gone:
//
//   - transfer.go takes the files an agent ships (the protocol is in
//     adminapi/transfer.go) and marks a recording format central in the
//     replicated index only once every file verified;
//   - playback.go serves the central files on every peer, with ranges and
//     validators as nginx gives them;
//   - links.go rewrites getRecordings' playback URLs onto the cluster's own
//     name and signs the links of protected recordings.
//
// Layout in the store:
//
//	published/<format>/<recordID>/<version>/<path>  a copy's files, as BBB publishes them
//	manifests/<format>/<recordID>/<version>.json    the offer the copy was made from
//	staging/<transferID>/offer.json                 a transfer under way, and its
//	staging/<transferID>/<file>.<chunk>.<sha256>    verified chunks
//
// A copy's version is the transfer that made it: a recording shipped again
// (BBB processed it anew) is written beside the copy in use, the index
// switches to it in one command, and only then is the old one deleted.
package central

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/recstore"
)

// Cluster is what central storage needs of the replicated core.
type Cluster interface {
	FSM() *fsm.FSM
	// Apply returns once the local replica holds the write.
	Apply(ctx context.Context, c fsm.Command) (*fsm.Result, error)
	// ConsistentRead returns once the local replica holds every write
	// committed before the call.
	ConsistentRead(ctx context.Context) error
}

// Requests lends central the gateway's request plumbing (as the admin API
// gets it): token checks and bounded body reads.
type Requests interface {
	Authorize(ctx *fasthttp.RequestCtx, scope string) (*auth.Claims, bool)
	HasBody(ctx *fasthttp.RequestCtx) bool
	ReadBody(ctx *fasthttp.RequestCtx, limit int) ([]byte, func(), bool)
	RefuseUnread(ctx *fasthttp.RequestCtx)
}

// Config configures central storage.
type Config struct {
	// Store is the central store; nil leaves recordings on their nodes
	// (transfers are refused, playback URLs stay the nodes').
	Store recstore.Store
	// LinkTTL bounds a protected recording's playback link; default DefaultLinkTTL.
	LinkTTL time.Duration
	// SyncRecordings asks a backend for recordings the index does not
	// know yet (an agent may ship one before the index heard of it).
	SyncRecordings func(b *fsm.Backend, ids []string) error
	// PublicBase is the scheme://host a client reached the cluster by
	// (the gateway's guard: a trusted proxy's X-Forwarded-* believed).
	PublicBase func(*fasthttp.RequestCtx) (string, bool)
	Registry   prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// DefaultLinkTTL is how long a protected recording's link plays: long
// enough to watch a lecture, short enough that a shared link soon dies.
const DefaultLinkTTL = 4 * time.Hour

// Central is a peer's side of central recordings.
type Central struct {
	cfg     Config
	store   recstore.Store
	cluster Cluster
	req     Requests
	log     *slog.Logger
	m       metrics

	mu       sync.Mutex
	offers   map[string]*offer // recent offers by transfer ID (the store holds them all)
	pending  map[string]int64  // bytes still missing, by transfer ID, for the progress gauge
	received map[string]int64  // bytes of chunks this peer took, by transfer ID (mayReceive)
}

type metrics struct {
	received    prometheus.Counter
	transfers   *prometheus.CounterVec
	pending     prometheus.GaugeFunc
	played      prometheus.Counter
	playRefused *prometheus.CounterVec
}

// New builds central storage over cluster.
func New(cfg Config, cluster Cluster, req Requests) *Central {
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = DefaultLinkTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Central{cfg: cfg, store: cfg.Store, cluster: cluster, req: req, log: cfg.Logger,
		offers: map[string]*offer{}, pending: map[string]int64{}, received: map[string]int64{}}
	c.m = metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "conclave_recordings_transfer_bytes_total",
			Help: "Bytes of recording files received from agents into central storage (verified chunks)."}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "conclave_recordings_transfers_total",
			Help: "Recording transfers completed, by result: central, or corrupt (a file failed verification and was dropped)."}, []string{"result"}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "conclave_recordings_transfer_pending_bytes",
			Help: "Bytes still to come for the transfers offered to this peer and not complete (their progress)."}, c.pendingBytes),
		played: prometheus.NewCounter(prometheus.CounterOpts{Name: "conclave_playback_bytes_total",
			Help: "Bytes of central recordings served to players."}),
		playRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "conclave_playback_refused_total",
			Help: "Playback requests refused, by reason."}, []string{"reason"}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(c.m.received, c.m.transfers, c.m.pending, c.m.played, c.m.playRefused)
	}
	return c
}

// Enabled reports whether the cluster has central storage.
func (c *Central) Enabled() bool { return c != nil && c.store != nil }

func (c *Central) pendingBytes() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, p := range c.pending {
		n += p
	}
	return float64(n)
}

// publishedKey is where a central file lives.
func publishedKey(format, recordID, version, path string) string {
	return "published/" + format + "/" + recordID + "/" + version + "/" + path
}

func manifestKey(format, recordID, version string) string {
	return "manifests/" + format + "/" + recordID + "/" + version + ".json"
}

// deleteCopy removes one version of a recording format's copy.
func (c *Central) deleteCopy(ctx context.Context, format, recordID, version string) error {
	if err := c.store.DeletePrefix(ctx, "published/"+format+"/"+recordID+"/"+version+"/"); err != nil {
		return err
	}
	return c.store.Delete(ctx, manifestKey(format, recordID, version))
}

// DeleteAll removes the central copies of recs (a frontend removed).
func (c *Central) DeleteAll(ctx context.Context, recs []fsm.Recording) error {
	for i := range recs {
		if err := c.Delete(ctx, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the central copies of a recording (deleteRecordings).
func (c *Central) Delete(ctx context.Context, rec *fsm.Recording) error {
	if !c.Enabled() {
		return nil
	}
	for _, cc := range rec.Central { // every version: a transfer may have left one behind
		if err := c.store.DeletePrefix(ctx, "published/"+cc.Format+"/"+rec.RecordID+"/"); err != nil {
			return err
		}
		if err := c.store.DeletePrefix(ctx, "manifests/"+cc.Format+"/"+rec.RecordID+"/"); err != nil {
			return err
		}
	}
	return nil
}
