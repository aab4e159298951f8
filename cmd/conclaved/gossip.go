package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

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
