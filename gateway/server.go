// Package gateway is a Conclave peer's HTTP face: one fasthttp server that
// routes the BBB API (package bbbapi), the admin REST API (package admin),
// BBB's callbacks (package callbacks), peer-to-peer calls, the status page,
// metrics and health, and wires those parts and the control loops together.
package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/admin"
	"github.com/conclave-lb/conclave/gateway/bbbapi"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/central"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/internal/admit"
	"github.com/conclave-lb/conclave/gateway/internal/guard"
	"github.com/conclave-lb/conclave/gateway/internal/pace"
	"github.com/conclave-lb/conclave/internal/peertls"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/recstore"
)

var pprofHandler = func() fasthttp.RequestHandler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return fasthttpadaptor.NewFastHTTPHandler(mux)
}()

// Config configures a Server.
type Config struct {
	// JWTSecret guards the admin API; empty opens it to loopback only.
	JWTSecret string
	// ReverseProxy trusts X-Forwarded-For from a proxy in front, when the
	// connection comes from one of TrustedProxies (loopback if empty).
	ReverseProxy   bool
	TrustedProxies []netip.Prefix
	// MaxBodySize bounds request bodies (slides for create can be large).
	MaxBodySize int
	Logger      *slog.Logger
	Version     string
	// Registry receives the gateway's metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Loads, when set, gives agents' gossiped load (fresher than probes).
	Loads LoadSource
	// LoadWeights weigh what a node runs in placement; zero: DefaultLoadWeights.
	LoadWeights LoadWeights
	// CallbackBase is this peer's URL as backends reach it (e.g.
	// http://peer1:42353); when set, BBB's callbacks are relayed through it.
	CallbackBase string
	// PeerTLS, when set, serves the peer-to-peer routes over mutual TLS
	// on the same port and refuses them in plain HTTP (peerserver.go).
	PeerTLS *peertls.Config
	// MaxJoins, MaxReads and MaxWrites bound the BBB API requests served
	// at once, by class (admission.go); past them a request is shed with
	// 503. Zero takes admit's defaults.
	MaxJoins, MaxReads, MaxWrites int
	// ClientCPU is the share of its CPU budget (cgroup quota, else cores)
	// the peer lets client connections keep busy before it paces their
	// reads, keeping the rest for consensus (gateway/internal/pace); 0
	// takes pace.DefaultTarget, a negative value turns pacing off.
	ClientCPU float64
	// RecordingsStore is the central recordings store (nil: recordings
	// stay on their nodes); PlaybackLinkTTL bounds protected links.
	RecordingsStore recstore.Store
	PlaybackLinkTTL time.Duration
	// PublicURL, when set, is the cluster's name for URLs written into
	// answers (playback links); else each request's host (ParsePublicURL).
	PublicURL string
}

// DefaultMaxBodySize fits a create with a few inline slides.
const DefaultMaxBodySize = 32 << 20

// Server serves every HTTP route of a peer.
type Server struct {
	cfg      Config
	cluster  Cluster
	log      *slog.Logger
	srv      *fasthttp.Server
	peerSrv  *fasthttp.Server // peer routes over mutual TLS (nil without PeerTLS)
	metrics  *metrics
	promH    fasthttp.RequestHandler
	api      *bbbapi.API      // the BBB API
	ctl      *control.Control // prober, recordings sync, placement
	admin    *admin.Handler   // the admin API (/api/v1)
	relay    *callbacks.Relay // BBB callbacks relayed to the clients
	central  *central.Central // recordings in central storage
	draining atomic.Bool      // set by Drain
	guard    *guard.Guard     // body gate, trusted proxies, refusals and panics counted
	gate     *admit.Gate      // BBB API requests in flight, by class (admission.go)
	pacer    *pace.Pacer      // client reads paced while over the CPU target (nil: off)
	shed     [3]prometheus.Counter
	// beforeRoute, when set (tests only), runs before each request is routed.
	beforeRoute func(*fasthttp.RequestCtx)
}

