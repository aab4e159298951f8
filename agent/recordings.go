package agent

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/conclave-lb/conclave/shipping"
)

// The agent ships what BBB publishes (<RecordingsDir>/<format>/<recordID>/,
// once metadata.xml is there and nothing changed for RecordingsSettle) to
// the cluster's central storage through the trusted peers' admin API, one
// recording format at a time, paced to TransferRate. What it shipped is
// remembered in memory only: after a restart the offers say what is
// central already, and nothing is sent twice.

// Recording shipping defaults.
const (
	DefaultRecordingsScan   = 10 * time.Second
	DefaultRecordingsSettle = 5 * time.Second
	// recordingsBackoff: the cluster has no central store (yet).
	recordingsBackoff = time.Minute
)

// Shipped counts the recording bytes and formats shipped since Start.
func (a *Agent) Shipped() shipping.Snapshot { return a.shipped.Snapshot() }

// shipState is the recordings loop's memory.
type shipState struct {
	sh      *shipping.Shipper
	done    map[string]bool   // format/recordID/newest mtime → central
	noted   map[string]string // unit → the last problem logged for it
	scanErr string            // the last scan error logged
	waiting bool              // "no peer yet" logged
}

func (a *Agent) recordingsLoop(ctx context.Context) {
	defer a.wg.Done()
	client := a.cfg.HTTPClient
	if client == nil {
		client = &http.Client{} // each transfer request has its own deadline
	}
	st := &shipState{
		sh: &shipping.Shipper{
			Peers: func() []string {
				var out []string
				for _, p := range a.trustedPeers() {
					out = append(out, peerURL(p, ""))
				}
				return out
			},
			Token: a.cfg.APIToken, Backend: a.cfg.APIURL, Client: client,
			Rate: a.cfg.TransferRate, ChunkSize: a.cfg.TransferChunk, Progress: &a.shipped, Log: a.log,
		},
		done: map[string]bool{}, noted: map[string]string{},
	}
	a.log.Info("shipping recordings to central storage", "recordings_dir", a.cfg.RecordingsDir,
		"transfer_rate", a.cfg.TransferRate, "scan", a.cfg.RecordingsScan.String(), "settle", a.cfg.RecordingsSettle.String())
	for {
		wait := a.shipRound(ctx, st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// shipRound scans once and ships what is settled and not shipped yet; it
// returns the wait before the next round.
func (a *Agent) shipRound(ctx context.Context, st *shipState) time.Duration {
	scan := a.cfg.RecordingsScan
	units, err := shipping.Scan(a.cfg.RecordingsDir)
	if err != nil {
		if msg := err.Error(); msg != st.scanErr {
			a.log.Warn("recordings: cannot scan the published directory", "recordings_dir", a.cfg.RecordingsDir, "err", err)
			st.scanErr = msg
		}
		return scan
	}
	st.scanErr = ""
	seen := make(map[string]bool, len(units))
	defer func() { // forget recordings that are gone
		maps.DeleteFunc(st.done, func(k string, _ bool) bool { return !seen[k] })
		maps.DeleteFunc(st.noted, func(k string, _ string) bool { return !seen[k] })
	}()
	for _, u := range units {
		key := fmt.Sprintf("%s/%d", u, u.Newest.UnixNano())
		seen[key], seen[u.String()] = true, true
		if st.done[key] || time.Since(u.Newest) < a.cfg.RecordingsSettle {
			continue
		}
		if len(a.trustedPeers()) == 0 {
			if !st.waiting {
				a.log.Info("recordings: waiting for a Conclave peer to appear in the gossip cluster")
				st.waiting = true
			}
			return min(scan, time.Second)
		}
		st.waiting = false
		before, start := a.shipped.Snapshot(), time.Now()
		status, err := st.sh.Ship(ctx, u)
		if ctx.Err() != nil {
			return scan
		}
		if err == nil {
			st.done[key] = true
			delete(st.noted, u.String())
			d := a.shipped.Snapshot().Sub(before)
			a.log.Info("recording shipped to central storage", "format", u.Format, "record_id", u.RecordID,
				"bytes", d.Offered, "sent", d.Sent, "resumed", d.Resumed, "duration", time.Since(start).Round(time.Millisecond).String(),
				"transfer", status.ID)
			continue
		}
		code, httpStatus := shipping.ErrorCode(err), shipping.ErrorStatus(err)
		note := func(level func(string, ...any), msg string, args ...any) {
			if st.noted[u.String()] == err.Error() {
				return // said already
			}
			st.noted[u.String()] = err.Error()
			level(msg, append([]any{"format", u.Format, "record_id", u.RecordID, "err", err}, args...)...)
		}
		switch {
		case shipping.NoCentralStore(err):
			note(a.log.Info, "recordings: the cluster has no central recording store; retrying later", "retry_in", recordingsBackoff.String())
			return recordingsBackoff
		case httpStatus == http.StatusUnauthorized || httpStatus == http.StatusForbidden:
			note(a.log.Error, "recordings: the admin API refused the token; retrying slowly",
				"hint", "CONCLAVE_API_TOKEN needs scope conclave:agent and subject "+a.hostPort+" (this BBB server's host:port)",
				"retry_in", a.cfg.RegisterBackoff.String())
			return a.cfg.RegisterBackoff
		case code == "not_found" || code == "conflict":
			note(a.log.Info, "recordings: the cluster does not know this recording yet; retrying next scan")
		case shipping.Unreachable(err):
			note(a.log.Warn, "recordings: no peer answered; retrying next scan")
			return scan
		default:
			note(a.log.Warn, "recordings: shipping failed; retrying next scan")
		}
	}
	return scan
}
