// Package discovery is Conclave's gossip layer, a thin wrapper around
// hashicorp/memberlist shared by conclaved peers and conclave-agents.
//
// Every member gossips a small Meta (its role, a peer's HTTP address, an
// agent's BBB API URL and load) as memberlist NodeMeta. A change goes
// straight to the peers at once (coalesced to two a second) and through
// gossip (UpdateNode) at a slower pace for load-only changes; see
// UpdateMeta. Each Node keeps its own table of members, copied out of
// memberlist's callbacks, including members that died or left in the last
// ten minutes (DeadRetention).
package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a gossip member.
type Config struct {
	Name          string   // unique member name (default: host name)
	BindAddr      string   // host:port for UDP and TCP; port 0 picks a free one
	AdvertiseAddr string   // host:port others reach this member on (default BindAddr)
	Join          []string // gossip addresses to join (and rejoin when isolated)
	SecretKey     []byte   // 16/24/32-byte AES key, or nil for no encryption
	Meta          Meta     // initial meta (Seq is set by Start)
	Logger        *slog.Logger

	// Fast uses memberlist's local-network timings (100 ms gossip, 1 s
	// probes) and quicker join retries: for tests and demos on loopback.
	Fast bool

	// DeadRetention is how long dead or departed members stay in the
	// table with Alive=false (default 10 minutes).
	DeadRetention time.Duration

	// LoadKey, when set, makes this member verify agents' load reports
	// (see loadauth.go): it returns the load key for a report's BBB API
	// URL, or nil when none can be derived. Nil: reports are taken as they
	// come (unauthenticated; clusters without a JWT secret).
	LoadKey func(apiURL string) []byte
	// LoadWindow is how far a signed report's time may be from this
	// member's clock (default DefaultLoadWindow).
	LoadWindow time.Duration

	tune func(*memberlist.Config) // tests: adjust memberlist's config last
}

// Member is one row of the member table.
type Member struct {
	Name       string    `json:"name"`
	Addr       string    `json:"addr"` // gossip host:port
	Meta       Meta      `json:"meta"`
	Alive      bool      `json:"alive"`
	Updated    time.Time `json:"updated"`               // when this node last saw its meta change (a new Seq counts)
	LeftOrDead time.Time `json:"left_or_dead,omitzero"` // when it died or left (zero while alive)
	// Rejected is why this member's last load report was dropped (empty
	// when it was taken); Meta is then its last good report, if any.
	Rejected string `json:"rejected,omitempty"`
}

// timings holds the durations that differ between Fast and normal mode.
type timings struct {
	joinRetryMin, joinRetryMax time.Duration // backoff between failed joins
	rejoinAfter                time.Duration // isolated this long → join again
	check                      time.Duration // how often the join loop looks
	publishEvery               time.Duration // minimum gap between direct sends to the peers
	gossipEvery                time.Duration // minimum gap between load-only UpdateNode calls
	updateWait                 time.Duration // how long UpdateNode may block the publisher
}

var (
	normalTimings = timings{joinRetryMin: time.Second, joinRetryMax: 30 * time.Second, rejoinAfter: 10 * time.Second,
		check: 2 * time.Second, publishEvery: 500 * time.Millisecond, gossipEvery: 10 * time.Second, updateWait: 250 * time.Millisecond}
	fastTimings = timings{joinRetryMin: 200 * time.Millisecond, joinRetryMax: 2 * time.Second, rejoinAfter: 2 * time.Second,
		check: 250 * time.Millisecond, publishEvery: 500 * time.Millisecond, gossipEvery: time.Second, updateWait: 100 * time.Millisecond}
)

