package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// Peers with a JWT secret take an agent's load only when it is signed with
// the backend's load key (see discovery/loadauth.go). The agent gets that
// key from a peer's admin API, POST /api/v1/agent/load-key, by showing its
// token (scope conclave:agent, subject this BBB server's host:port). The
// key is kept in memory only: never logged, never gossiped.

const (
	loadKeyPath    = "/api/v1/agent/load-key"
	loadKeyRefresh = 10 * time.Minute // the peers' JWT secret may be rotated
)

// loadKeyLoop fetches the load key from the peers learned from gossip until
// one hands it over, then again every loadKeyRefresh.
func (a *Agent) loadKeyLoop(ctx context.Context) {
	defer a.wg.Done()
	announced := false
	a.tryPeers(ctx, a.cfg.RegisterRetry, nil, func(peer string, wait *time.Duration) (stop, next bool) {
		key, status, msg := a.fetchLoadKey(ctx, peer)
		switch {
		case key != nil:
			a.node.SetLoadKey(key)
			a.signing.Store(true)
			if !announced {
				a.log.Info("load key received: gossiped load is signed", "peer", peer)
				announced = true
			}
			*wait = loadKeyRefresh
		case status == http.StatusConflict: // the cluster has no JWT secret
			a.log.Info("the peers have no JWT secret: load is gossiped unsigned", "peer", peer)
			*wait = loadKeyRefresh
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			a.log.Error("the admin API refused the token for the load key: peers will ignore this agent's load; retrying slowly",
				"peer", peer, "status", status, "message", msg,
				"hint", "CONCLAVE_API_TOKEN needs scope conclave:agent and subject "+a.hostPort+" (this BBB server's host:port)",
				"retry_in", a.cfg.RegisterBackoff.String())
			*wait = a.cfg.RegisterBackoff
		default:
			if status != 0 {
				a.log.Warn("load key: peer failed; trying another", "peer", peer, "status", status, "message", msg)
			}
			return false, true
		}
		return false, false
	})
}

// fetchLoadKey asks one peer for the load key. status 0: unreachable.
func (a *Agent) fetchLoadKey(ctx context.Context, peer string) (key []byte, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"url": a.cfg.APIURL})
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	resp, err := a.callAdmin(ctx, http.MethodPost, peerURL(peer, loadKeyPath), body)
	if errors.Is(err, errBadPeerAddress) {
		return nil, 0, ""
	}
	if err != nil {
		a.log.Debug("load key: peer unreachable", "peer", peer, "err", err)
		return nil, 0, ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, errorMessage(resp.Body)
	}
	var ans struct {
		Key string `json:"key"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &ans) != nil {
		return nil, resp.StatusCode, "unreadable answer"
	}
	k, err := base64.StdEncoding.DecodeString(ans.Key)
	if err != nil || len(k) < 16 {
		return nil, resp.StatusCode, "unreadable key"
	}
	return k, resp.StatusCode, ""
}

// Signing reports whether the agent has its load key and signs its load.
func (a *Agent) Signing() bool { return a.signing.Load() }
