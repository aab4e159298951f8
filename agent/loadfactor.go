package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// loadFactorLoop writes the agent's load factor into its backend's
// settings through the trusted peers in turn (after autoregistration, when
// that is on), until one answers 200. A backend the cluster does not know
// yet (404) is retried every RegisterRetry: an operator may add it later.
func (a *Agent) loadFactorLoop(ctx context.Context) {
	defer a.wg.Done()
	for a.cfg.Autoregister && !a.registered.Load() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	logged := map[int]bool{}
	a.tryPeers(ctx, a.cfg.RegisterRetry, nil, func(peer string, wait *time.Duration) (stop, next bool) {
		status, msg := a.patchLoadFactor(ctx, peer)
		switch {
		case status == http.StatusOK:
			a.factorSet.Store(true)
			a.log.Info("load factor set in the backend's settings", "peer", peer, "load_factor", a.cfg.LoadFactor)
			return true, false
		case status == http.StatusNotFound:
			if !logged[status] {
				a.log.Warn("load factor: this BBB server is not a backend yet; retrying (register it, or run with -a)",
					"bbb_api", a.cfg.APIURL, "retry_in", wait.String())
			}
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			hint := "set CONCLAVE_API_TOKEN to a token with scope conclave:agent (subject: " + a.hostPort + ") or conclave:admin"
			if !logged[status] {
				a.log.Error("load factor: the admin API refused the token; CONCLAVE_LOAD_FACTOR is not applied; retrying slowly",
					"peer", peer, "status", status, "message", msg, "hint", hint)
			}
			*wait = a.cfg.RegisterBackoff
		case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity:
			a.log.Error("load factor: the admin API rejected it; not retrying", "peer", peer, "status", status, "message", msg)
			return true, false
		default:
			a.log.Warn("load factor: peer failed; trying another", "peer", peer, "status", status, "message", msg)
			return false, true
		}
		logged[status] = true
		return false, false
	})
}

// patchLoadFactor PATCHes {"load_factor": …} onto this agent's backend,
// named by its API URL, at one peer. Status 0: the peer did not answer.
func (a *Agent) patchLoadFactor(ctx context.Context, peer string) (int, string) {
	body, _ := json.Marshal(map[string]any{"load_factor": a.cfg.LoadFactor})
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	resp, err := a.callAdmin(ctx, http.MethodPatch, peerURL(peer, "/api/v1/backends/"+url.PathEscape(a.cfg.APIURL)), body)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	return resp.StatusCode, errorMessage(resp.Body)
}
