package gateway

import (
	"encoding/base64"
	"net"
	"strings"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
)

// POST /api/v1/agent/load-key {"url": "<BBB API URL>"} hands an agent the
// key it signs its gossiped load with (auth.AgentLoadKey). The caller's
// token must be an agent token for that URL's host:port (or an admin
// token). Every peer derives the same key from its own JWT secret to
// verify reports, so the key is never stored, logged or gossiped.

func isLoadKeyRoute(parts []string, method string) bool {
	return method == "POST" && len(parts) == 2 && parts[0] == "agent" && parts[1] == "load-key"
}

func (a *adminRequest) agentLoadKey() {
	if a.s.cfg.JWTSecret == "" {
		writeError(a.ctx, 409, "unauthenticated", "this cluster has no JWT secret: agents' load is gossiped unsigned")
		return
	}
	var req adminapi.LoadKeyRequest
	if !a.decodeBody(&req) {
		return
	}
	norm, ok := a.ownedURL(req.URL, "an agent token gets the load key of its own node only (subject host:port = the URL's)")
	if !ok {
		return
	}
	hp, err := auth.HostPort(norm)
	if err != nil {
		writeError(a.ctx, 400, "invalid", "cannot tell the URL's host:port")
		return
	}
	a.ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(a.ctx, 200, adminapi.LoadKeyAnswer{Key: base64.StdEncoding.EncodeToString(auth.AgentLoadKey(a.s.cfg.JWTSecret, hp)), HostPort: hp})
}

// isPeerAddress refuses (answering 400 itself) a backend URL whose
// host:port is one of the peers' own HTTP, Raft or gossip addresses: a
// "backend" there would make the cluster call itself with a node's rights.
func (a *adminRequest) isPeerAddress(backendURL string) bool {
	hp, err := auth.HostPort(backendURL)
	if err != nil {
		return false
	}
	for _, p := range a.s.cluster.FSM().Peers() {
		for _, addr := range []string{p.HTTPAddr, p.RaftAddr, p.GossipAddr} {
			if addr != "" && sameHostPort(hp, addr) {
				writeError(a.ctx, 400, "invalid", "the URL's host:port is Conclave peer "+p.ID+"'s own address, not a BBB server")
				return true
			}
		}
	}
	return false
}

// sameHostPort compares a canonical host:port with a peer address; two
// loopback or unspecified hosts count as one.
func sameHostPort(hp, addr string) bool {
	c, err := auth.CanonicalHostPort(addr)
	if err != nil {
		return false
	}
	if c == hp {
		return true
	}
	h1, p1, _ := net.SplitHostPort(hp)
	h2, p2, _ := net.SplitHostPort(c)
	return p1 == p2 && localHost(h1) && localHost(h2)
}

func localHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}