// Node is a running gossip member.
type Node struct {
	cfg       Config
	name      string
	log       *slog.Logger
	t         timings
	retention time.Duration
	ml        *memberlist.Memberlist

	metaMu  sync.Mutex
	meta    Meta   // latest meta handed to UpdateMeta (or Start)
	wire    []byte // what NodeMeta returns: the last gossiped encoding
	latest  []byte // encoding of meta
	pending []byte // encoded meta not yet sent to the peers
	owed    []byte // encoded meta not yet gossiped
	urgent  bool   // owed changes more than the load: gossip it now
	seq     uint64
	kick    chan struct{}
	signKey []byte // agents: the load key every published meta is signed with
	owedT   int64  // Time of the owed meta
	wireT   int64  // Time of the last gossiped meta

	mu       sync.RWMutex
	members  map[string]*entry
	window   time.Duration             // LoadWindow
	urlSeq   map[string]urlSeen        // newest accepted report per API URL
	warned   map[string]time.Time      // last rejection logged, per member
	rejected map[string]*atomic.Uint64 // rejected reports by reason

	lifeMu sync.Mutex // serialises UpdateNode, Leave and Shutdown
	left   bool
	down   bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	published atomic.Int64 // UpdateNode calls, for tests
}

type entry struct {
	m   Member
	raw []byte
}

// Start creates the memberlist and, when cfg.Join is set, joins it in the
// background: attempts are retried with backoff until one succeeds, and
// repeated whenever this member has seen no other live peer for a while.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
		if cfg.Name == "" {
			return nil, errors.New("discovery: no member name and no host name")
		}
	}
	switch len(cfg.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("discovery: gossip key must be 16, 24 or 32 bytes, not %d", len(cfg.SecretKey))
	}
	n := &Node{
		cfg: cfg, name: cfg.Name, t: normalTimings, retention: cfg.DeadRetention,
		kick: make(chan struct{}, 1), members: map[string]*entry{}, stop: make(chan struct{}),
		window: cfg.LoadWindow, urlSeq: map[string]urlSeen{}, warned: map[string]time.Time{},
		rejected: map[string]*atomic.Uint64{},
	}
	if n.window <= 0 {
		n.window = DefaultLoadWindow
	}
	for _, r := range RejectReasons {
		n.rejected[r] = new(atomic.Uint64)
	}
	if cfg.Fast {
		n.t = fastTimings
	}
	if n.retention <= 0 {
		n.retention = 10 * time.Minute
	}
	n.log = cfg.Logger.With("component", "gossip")

	// Seq starts from the clock, so it also grows across restarts and a
	// restarted member's meta is never mistaken for an old one.
	m := cfg.Meta
	m.Seq = uint64(time.Now().UnixNano())
	wire, err := EncodeMeta(m)
	if err != nil {
		return nil, err
	}
	n.meta, n.wire, n.latest, n.seq = m, wire, wire, m.Seq

	var mc *memberlist.Config
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		// The local config's RetransmitMult of 2 lets a broadcast die out
		// in small clusters (an update then waits for push/pull); keep the
		// LAN's 4.
		lan := memberlist.DefaultLANConfig()
		mc.RetransmitMult = lan.RetransmitMult
		// The local config's 200 ms probe timeout turns a busy CPU (many
		// members in one test process) into false failures; keep the LAN's.
		mc.ProbeTimeout, mc.SuspicionMult, mc.IndirectChecks = lan.ProbeTimeout, lan.SuspicionMult, lan.IndirectChecks
		mc.PushPullInterval = 3 * time.Second
	} else {
		mc = memberlist.DefaultLANConfig()
		mc.PushPullInterval = 15 * time.Second
	}
	// Broadcasts can die out before a member that joined concurrently is
	// known to the senders (more likely in small clusters); the periodic
	// full-state push/pull repairs that. memberlist stretches the interval
	// with the cluster size (×4 at 200 members).
	mc.Name = cfg.Name
	bindHost, bindPort, err := splitAddr(cfg.BindAddr, "bind")
	if err != nil {
		return nil, err
	}
	mc.BindAddr, mc.BindPort = bindHost, bindPort
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = cfg.BindAddr
	}
	advHost, advPort, err := splitAddr(adv, "advertise")
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(advHost); ip == nil || !ip.IsUnspecified() {
		// An unspecified advertise address (0.0.0.0) is left to memberlist,
		// which picks a private address of this host.
		mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
		if advPort == 0 {
			mc.AdvertisePort = bindPort // memberlist fills in a dynamic port
		}
	}
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Label = "conclave" // every member must use this package (memberlist drops other labels)
	// Our messages are small; memberlist's LZW compression allocates large
	// tables per packet and dominated CPU (through GC) in the 200-agent test.
	mc.EnableCompression = false
	mc.DeadNodeReclaimTime = 30 * time.Second // a restarted member may come back on a new address
	mc.Delegate = delegate{n}
	mc.Events = events{n}
	mc.LogOutput = nil
	mc.Logger = log.New(&logBridge{log: n.log}, "", 0)

	if cfg.tune != nil {
		cfg.tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("discovery: cannot start gossip on %s: %w", cfg.BindAddr, err)
	}
	n.ml = ml
	n.log.Info("gossip started", "name", cfg.Name, "addr", n.Addr(), "role", string(m.Role),
		"encrypted", len(cfg.SecretKey) > 0, "join", strings.Join(cfg.Join, ","))

	n.wg.Add(2)
	go n.publishLoop()
	go n.janitor()
	if len(cfg.Join) > 0 {
		go n.joinLoop() // not waited for: a Join may block for a TCP timeout
	}
	return n, nil
}