// New builds a server over a cluster.
func New(cfg Config, cluster Cluster) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = DefaultMaxBodySize
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Server{cfg: cfg, cluster: cluster, log: cfg.Logger}
	s.metrics = newMetrics(cfg.Registry, cluster, cfg.Loads)
	s.gate = admit.New(cfg.MaxJoins, cfg.MaxReads, cfg.MaxWrites)
	s.shed = newShedMetrics(cfg.Registry, s.gate)
	if cfg.ClientCPU >= 0 {
		s.pacer = pace.New(cfg.ClientCPU)
		registerPaceMetrics(cfg.Registry, s.pacer)
	}
	s.ctl = control.New(control.Config{
		Logger: cfg.Logger, Loads: cfg.Loads, LoadWeights: cfg.LoadWeights,
		TooLarge: func(id string) { s.metrics.TooLarge.WithLabelValues(id).Inc() },
		// s.api is set below, before any loop or request runs.
		SyncRecordings: func(ctx context.Context, apply control.ApplyFunc, b *fsm.Backend) error {
			return s.api.SyncRecordingsWith(ctx, apply, b)
		},
	}, cluster, backendCaller{s})
	s.relay = callbacks.New(callbacks.Config{Base: cfg.CallbackBase, Logger: cfg.Logger, Counter: s.metrics.callbacks,
		Release: func(internal, backendID string, createdAt int64) {
			s.api.Release(internal, backendID, createdAt)
		},
		SyncRecordings: func(b *fsm.Backend, ids []string) error { return s.api.SyncRecordings(b, ids, false) },
	}, cluster)
	s.admin = admin.New(admin.Config{JWTSecret: cfg.JWTSecret,
		DeleteCentral: func(ctx context.Context, recs []fsm.Recording) error { return s.central.DeleteAll(ctx, recs) },
	}, cluster, adminRequests{s})
	s.guard = guard.New(guard.Config{ReverseProxy: cfg.ReverseProxy, TrustedProxies: cfg.TrustedProxies,
		MaxBodySize: cfg.MaxBodySize, Registry: cfg.Registry, Logger: cfg.Logger, PublicURL: cfg.PublicURL})
	s.central = central.New(central.Config{Store: cfg.RecordingsStore, LinkTTL: cfg.PlaybackLinkTTL,
		Registry: cfg.Registry, Logger: cfg.Logger, PublicBase: func(ctx *fasthttp.RequestCtx) (string, bool) { return s.guard.PublicBase(ctx) },
		SyncRecordings: func(b *fsm.Backend, ids []string) error { return s.api.SyncRecordings(b, ids, true) },
	}, cluster, adminRequests{s})
	s.api = bbbapi.New(bbbapi.Config{Logger: cfg.Logger, MaxBodySize: cfg.MaxBodySize, Guard: s.guard,
		Placement: s.ctl, Relay: s.relay, Metrics: s.metrics.Metrics, Central: s.central}, cluster)
	s.promH = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	s.srv = &fasthttp.Server{
		Handler:            s.Handle,
		Name:               "conclave",
		MaxRequestBodySize: cfg.MaxBodySize,
		// Handlers see a request before its body is read: the checksum or
		// token is checked first, then the body is read within its bound
		// (guard.ReadBody). Only the first 8 KiB arrive with the headers.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               guard.ReadBufferSize,
		ReadTimeout:                  60 * time.Second,
		WriteTimeout:                 60 * time.Second,
		IdleTimeout:                  120 * time.Second,
		NoDefaultDate:                false,
		Logger:                       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		// Keep-alive clients are told to reconnect (to another peer) when
		// this one stops, instead of finding the connection cut.
		CloseOnShutdown: true,
	}
	if cfg.PeerTLS != nil {
		s.peerSrv = s.newPeerServer()
	}
	return s
}

// Drain starts a graceful stop: /readyz answers 503 so load balancers and
// health checks move traffic away, and every answer closes its connection
// so keep-alive clients reconnect, through DNS, to another peer. Requests
// are still served meanwhile.
func (s *Server) Drain() { s.draining.Store(true) }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.pacer != nil {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.pacer.Run(ctx)
	}
	if s.cfg.PeerTLS != nil {
		return s.servePeerTLS(ln, s.cfg.PeerTLS)
	}
	return s.srv.Serve(s.paced(ln))
}

// paced wraps the listener of client connections in the pacer. Without
// peer TLS, peers' calls share it (a loopback or test set-up).
func (s *Server) paced(ln net.Listener) net.Listener {
	if s.pacer == nil {
		return ln
	}
	return s.pacer.Listener(ln)
}

