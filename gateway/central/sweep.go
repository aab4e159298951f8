package central

import (
	"context"
	"strings"
	"time"
)

// StagingTTL is how long an abandoned transfer's chunks stay in the
// store: an agent resumes within it (it retries every scan), after it the
// chunks are garbage.
const StagingTTL = 48 * time.Hour

// maxStagedListing bounds one sweep's listing of the staging area.
const maxStagedListing = 200000

// SweepStaging deletes the staged chunks of transfers nothing touched for
// olderThan. Every peer may run it: deleting what another peer deleted is
// no error.
func (c *Central) SweepStaging(ctx context.Context, olderThan time.Duration) (int, error) {
	if !c.Enabled() {
		return 0, nil
	}
	list, err := c.store.List(ctx, "staging/", maxStagedListing)
	if err != nil {
		return 0, err
	}
	newest := map[string]time.Time{}
	for _, o := range list {
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Key, "staging/"), "/")
		if !ok {
			continue
		}
		if o.ModTime.After(newest[id]) {
			newest[id] = o.ModTime
		}
	}
	if len(list) >= maxStagedListing {
		// The listing stopped inside the last transfer: its newest chunk
		// may be beyond it. Leave that one to the next sweep.
		id, _, _ := strings.Cut(strings.TrimPrefix(list[len(list)-1].Key, "staging/"), "/")
		delete(newest, id)
	}
	cutoff := c.cfg.Now().Add(-olderThan)
	swept := 0
	for id, t := range newest {
		if t.Before(cutoff) {
			if err := c.store.DeletePrefix(ctx, "staging/"+id+"/"); err != nil {
				return swept, err
			}
			c.mu.Lock()
			delete(c.pending, id)
			delete(c.offers, id)
			c.mu.Unlock()
			swept++
		}
	}
	return swept, nil
}

// RunStagingSweep sweeps every hour until ctx ends.
func (c *Central) RunStagingSweep(ctx context.Context) {
	if !c.Enabled() {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := c.SweepStaging(ctx, StagingTTL); err != nil {
			c.log.Warn("sweeping abandoned recording transfers failed", "store", c.store.String(), "err", err)
		} else if n > 0 {
			c.log.Info("abandoned recording transfers swept", "transfers", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