// splitAddr parses host:port, resolving a host name to an IP address
// (memberlist wants IPs). An empty host means all interfaces.
func splitAddr(addr, what string) (string, int, error) {
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("discovery: %s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("discovery: %s address %q: bad port", what, addr)
	}
	if host == "" {
		return "0.0.0.0", port, nil
	}
	if net.ParseIP(host) != nil {
		return host, port, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("discovery: %s address %q: cannot resolve %s: %v", what, addr, host, err)
	}
	for _, ip := range ips { // prefer IPv4
		if ip.To4() != nil {
			return ip.String(), port, nil
		}
	}
	return ips[0].String(), port, nil
}

// Name is this member's name.
func (n *Node) Name() string { return n.name }

// Addr is the gossip host:port this member advertises.
func (n *Node) Addr() string { return n.ml.LocalNode().Address() }

// LocalMeta is the meta this member last asked to gossip.
func (n *Node) LocalMeta() Meta {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	return n.meta
}

// UpdateMeta sets this member's meta (Seq is assigned here) and returns
// at once; a background publisher spreads it. It fails, changing nothing,
// on an encoding over MaxMetaSize.
//
// Load travels two ways. Every update goes straight to the live peers (a
// UDP message each), at most two a second with the latest meta winning.
// Gossip (memberlist UpdateNode, which every member relays a dozen times)
// carries it too, but at most once per gossip interval (10 s; 1 s with
// Fast) unless the role, an address, the BBB state or the load factor
// changed: gossip capacity is a few updates a second for the whole
// cluster, too little for 200 agents' loads. Push/pull repairs losses.
//
// Calling UpdateMeta with unchanged content is a heartbeat: the peers get
// the new Seq directly (and move the member's Updated), nobody else does.
// Agents do this on every poll, so on the peers a live agent's Updated is
// never much older than its poll interval.
func (n *Node) UpdateMeta(m Meta) error { return n.update(m, false) }

// update is UpdateMeta; force gossips the meta at once (a new signing key).
func (n *Node) update(m Meta, force bool) error {
	n.metaMu.Lock()
	m.Seq = n.seq + 1
	m.Time, m.MAC = 0, ""
	now := time.Now()
	if n.signKey != nil {
		SignMeta(&m, n.signKey, now)
	}
	b, err := EncodeMeta(m)
	if err != nil {
		n.metaMu.Unlock()
		return err
	}
	prev := n.meta
	n.seq = m.Seq
	n.meta, n.latest, n.pending = m, b, b
	// A bare refresh (same content) is not gossiped, except that a signed
	// meta is re-gossiped before its time goes stale for peers that learn
	// it by push/pull.
	refresh := n.signKey != nil && now.Unix()-n.wireT >= int64(n.window/3/time.Second)
	if !sameContent(prev, m) || n.owed != nil || refresh || force {
		n.owed, n.owedT = b, m.Time
	}
	if prev.Role != m.Role || prev.HTTPAddr != m.HTTPAddr || prev.APIURL != m.APIURL ||
		prev.BBBUp != m.BBBUp || prev.LoadFactor != m.LoadFactor || force {
		n.urgent = true
	}
	n.metaMu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return nil
}

