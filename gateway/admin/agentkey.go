package admin

import (
	"encoding/base64"

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
	if a.h.cfg.JWTSecret == "" {
		WriteError(a.ctx, 409, "unauthenticated", "this cluster has no JWT secret: agents' load is gossiped unsigned")
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
		WriteError(a.ctx, 400, "invalid", "cannot tell the URL's host:port")
		return
	}
	a.ctx.Response.Header.Set("Cache-Control", "no-store")
	WriteJSON(a.ctx, 200, adminapi.LoadKeyAnswer{Key: base64.StdEncoding.EncodeToString(auth.AgentLoadKey(a.h.cfg.JWTSecret, hp)), HostPort: hp})
}

// isPeerAddress refuses (answering 400 itself) a backend URL whose
// host:port is one of the peers' own HTTP, Raft or gossip addresses: a
// "backend" there would make the cluster call itself with a node's rights.
func (a *adminRequest) isPeerAddress(backendURL string) bool {
	hp, err := auth.HostPort(backendURL)
	if err != nil {
		return false
	}
	for _, p := range a.h.cluster.FSM().Peers() {
		for _, addr := range []string{p.HTTPAddr, p.RaftAddr, p.GossipAddr} {
			if addr != "" && auth.SameHostPort(hp, addr) {
				WriteError(a.ctx, 400, "invalid", "the URL's host:port is Conclave peer "+p.ID+"'s own address, not a BBB server")
				return true
			}
		}
	}
	return false
}
