// Package raftnode runs one Conclave peer's Raft member: storage in the data
// dir, bootstrap and join, membership changes, writes forwarded from
// followers to the leader, and the read paths (local and consistent).
//
// Peer-to-peer calls (forwarded writes, read-index, join, remove, status)
// travel over the peers' HTTP port; ServeInternal answers them and the
// gateway mounts it, so this package needs no server of its own. Their
// wire protocol (bodies, failures, the client) is package peercall; what
// raft is handed in place of its own parts (the FSM adapter, the logger,
// the counting log store, the TLS stream layer) is internal/raftadapt.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/peertls"
	"github.com/conclave-lb/conclave/raftnode/internal/raftadapt"
	"github.com/conclave-lb/conclave/raftnode/peercall"
)

// Config configures a Node.
type Config struct {
	ID            string
	DataDir       string
	RaftBind      string // listen address of the Raft transport
	RaftAdvertise string // address other peers dial; defaults to RaftBind
	HTTPAdvertise string // this peer's HTTP host:port, for forwarding
	// GossipAdvertise is this peer's memberlist address, recorded so other
	// peers can join it.
	GossipAdvertise string
	Bootstrap       bool
	Join            []string // HTTP addresses of existing peers
	// PeerToken returns the bearer token for peer-to-peer calls ("" = none).
	PeerToken func() string
	// TLS, when set, puts the Raft transport and peer-to-peer HTTP calls
	// under mutual TLS with the cluster CA; nil keeps plain TCP and HTTP.
	TLS    *peertls.Config
	Logger *slog.Logger
	// Timing; zero values take production defaults.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// SnapshotThreshold: log entries between automatic snapshots.
	SnapshotThreshold uint64
	// OnHalt, when set, is called once if the FSM meets a log entry of a
	// command type this release does not know and may not skip (halt.go);
	// the node then shuts itself down, and Halted reports the error too.
	OnHalt func(error)
	// FSMOptions build the FSM (fsm.WithoutCommands: mixed-version tests).
	FSMOptions []fsm.Option
}

// Errors callers distinguish.
var (
	ErrNoLeader      = errors.New("no leader known")
	ErrNotFound      = errors.New("no such peer")
	ErrShuttingDown  = errors.New("node is shutting down")
	errNotLeader     = errors.New("not the leader")
	errLeaderNotYet  = errors.New("leader has not finished taking over")
	defaultOpTimeout = 10 * time.Second
)

// Node is a running Raft member with its FSM.
type Node struct {
	cfg        Config
	log        *slog.Logger
	fsm        *fsm.FSM
	rfsm       *raftadapt.FSM
	raft       *raft.Raft
	transport  *raft.NetworkTransport
	store      *raftboltdb.BoltStore
	logCount   *raftadapt.CountingLogStore // in front of store, behind the cache
	readyCache leaderAppliedCache
	snaps      *raft.FileSnapshotStore
	client     *peercall.Client

	// leaderReady is set once this node, as leader, has applied everything
	// its predecessors committed (a barrier at the start of its term).
	leaderReady atomic.Bool
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
	leaderObs   *raft.Observer
	obsCh       chan raft.Observation
	// OnLeaderChange, when set before Start, is called on every change.
	leaderChanges atomic.Uint64
	// FSM halts and skips (halt.go).
	haltCh   chan struct{}
	haltOnce sync.Once
	haltMu   sync.Mutex
	haltErr  error
	opened   chan struct{} // closed when Open returns the node
	skips    skipCounter
	// lead runs the leader-only loops of each won term (leadership.go).
	lead leadership
}