// publishLoop sends new meta to the peers at most every publishEvery and
// hands it to memberlist's gossip as UpdateMeta describes.
func (n *Node) publishLoop() {
	defer n.wg.Done()
	var lastDirect, lastGossip time.Time
	var gossipDue <-chan time.Time // set while a gossip is owed but not yet due
	for {
		select {
		case <-n.stop:
			return
		case <-n.kick:
		case <-gossipDue:
			gossipDue = nil
		}
		if d := n.t.publishEvery - time.Since(lastDirect); d > 0 {
			select {
			case <-n.stop:
				return
			case <-time.After(d):
			}
		}
		now := time.Now()
		n.metaMu.Lock()
		direct, owed := n.pending, n.owed
		due := owed != nil && (n.urgent || now.Sub(lastGossip) >= n.t.gossipEvery)
		n.pending = nil
		if due {
			n.wire, n.owed, n.urgent, n.wireT = owed, nil, false, n.owedT
		}
		n.metaMu.Unlock()

		n.lifeMu.Lock()
		if n.left || n.down {
			n.lifeMu.Unlock()
			return
		}
		if direct != nil {
			lastDirect = now
			n.sendDirect(direct)
		}
		var err error
		if due {
			lastGossip = now
			n.published.Add(1)
			// UpdateNode waits for the broadcast to go out; that wait is of
			// no use here, so a short timeout is normal and not an error.
			err = n.ml.UpdateNode(n.t.updateWait)
		}
		n.lifeMu.Unlock()
		if err != nil && !strings.Contains(err.Error(), "timeout") {
			n.log.Warn("gossip meta update failed", "err", err)
		}
		if !due && owed != nil && gossipDue == nil {
			gossipDue = time.After(n.t.gossipEvery - now.Sub(lastGossip))
		}
	}
}

// directMeta tags a user message carrying a member's meta, sent straight
// to the peers (see UpdateMeta). Both paths are encrypted alike; Seq
// orders them.
const directMeta byte = 1

// sendDirect sends this member's encoded meta to every other live peer.
func (n *Node) sendDirect(wire []byte) {
	msg := make([]byte, 0, 1+binary.MaxVarintLen64+len(n.name)+len(wire))
	msg = append(msg, directMeta)
	msg = binary.AppendUvarint(msg, uint64(len(n.name)))
	msg = append(append(msg, n.name...), wire...)
	var to []memberlist.Address
	n.mu.RLock()
	for name, e := range n.members {
		if name != n.name && e.m.Alive && e.m.Meta.Role == RolePeer {
			to = append(to, memberlist.Address{Addr: e.m.Addr, Name: name})
		}
	}
	n.mu.RUnlock()
	for _, a := range to {
		if err := n.ml.SendToAddress(a, msg); err != nil {
			n.log.Debug("direct meta send failed", "to", a.Name, "err", err)
		}
	}
}