// Shutdown stops accepting and waits for open requests.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.peerSrv != nil {
		return s.shutdownBoth(ctx)
	}
	return s.srv.ShutdownWithContext(ctx)
}

var (
	prefixBBB      = []byte("/bigbluebutton/api")
	prefixTenant   = []byte("/bbb/")
	prefixInternal = []byte(raftnode.InternalPrefix)
	prefixAdmin    = []byte("/api/v1/")
	prefixTransfer = []byte(central.Prefix)
)

// Handle serves one request; a panic in it becomes an error answer.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	defer s.recoverRequest(ctx)
	if s.beforeRoute != nil {
		s.beforeRoute(ctx)
	}
	s.route(ctx)
}

// route routes one request.
func (s *Server) route(ctx *fasthttp.RequestCtx) {
	if s.draining.Load() {
		ctx.SetConnectionClose()
	}
	path := ctx.Path()
	switch {
	case bytes.HasPrefix(path, prefixBBB):
		s.serveAdmitted(ctx, "", path[len(prefixBBB):])
	case bytes.HasPrefix(path, prefixTenant):
		rest := path[len(prefixTenant):]
		i := bytes.IndexByte(rest, '/')
		if i <= 0 || !bytes.HasPrefix(rest[i:], prefixBBB) {
			ctx.Error("not found", fasthttp.StatusNotFound)
			return
		}
		s.serveAdmitted(ctx, string(rest[:i]), rest[i+len(prefixBBB):])
	case bytes.HasPrefix(path, []byte(callbacks.Prefix)):
		// BBB's callbacks carry a small form body (signed_parameters): read
		// within a bound before the handler parses it.
		s.guard.WithBody(ctx, callbacks.MaxBody, func() { s.relay.Serve(ctx, string(path[len(callbacks.Prefix):])) })
	case bytes.HasPrefix(path, prefixInternal):
		s.serveInternal(ctx, string(path[len(prefixInternal):]))
	case bytes.HasPrefix(path, prefixTransfer) && (len(path) == len(prefixTransfer) || path[len(prefixTransfer)] == '/'):
		s.central.ServeTransfer(ctx)
	case bytes.HasPrefix(path, prefixAdmin):
		s.admin.Serve(ctx)
	case string(path) == "/" || string(path) == "/status":
		s.serveStatus(ctx)
	case bytes.HasPrefix(path, []byte("/debug/pprof/")):
		// Go's profiler, for operators: admin scope (or loopback without a secret).
		if _, ok := s.authorize(ctx, auth.ScopeAdmin); ok && s.guard.NoBody(ctx) {
			pprofHandler(ctx)
		}
	case string(path) == "/metrics":
		if s.guard.NoBody(ctx) { // the adaptor would read any body whole
			s.promH(ctx)
		}
	case string(path) == "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.WriteString("ok\n")
	case string(path) == "/readyz":
		ok, why := s.cluster.Ready()
		if s.draining.Load() {
			ok, why = false, "shutting down"
		}
		ctx.SetContentType("text/plain; charset=utf-8")
		if !ok {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.WriteString("not ready: " + why + "\n")
			return
		}
		ctx.WriteString("ready\n")
	case bytes.HasPrefix(path, []byte(central.LinkPrefix)):
		if s.guard.NoBody(ctx) {
			s.central.ServeLink(ctx)
		}
	case central.IsPlaybackPath(path):
		if s.guard.NoBody(ctx) {
			s.central.ServePlayback(ctx)
		}
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
	}
}

// clientIP is the caller's address (clientAddr): X-Forwarded-For only
// from a trusted proxy.
func (s *Server) clientIP(ctx *fasthttp.RequestCtx) net.IP {
	return net.IP(s.guard.ClientAddr(ctx).AsSlice())
}

// requestContext bounds work done for one request.
func requestContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// ParsePublicURL checks a public URL for Config.PublicURL.
func ParsePublicURL(raw string) (string, error) { return guard.ParsePublicURL(raw) }

// ParseTrustedProxies reads a comma-separated list of CIDRs (a plain
// address counts as /32 or /128), for Config.TrustedProxies.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) { return guard.ParseTrustedProxies(list) }
