// Command conclaved is a Conclave gateway peer: a Raft member that serves
// the BBB API, the admin API and metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/gateway"
	"github.com/conclave-lb/conclave/gateway/central"
	"github.com/conclave-lb/conclave/internal/cli"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/recstore"
)

var version = "dev"

type options struct {
	id, dataDir, listenHTTP, httpAdvertise, raftAddr, raftAdvertise, gossipAddr string
	bootstrap                                                                   bool
	join                                                                        []string
	maxBody                                                                     int
	recordingSync                                                               time.Duration
	loadWeights                                                                 string
	recordingsStore                                                             string
	playbackLinkTTL                                                             time.Duration
	publicURL                                                                   string
	clientCPU                                                                   string
	tls                                                                         tlsOptions
}

var envFlags = cli.EnvFlags{
	"id":                "CONCLAVE_NODE_ID",
	"data-dir":          "CONCLAVE_DATA_DIR",
	"listen-http":       "CONCLAVE_LISTEN_HTTP",
	"http-advertise":    "CONCLAVE_HTTP_ADVERTISE",
	"raft-addr":         "CONCLAVE_RAFT_ADDR",
	"raft-advertise":    "CONCLAVE_RAFT_ADVERTISE",
	"gossip-addr":       "CONCLAVE_GOSSIP_ADDR",
	"bootstrap":         "CONCLAVE_BOOTSTRAP",
	"join":              "CONCLAVE_JOIN",
	"max-body":          "CONCLAVE_MAX_BODY",
	"recordings-sync":   "CONCLAVE_RECORDINGS_SYNC",
	"load-weights":      "CONCLAVE_LOAD_WEIGHTS",
	"recordings-store":  "CONCLAVE_RECORDINGS_STORE",
	"playback-link-ttl": "CONCLAVE_PLAYBACK_LINK_TTL",
	"public-url":        "CONCLAVE_PUBLIC_URL",
	"client-cpu":        "CONCLAVE_CLIENT_CPU",
	"tls-ca":            "CONCLAVE_TLS_CA",
	"tls-cert":          "CONCLAVE_TLS_CERT",
	"tls-key":           "CONCLAVE_TLS_KEY",
}

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "conclaved:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "conclaved",
		Short: "Conclave gateway peer: BBB API, admin API and Raft member",
		Long: `conclaved is one peer of a Conclave cluster. Every peer serves the BBB API;
peers replicate backends, frontends and meetings with Raft.

Environment-only settings: CONCLAVE_API_JWT_SECRET, CONCLAVE_GOSSIP_KEY,
CONCLAVE_LOG_LEVEL, CONCLAVE_LOG_FORMAT, CONCLAVE_REVERSE_PROXY_MODE,
CONCLAVE_TRUSTED_PROXIES (comma-separated CIDRs or IPs of the reverse
proxies whose X-Forwarded-For is believed in reverse-proxy mode; default
loopback only), CONCLAVE_CALLBACK_URL (how BBB nodes reach this peer for
callbacks; default http://<http-advertise>).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags.Apply(cmd.Flags()); err != nil {
				return err
			}
			return run(o)
		},
	}
	cmd.SetVersionTemplate("conclaved {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&o.id, "id", host, "this peer's Raft ID, stable across restarts")
	f.StringVar(&o.dataDir, "data-dir", "./conclave-data", "Raft log, snapshots and node state")
	f.StringVar(&o.listenHTTP, "listen-http", "127.0.0.1:42353", "BBB API, admin API, /metrics, /healthz, /readyz")
	f.StringVar(&o.httpAdvertise, "http-advertise", "", "HTTP address other peers use to reach this one (default: --listen-http)")
	f.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:42354", "Raft transport bind (and advertise) address")
	f.StringVar(&o.raftAdvertise, "raft-advertise", "", "Raft address other peers dial, where it differs from --raft-addr")
	f.StringVar(&o.gossipAddr, "gossip-addr", "127.0.0.1:42355", "memberlist address (UDP+TCP)")
	f.BoolVar(&o.bootstrap, "bootstrap", false, "start a new cluster with this peer as its only voter (a no-op on restart)")
	f.StringSliceVar(&o.join, "join", nil, "comma-separated HTTP addresses of existing peers to join")
	f.IntVar(&o.maxBody, "max-body", gateway.DefaultMaxBodySize, "largest request body accepted, in bytes")
	f.DurationVar(&o.recordingSync, "recordings-sync", 30*time.Second, "how often the leader syncs the recordings index from every backend (callbacks update it at once)")
	f.StringVar(&o.loadWeights, "load-weights", gateway.DefaultLoadWeights.String(),
		"placement load = (meeting×meetings + attendee×attendees + video×video streams + voice×voice participants) × load factor; names left out keep their default")
	f.StringVar(&o.recordingsStore, "recordings-store", "", "central recordings: file:///path (a shared directory) or s3://bucket/prefix (CONCLAVE_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); empty: recordings stay on their nodes")
	f.StringVar(&o.publicURL, "public-url", "", "the cluster's name as browsers reach it (https://bbb.example.org), for central recordings' playback URLs; empty: the host each request came on")
	f.DurationVar(&o.playbackLinkTTL, "playback-link-ttl", central.DefaultLinkTTL, "how long a protected recording's playback link from getRecordings plays")
	f.StringVar(&o.clientCPU, "client-cpu", strconv.FormatFloat(gateway.DefaultClientCPU, 'g', -1, 64),
		"share of this peer's CPU (its cgroup quota, else its cores) that client requests may keep busy; past it their reads are paced so that Raft keeps the rest; a share in (0, 1], or off")
	addTLSFlags(f, &o.tls)
	envFlags.Annotate(f)
	return cmd
}

func run(o options) error {
	logger, err := cli.NewLogger(os.Stderr)
	if err != nil {
		return err
	}
	if o.id == "" {
		return errors.New("--id is empty and the host name is unknown")
	}
	if err := checkDataDir(o.dataDir); err != nil {
		return err
	}
	weights, err := gateway.ParseLoadWeights(o.loadWeights)
	if err != nil {
		return fmt.Errorf("--load-weights: %w", err)
	}
	clientCPU, err := gateway.ParseClientCPU(o.clientCPU)
	if err != nil {
		return fmt.Errorf("--client-cpu: %w", err)
	}
	if o.httpAdvertise == "" {
		o.httpAdvertise = advertiseFor(o.listenHTTP)
	}
	if o.raftAdvertise == "" {
		o.raftAdvertise = advertiseFor(o.raftAddr)
	}
	jwtSecret := os.Getenv("CONCLAVE_API_JWT_SECRET")
	trustedProxies, err := gateway.ParseTrustedProxies(os.Getenv("CONCLAVE_TRUSTED_PROXIES"))
	if err != nil {
		return fmt.Errorf("CONCLAVE_TRUSTED_PROXIES: %w", err)
	}
	logger = logger.With("peer", o.id)
	peerTLS, err := o.tls.peerTLS(o.raftAddr, o.raftAdvertise, logger)
	if err != nil {
		return err
	}
	gkey, err := gossipKey(o.gossipAddr)
	if err != nil {
		return err
	}
	if o.publicURL != "" {
		if o.publicURL, err = gateway.ParsePublicURL(o.publicURL); err != nil {
			return fmt.Errorf("--public-url %w", err)
		}
	}
	if o.playbackLinkTTL < 0 { // 0: the default
		return fmt.Errorf("--playback-link-ttl %v: want a positive duration", o.playbackLinkTTL)
	}
	var store recstore.Store
	if o.recordingsStore != "" {
		if store, err = recstore.Open(o.recordingsStore, os.Getenv); err != nil {
			return fmt.Errorf("--recordings-store: %w", err)
		}
	}

	// Listen first: a port in use should fail before Raft touches anything.
	ln, err := net.Listen("tcp", o.listenHTTP)
	if err != nil {
		return fmt.Errorf("cannot listen for HTTP on %s: %w", o.listenHTTP, err)
	}
	gossip, err := discovery.Start(discovery.Config{
		Name: "peer:" + o.id, BindAddr: o.gossipAddr, AdvertiseAddr: advertiseFor(o.gossipAddr), SecretKey: gkey,
		Meta:    discovery.Meta{Role: discovery.RolePeer, HTTPAddr: o.httpAdvertise},
		Logger:  logger.With("component", "gossip"),
		LoadKey: gossipLoadKey(jwtSecret, logger),
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("gossip on %s: %w", o.gossipAddr, err)
	}
	node, err := raftnode.Open(raftnode.Config{
		ID: o.id, DataDir: o.dataDir, RaftBind: o.raftAddr, RaftAdvertise: o.raftAdvertise,
		HTTPAdvertise: o.httpAdvertise, GossipAdvertise: advertiseFor(o.gossipAddr), Bootstrap: o.bootstrap, Join: o.join,
		PeerToken: auth.PeerTokenSource(jwtSecret, o.id), TLS: peerTLS, Logger: logger,
	})
	if err != nil {
		ln.Close()
		gossip.Shutdown()
		return err
	}
	stopGossip := make(chan struct{})
	go joinPeersGossip(gossip, node, o.id, stopGossip, logger)
	srv := gateway.New(gateway.Config{
		JWTSecret: jwtSecret, ReverseProxy: cli.ParseBool(os.Getenv("CONCLAVE_REVERSE_PROXY_MODE")), TrustedProxies: trustedProxies,
		MaxBodySize: o.maxBody, Logger: logger, Version: version,
		CallbackBase: callbackBase(o), Loads: gossipLoads{gossip}, PeerTLS: peerTLS,
		LoadWeights: weights, RecordingsStore: store, PlaybackLinkTTL: o.playbackLinkTTL, PublicURL: o.publicURL,
		ClientCPU: clientCPU,
	}, node)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	healthCtx, stopHealth := context.WithCancel(context.Background())
	defer stopHealth()
	go srv.RunHealth(healthCtx, gateway.DefaultHealth)
	go srv.RunRecordingSync(healthCtx, o.recordingSync)
	go srv.RunStagingSweep(healthCtx)
	logger.Info("conclaved started", "version", version, "http", o.listenHTTP, "raft", o.raftAdvertise,
		"bootstrap", o.bootstrap, "join", strings.Join(o.join, ","), "admin_auth", jwtSecret != "", "peer_tls", peerTLS != nil,
		"load_weights", weights.String(), "recordings_store", storeName(store))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var exitErr error
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
	case err := <-serveErr:
		logger.Error("HTTP server stopped", "err", err)
	case <-node.Halted():
		// The log holds a command this release does not know and may not
		// skip: going on would serve a state that differs from the other
		// peers'. raftnode logged it and stops Raft; exit non-zero with it.
		exitErr = node.HaltError()
		logger.Error("stopping: this peer cannot apply the replicated log", "err", exitErr)
	}
	// A graceful stop serves until the last moment: /readyz turns 503 and
	// answers close their connections while leadership moves away; only
	// then does the listener close (in-flight requests finish, with Raft
	// still running for them), and Raft stops last.
	srv.Drain()
	stopHealth()
	close(stopGossip)
	_ = gossip.Leave(2 * time.Second)
	_ = gossip.Shutdown()
	node.HandOverLeadership()
	// From here on new connections are refused until the process exits:
	// requests still in flight get shutdownGrace, no more (a create
	// waiting on a dead node would otherwise keep the port closed for
	// seconds while the process lives).
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	closed := time.Now()
	_ = srv.Shutdown(ctx)
	if err := node.Shutdown(); err != nil {
		logger.Warn("raft shutdown", "err", err)
	}
	logger.Info("stopped", "refusing_for", time.Since(closed).Round(time.Millisecond).String())
	return exitErr
}

// shutdownGrace bounds how long a stopping peer's listener is closed
// while requests in flight finish.
const shutdownGrace = 500 * time.Millisecond

// callbackBase is the URL backends use to reach this peer for BBB's
// callbacks: CONCLAVE_CALLBACK_URL, else http://<http-advertise>.
func callbackBase(o options) string {
	if v := strings.TrimRight(os.Getenv("CONCLAVE_CALLBACK_URL"), "/"); v != "" {
		return v
	}
	return "http://" + o.httpAdvertise
}

// advertiseFor turns a bind address into one others can dial: an
// unspecified host (0.0.0.0, ::, empty) becomes this host's name.
func advertiseFor(bind string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return bind
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		h, _ := os.Hostname()
		return net.JoinHostPort(h, port)
	}
	return bind
}

// checkDataDir makes sure the data dir exists and is writable, so a bad
// path fails at start with a clear message rather than deep inside Raft.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s is unusable: %w", dir, err)
	}
	probe := filepath.Join(dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	return os.Remove(probe)
}

// storeName names the recordings store for the log (never its credentials).
func storeName(s recstore.Store) string {
	if s == nil {
		return "none (recordings stay on their nodes)"
	}
	return s.String()
}