// receiveDirect applies a meta sent by sendDirect: only for a member
// memberlist counts as alive, and only if newer than what the table holds.
func (n *Node) receiveDirect(msg []byte) {
	if len(msg) < 2 || msg[0] != directMeta {
		return
	}
	l, k := binary.Uvarint(msg[1:])
	if k <= 0 || l == 0 || uint64(len(msg)-1-k) < l {
		return
	}
	name, raw := string(msg[1+k:1+k+int(l)]), msg[1+k+int(l):]
	if len(raw) > MaxMetaSize || name == n.name {
		return
	}
	meta, err := DecodeMeta(raw)
	if err != nil {
		return
	}
	now := time.Now()
	n.mu.Lock()
	e, ok := n.members[name]
	if !ok || !e.m.Alive || meta.Seq <= e.m.Meta.Seq {
		n.mu.Unlock()
		return
	}
	if n.checks(&meta) {
		switch v, reason := n.admitLocked(name, &meta, now, false); v {
		case ignore:
			n.mu.Unlock()
			return
		case reject:
			logIt := n.rejectedLocked(name, reason, now)
			e.m.Rejected = reason
			n.mu.Unlock()
			if logIt {
				n.logRejected(name, e.m.Addr, meta.APIURL, reason)
			}
			return
		}
	}
	e.raw, e.m.Meta, e.m.Updated, e.m.Rejected = slices.Clone(raw), meta, now, ""
	n.mu.Unlock()
}

// checks reports whether meta is an agent's load report this member must
// verify before taking it.
func (n *Node) checks(meta *Meta) bool {
	return n.cfg.LoadKey != nil && meta.Role == RoleAgent
}

func (n *Node) logRejected(member, addr, apiURL, reason string) {
	n.log.Warn("gossip load report rejected: not signed with the load key of an agent token for this backend",
		"member", member, "addr", addr, "api_url", apiURL, "reason", reason)
}

// isolated reports whether no other live peer is in the table.
func (n *Node) isolated() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for name, e := range n.members {
		if name != n.name && e.m.Alive && e.m.Meta.Role == RolePeer {
			return false
		}
	}
	return true
}

// joinLoop joins cfg.Join until it works, then rejoins whenever this member
// has been without another live peer for rejoinAfter (peers restarted, a
// partition healed, the agent outlived every peer).
func (n *Node) joinLoop() {
	joined := false
	var isolatedSince, lastWarn, followUp time.Time
	backoff := n.t.joinRetryMin
	for {
		wait := n.t.check
		if !followUp.IsZero() && time.Now().After(followUp) {
			// A second push/pull shortly after joining picks up members the
			// contacted node learned while we joined.
			followUp = time.Time{}
			if _, err := n.Join(n.cfg.Join...); err != nil {
				n.log.Debug("follow-up gossip join", "err", err)
			}
		}
		if n.isolated() {
			now := time.Now()
			if isolatedSince.IsZero() {
				isolatedSince = now
				if joined {
					n.log.Warn("no live peer in the gossip cluster; will rejoin", "join", strings.Join(n.cfg.Join, ","))
				}
			}
			if !joined || now.Sub(isolatedSince) >= n.t.rejoinAfter {
				count, err := n.Join(n.cfg.Join...)
				switch {
				case n.stopped():
					return
				case count > 0:
					n.log.Info("joined gossip cluster", "contacted", count, "members", n.ml.NumMembers(), "rejoin", joined)
					joined, backoff = true, n.t.joinRetryMin
					followUp = time.Now().Add(2 * n.t.check)
					isolatedSince = time.Time{}
				default:
					if lastWarn.IsZero() || now.Sub(lastWarn) >= time.Minute {
						n.log.Warn("cannot join gossip cluster; retrying", "join", strings.Join(n.cfg.Join, ","), "err", err)
						lastWarn = now
					} else {
						n.log.Debug("gossip join failed", "err", err)
					}
					wait = backoff
					backoff = min(backoff*2, n.t.joinRetryMax)
				}
			}
		} else {
			isolatedSince, backoff = time.Time{}, n.t.joinRetryMin
			joined = true
		}
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
	}
}

