package agent

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/conclave-lb/conclave/discovery"
)

// Anyone holding the gossip key can join the gossip cluster and claim to
// be a peer with any HTTP address. The agent sends its token there (for
// its load key) and, to register, its BBB secret: so it talks only to
// peers whose gossip address is one the operator named in --join
// (resolved), never to one gossip alone told it about.

const joinResolveEvery = 30 * time.Second

type joinSet struct {
	mu     sync.Mutex
	at     time.Time
	addrs  map[string]bool // ip:port
	warned map[string]bool // untrusted members already logged
}

// trustedPeers lists the HTTP addresses of live peers at a --join address.
func (a *Agent) trustedPeers() []string {
	allowed := a.joinAddrs()
	var out []string
	for _, m := range a.node.Members() {
		if !m.Alive || m.Meta.Role != discovery.RolePeer || m.Meta.HTTPAddr == "" || m.Name == a.node.Name() {
			continue
		}
		if allowed[canonicalAddr(m.Addr)] {
			out = append(out, m.Meta.HTTPAddr)
			continue
		}
		a.join.mu.Lock()
		first := !a.join.warned[m.Name]
		a.join.warned[m.Name] = true
		a.join.mu.Unlock()
		if first {
			a.log.Warn("ignoring a gossip member that claims to be a peer at an address not in --join: no token or secret goes to it",
				"member", m.Name, "addr", m.Addr, "http_addr", m.Meta.HTTPAddr)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// joinAddrs resolves the --join addresses (at most every joinResolveEvery).
func (a *Agent) joinAddrs() map[string]bool {
	j := &a.join
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.warned == nil {
		j.warned = map[string]bool{}
	}
	if j.addrs != nil && time.Since(j.at) < joinResolveEvery {
		return j.addrs
	}
	set := map[string]bool{}
	for _, addr := range a.cfg.Gossip.Join {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			set[net.JoinHostPort(ip.String(), port)] = true
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		cancel()
		for _, ip := range ips {
			set[net.JoinHostPort(ip.IP.String(), port)] = true
		}
		if err != nil && j.addrs != nil { // keep what resolved before
			for k := range j.addrs {
				set[k] = true
			}
		}
	}
	j.addrs, j.at = set, time.Now()
	return set
}

func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), port)
	}
	return addr
}

// tryPeers is the agent's one way of asking the trusted peers for
// something: a round every wait (base unless try sets it; at most 250 ms
// while no peer is known, after onNoPeers), each round starting one peer
// further. try answers for one peer: stop ends the loop, next moves on to
// the following peer (this one failed), anything else ends the round.
// It returns when try stops it or ctx ends.
func (a *Agent) tryPeers(ctx context.Context, base time.Duration, onNoPeers func(),
	try func(peer string, wait *time.Duration) (stop, next bool)) {
	for round := 0; ; round++ {
		wait := base
		peers := a.trustedPeers()
		if len(peers) == 0 {
			if onNoPeers != nil {
				onNoPeers()
			}
			wait = min(wait, 250*time.Millisecond)
		}
		for i := range peers {
			stop, next := try(peers[(round+i)%len(peers)], &wait)
			if ctx.Err() != nil || stop {
				return
			}
			if !next {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