// Open creates the stores, the transport and the Raft instance. It
// bootstraps a new cluster when asked to and the data dir holds no state.
func Open(cfg Config) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("raftnode: a node ID is required")
	}
	if cfg.RaftAdvertise == "" {
		cfg.RaftAdvertise = cfg.RaftBind
	}
	if host, _, err := net.SplitHostPort(cfg.RaftAdvertise); err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
		return nil, fmt.Errorf("raftnode: raft advertise address %q must be a reachable host:port (not 0.0.0.0): set --raft-advertise", cfg.RaftAdvertise)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, fsm: fsm.New(cfg.FSMOptions...), stop: make(chan struct{})}
	n.rfsm = raftadapt.NewFSM(n.fsm, n.halt, n.skip)
	n.haltCh, n.opened = make(chan struct{}), make(chan struct{})
	n.client = peercall.New(cfg.PeerToken, cfg.TLS)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	// Tuned for peers on one LAN (round trips well under 10 ms): a
	// follower that hears nothing for 0.5–1 s (raft draws it between
	// HeartbeatTimeout and twice that) stands for election, so a killed
	// leader's writes come back about a second later; raft's defaults
	// (1 s) doubled that. The leader sends heartbeats every
	// HeartbeatTimeout/10 and steps down after LeaderLeaseTimeout without
	// a quorum's answer: 500 ms, as before, so a busy leader is not
	// deposed sooner than it was. docs/RELIABILITY.md has the figures.
	rc.HeartbeatTimeout = pick(cfg.HeartbeatTimeout, 500*time.Millisecond)
	rc.ElectionTimeout = pick(cfg.ElectionTimeout, 500*time.Millisecond)
	rc.LeaderLeaseTimeout = min(rc.HeartbeatTimeout, 500*time.Millisecond)
	// A follower learns a new commit index from the leader's next
	// AppendEntries; when no new entry follows, that comes after
	// CommitTimeout (drawn between it and twice it). Followers wait for
	// their replica before answering a forwarded write or a consistent
	// read (read-your-writes), so raft's 50 ms default would add 75 ms on
	// average to such calls. But the leader sends that AppendEntries to
	// every follower on every timeout, idle or not: at 5 ms (before) it
	// took 18 % of a core on a quarter-core leader doing 20 creates a
	// second, 11 % at 20 ms, 6 % at 50 ms (docs/PERFORMANCE.md), CPU a
	// flooded leader needs for its own commits. 20 ms is the compromise.
	rc.CommitTimeout = 20 * time.Millisecond
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	rc.Logger = raftadapt.NewLogger(cfg.Logger)

	var err error
	n.store, err = raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("raftnode: open log store in %s: %w", cfg.DataDir, err)
	}
	n.logCount = &raftadapt.CountingLogStore{LogStore: n.store}
	logs, err := raft.NewLogCache(512, n.logCount)
	if err != nil {
		n.store.Close()
		return nil, err
	}
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, rc.Logger)
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAdvertise)
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("raftnode: advertise address: %w", err)
	}
	if cfg.TLS != nil {
		n.transport, err = raftadapt.NewTLSTransport(cfg.RaftBind, addr, cfg.TLS, rc.Logger, cfg.Logger)
	} else {
		n.transport, err = raft.NewTCPTransportWithLogger(cfg.RaftBind, addr, 5, 10*time.Second, rc.Logger)
	}
	if err != nil {
		n.store.Close()
		return nil, fmt.Errorf("raftnode: raft transport on %s: %w", cfg.RaftBind, err)
	}

	hasState, err := raft.HasExistingState(logs, n.store, n.snaps)
	if err != nil {
		n.closeStores()
		return nil, err
	}
	n.raft, err = raft.NewRaft(rc, n.rfsm, logs, n.store, n.snaps, n.transport)
	if err != nil {
		n.closeStores()
		close(n.stop)
		if h := n.HaltError(); h != nil {
			err = h // a snapshot of a newer release: say so, not raft's summary
		}
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	if cfg.Bootstrap && !hasState {
		n.log.Info("bootstrapping a new cluster", "id", cfg.ID, "raft_addr", cfg.RaftAdvertise)
		f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAdvertise), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Shutdown()
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	} else if cfg.Bootstrap {
		n.log.Info("data dir holds state: --bootstrap ignored", "dir", cfg.DataDir)
	}

	// Observe leader changes through an observer: it never blocks raft.
	n.obsCh = make(chan raft.Observation, 16)
	n.leaderObs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(n.leaderObs)
	n.wg.Add(2)
	go n.watchLeadership()
	go n.maintainPeerRecord()
	if len(cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	close(n.opened)
	return n, nil
}