// Join contacts the given gossip addresses, in random order, until one
// answers (one full-state exchange is enough: gossip does the rest, and
// 200 agents each syncing with every peer would load the peers for
// nothing). It reports how many answered (0 or 1) and fails for members
// with another gossip key.
func (n *Node) Join(addrs ...string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("discovery: nothing to join")
	}
	var errs []error
	for _, i := range rand.Perm(len(addrs)) {
		if n.stopped() {
			return 0, errors.New("discovery: node is shut down")
		}
		if c, err := n.ml.Join(addrs[i : i+1]); c > 0 {
			return c, nil
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	return 0, errors.Join(errs...)
}

func (n *Node) stopped() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// janitor forgets members dead or gone for longer than the retention.
func (n *Node) janitor() {
	defer n.wg.Done()
	tick := time.NewTicker(min(n.retention/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		cut := time.Now().Add(-n.retention)
		n.mu.Lock()
		for name, e := range n.members {
			if !e.m.Alive && e.m.LeftOrDead.Before(cut) {
				delete(n.members, name)
			}
		}
		for name, t := range n.warned {
			if t.Before(cut) {
				delete(n.warned, name)
			}
		}
		n.mu.Unlock()
	}
}

// expired reports whether a dead member is past the retention.
func (n *Node) expired(m *Member, now time.Time) bool {
	return !m.Alive && now.Sub(m.LeftOrDead) > n.retention
}

// Members is a copy of the member table sorted by name, this member
// included, with members that died or left recently (Alive=false).
func (n *Node) Members() []Member {
	now := time.Now()
	n.mu.RLock()
	out := make([]Member, 0, len(n.members))
	for _, e := range n.members {
		if !n.expired(&e.m, now) {
			out = append(out, e.m)
		}
	}
	n.mu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Loads is the agents' rows keyed by their BBB API URL, alive or recently
// dead. Where two agents claim one URL (an agent restarted under another
// name), the live one wins, then the more recently updated.
func (n *Node) Loads() map[string]Member {
	now := time.Now()
	out := map[string]Member{}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, e := range n.members {
		m := e.m
		if m.Meta.Role != RoleAgent || m.Meta.APIURL == "" || n.expired(&m, now) {
			continue
		}
		if old, ok := out[m.Meta.APIURL]; ok {
			if old.Alive && !m.Alive || old.Alive == m.Alive && !m.Updated.After(old.Updated) {
				continue
			}
		}
		out[m.Meta.APIURL] = m
	}
	return out
}

// PeerHTTPAddrs lists the HTTP addresses of live peers, sorted.
func (n *Node) PeerHTTPAddrs() []string {
	var out []string
	n.mu.RLock()
	for _, e := range n.members {
		if e.m.Alive && e.m.Meta.Role == RolePeer && e.m.Meta.HTTPAddr != "" {
			out = append(out, e.m.Meta.HTTPAddr)
		}
	}
	n.mu.RUnlock()
	slices.Sort(out)
	return slices.Compact(out)
}

// NumMembers is how many members memberlist counts as live, this one included.
func (n *Node) NumMembers() int { return n.ml.NumMembers() }

// Leave tells the cluster this member is going (others see it leave rather
// than fail) and waits up to timeout for that to be sent. Call Shutdown after.
func (n *Node) Leave(timeout time.Duration) error {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.down || n.left {
		return nil
	}
	n.left = true
	return n.ml.Leave(timeout)
}

// Shutdown stops gossiping at once, without telling anyone (others see a
// failure unless Leave came first). It is safe to call more than once.
func (n *Node) Shutdown() error {
	n.stopOnce.Do(func() { close(n.stop) })
	n.lifeMu.Lock()
	if n.down {
		n.lifeMu.Unlock()
		return nil
	}
	n.down = true
	err := n.ml.Shutdown()
	n.lifeMu.Unlock()
	n.wg.Wait()
	return err
}

// delegate serves this member's meta to memberlist.
type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	d.n.metaMu.Lock()
	defer d.n.metaMu.Unlock()
	if len(d.n.wire) > limit { // cannot happen: EncodeMeta refuses it
		return nil
	}
	return slices.Clone(d.n.wire)
}
func (d delegate) NotifyMsg(b []byte)                       { d.n.receiveDirect(b) }
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events copies memberlist's member events into the table. memberlist
// calls these under its own lock: copy, never block, never call back.
type events struct{ n *Node }

func (e events) NotifyJoin(node *memberlist.Node)   { e.n.upsert(node, true) }
func (e events) NotifyUpdate(node *memberlist.Node) { e.n.upsert(node, false) }
func (e events) NotifyLeave(node *memberlist.Node) {
	n := e.n
	now := time.Now()
	n.mu.Lock()
	ent, ok := n.members[node.Name]
	if !ok {
		ent = &entry{m: Member{Name: node.Name, Addr: node.Address()}}
		n.members[node.Name] = ent
	}
	wasAlive := ent.m.Alive || !ok
	ent.m.Alive, ent.m.LeftOrDead = false, now
	meta := ent.m.Meta
	n.mu.Unlock()
	if wasAlive {
		n.log.Log(context.Background(), n.memberLogLevel(meta.Role), "gossip member gone", "member", node.Name, "role", string(meta.Role))
	}
}

// memberLogLevel: peers log every member coming and going; agents only
// peers (200 agents each logging the other 199 would be noise).
func (n *Node) memberLogLevel(r Role) slog.Level {
	if n.cfg.Meta.Role == RolePeer || r == RolePeer {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (n *Node) upsert(node *memberlist.Node, join bool) {
	now := time.Now()
	addr := node.Address()
	n.mu.Lock()
	ent, ok := n.members[node.Name]
	if !ok {
		ent = &entry{m: Member{Name: node.Name}}
		n.members[node.Name] = ent
	}
	wasAlive := ok && ent.m.Alive
	ent.m.Addr = addr
	ent.m.Alive, ent.m.LeftOrDead = true, time.Time{}
	var bad error
	var rejected string
	logRejected := false
	if !ok || string(ent.raw) != string(node.Meta) {
		meta, err := DecodeMeta(node.Meta)
		bad = err
		// A direct message may have brought a newer meta already; gossip
		// does not take the row back (Seq grows across restarts, too).
		if join || !wasAlive || err != nil || meta.Seq > ent.m.Meta.Seq {
			v := accept
			if err == nil && n.checks(&meta) {
				v, rejected = n.admitLocked(node.Name, &meta, now, join && !wasAlive)
			}
			switch v {
			case accept:
				ent.raw, ent.m.Meta, ent.m.Updated, ent.m.Rejected = slices.Clone(node.Meta), meta, now, ""
			case ignore:
				ent.raw = slices.Clone(node.Meta)
				if join {
					ent.m.Updated = now
				}
			case reject:
				// The last good report stands; a member with none shows
				// as an agent with no URL, so it carries no load.
				ent.raw = slices.Clone(node.Meta)
				ent.m.Rejected = rejected
				if ent.m.Meta.Role != RoleAgent || !ok {
					ent.m.Meta = Meta{Role: RoleAgent}
				}
				logRejected = n.rejectedLocked(node.Name, rejected, now)
			}
		}
	} else if join {
		ent.m.Updated = now
	}
	role := ent.m.Meta.Role
	n.mu.Unlock()
	if logRejected {
		var apiURL string
		if m, err := DecodeMeta(node.Meta); err == nil {
			apiURL = m.APIURL
		}
		n.logRejected(node.Name, addr, apiURL, rejected)
	}
	if join && !wasAlive && node.Name != n.name && role == RolePeer {
		// A peer that just (re)appeared gets our current meta straight away,
		// not only the last gossiped one.
		n.metaMu.Lock()
		if n.pending == nil {
			n.pending = n.latest
		}
		n.metaMu.Unlock()
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
	if join && !wasAlive && node.Name != n.name {
		n.log.Log(context.Background(), n.memberLogLevel(role), "gossip member joined", "member", node.Name, "addr", addr, "role", string(role))
	}
	if bad != nil {
		n.log.Debug("gossip member with unreadable meta", "member", node.Name, "err", bad)
	}
}
