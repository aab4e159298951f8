package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/gateway"
	"github.com/conclave-lb/conclave/raftnode"
)

// gossipKey reads CONCLAVE_GOSSIP_KEY (base64 of 16, 24 or 32 bytes). It is
// required unless the gossip address is on loopback.
func gossipKey(gossipAddr string) ([]byte, error) {
	raw := strings.TrimSpace(os.Getenv("CONCLAVE_GOSSIP_KEY"))
	if raw == "" {
		host, _, _ := net.SplitHostPort(gossipAddr)
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
			return nil, nil
		}
		return nil, fmt.Errorf("CONCLAVE_GOSSIP_KEY is required when gossip listens outside loopback (%s): e.g. $(head -c 32 /dev/urandom | base64)", gossipAddr)
	}
	key, err := discovery.ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("CONCLAVE_GOSSIP_KEY: %w", err)
	}
	return key, nil
}

// gossipLoads adapts the member table to what the gateway reads.
type gossipLoads struct{ n *discovery.Node }

func (g gossipLoads) AgentLoads() map[string]gateway.AgentLoad {
	out := map[string]gateway.AgentLoad{}
	for url, m := range g.n.Loads() {
		out[url] = gateway.AgentLoad{Meetings: m.Meta.Meetings, Attendees: m.Meta.Attendees,
			Videos: m.Meta.Videos, Voice: m.Meta.Voice,
			Alive: m.Alive, BBBUp: m.Meta.BBBUp, Updated: m.Updated}
	}
	return out
}

func (g gossipLoads) NumMembers() int { return g.n.NumMembers() }

// joinPeersGossip keeps this peer in one gossip cluster with the others:
// their gossip addresses come from the replicated peer table.
func joinPeersGossip(g *discovery.Node, node *raftnode.Node, self string, stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		alive := map[string]bool{}
		for _, m := range g.Members() {
			if m.Alive {
				alive[m.Addr] = true
			}
		}
		var missing []string
		for _, p := range node.FSM().Peers() {
			if p.ID != self && p.GossipAddr != "" && !alive[p.GossipAddr] {
				missing = append(missing, p.GossipAddr)
			}
		}
		if len(missing) > 0 {
			if _, err := g.Join(missing...); err != nil {
				log.Debug("gossip join of peers failed", "peers", missing, "err", err)
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// gossipLoadKey is discovery.Config.LoadKey for this peer: the load key of
// a report's host:port, derived from the JWT secret (auth.AgentLoadKey).
// Without a JWT secret there is nothing to verify with: reports are taken
// as they come, which is logged once.
func gossipLoadKey(jwtSecret string, log *slog.Logger) func(apiURL string) []byte {
	if jwtSecret == "" {
		log.Warn("no CONCLAVE_API_JWT_SECRET: agents' gossiped load is unauthenticated; " +
			"anyone holding the gossip key can report any backend's load (set a JWT secret and give agents agent tokens)")
		return nil
	}
	return func(apiURL string) []byte {
		hp, err := auth.HostPort(apiURL)
		if err != nil {
			return nil
		}
		return auth.AgentLoadKey(jwtSecret, hp)
	}
}

var descGossipRejected = prometheus.NewDesc("conclave_gossip_reports_rejected_total",
	"Agents' gossiped load reports this peer dropped, by reason (unsigned, bad_signature, stale, replay, bad_url).",
	[]string{"reason"}, nil)

// Describe and Collect make the member table's rejection counts a metric
// (the gateway registers a LoadSource that is a prometheus.Collector).
func (g gossipLoads) Describe(ch chan<- *prometheus.Desc) { ch <- descGossipRejected }

func (g gossipLoads) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range g.n.RejectedReports() {
		ch <- prometheus.MustNewConstMetric(descGossipRejected, prometheus.CounterValue, float64(n), reason)
	}
}