func pick(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// FSM is the local replica, for local reads.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ID is this node's Raft ID.
func (n *Node) ID() string { return n.cfg.ID }

// IsLeader reports whether this node leads (and has taken over fully).
func (n *Node) IsLeader() bool {
	return n.raft.State() == raft.Leader && n.leaderReady.Load()
}

// Leader returns the current leader's ID and HTTP address, as far as known.
func (n *Node) Leader() (id, httpAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	p, _ := n.fsm.Peer(string(lid))
	return string(lid), p.HTTPAddr
}

// LeaderChanges counts leadership changes seen by this node.
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

// RaftStats exposes raft's own counters (term, indexes, state).
func (n *Node) RaftStats() map[string]string { return n.raft.Stats() }

// LogWrites returns how many writes (fsyncs) the log store has taken since
// start, and how many entries they held.
func (n *Node) LogWrites() (writes, entries uint64) { return n.logCount.Counts() }

func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.obsCh:
			lo := o.Data.(raft.LeaderObservation)
			n.leaderChanges.Add(1)
			n.log.Info("leader changed", "leader", lo.LeaderID, "addr", lo.LeaderAddr)
			leading := raft.ServerID(n.cfg.ID) == lo.LeaderID
			gen := n.observed(leading) // a lost leadership ends its loops here
			if !leading {
				n.leaderReady.Store(false)
				continue
			}
			go n.takeOver(gen)
		}
	}
}

// takeOver runs when this node wins an election: a barrier makes sure every
// entry of earlier terms is applied before the node answers consistent reads,
// and before the leader loops of its term start (gen: the observation that
// started it; a later one cancels the start).
func (n *Node) takeOver(gen uint64) {
	for n.raft.State() == raft.Leader {
		if err := n.raft.Barrier(defaultOpTimeout).Error(); err != nil {
			n.log.Warn("barrier after election failed", "err", err)
			select {
			case <-n.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		n.leaderReady.Store(true)
		n.log.Info("leading", "id", n.cfg.ID, "applied", n.fsm.AppliedIndex())
		n.establish(gen)
		n.ensurePeerRecord()
		return
	}
}

// maintainPeerRecord keeps this node's HTTP address in the replicated peer
// table, so others can forward to it once it leads. It covers nodes added by
// `conclavectl join peer`, which knows only the Raft address.
func (n *Node) maintainPeerRecord() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.ensurePeerRecord()
		}
	}
}

func (n *Node) ensurePeerRecord() {
	want := fsm.Peer{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertise, HTTPAddr: n.cfg.HTTPAdvertise, GossipAddr: n.cfg.GossipAdvertise}
	if p, ok := n.fsm.Peer(n.cfg.ID); ok && p == want {
		return
	}
	if !n.inConfiguration() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Apply(ctx, &fsm.SetPeer{ID: want.ID, RaftAddr: want.RaftAddr, HTTPAddr: want.HTTPAddr, GossipAddr: want.GossipAddr}); err != nil {
		n.log.Debug("peer record not written yet", "err", err)
	}
}

func (n *Node) inConfiguration() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.ID {
			return true
		}
	}
	return false
}

// HandOverLeadership makes another voter leader if this node leads, so
// the cluster does not wait out an election timeout when it stops. The node
// keeps running as a follower.
func (n *Node) HandOverLeadership() {
	if n.raft.State() == raft.Leader && n.voterCount() > 1 {
		n.log.Info("handing leadership over before shutdown")
		if e := n.raft.LeadershipTransfer().Error(); e != nil {
			n.log.Warn("leadership transfer failed", "err", e)
		}
	}
}

// Shutdown stops the node. A leader hands leadership to another voter first.
func (n *Node) Shutdown() error {
	var err error
	n.stopOnce.Do(func() {
		n.HandOverLeadership()
		close(n.stop)
		n.observed(false) // the leader loops end before raft does
		n.raft.DeregisterObserver(n.leaderObs)
		err = n.raft.Shutdown().Error()
		n.wg.Wait()
		n.closeStores()
	})
	return err
}

func (n *Node) voterCount() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// Snapshot asks raft for a snapshot now (also used before backups).
func (n *Node) Snapshot() error {
	return n.raft.Snapshot().Error()
}
