// Package control holds a peer's control loops and the decisions they
// share with the request path: the leader's backend prober, the schedule
// of the recordings sync, and placement (which backend takes a new
// meeting). It depends only on the small interfaces it defines here —
// Cluster for the replicated core, Caller for signed calls to BBB nodes —
// as rqlite's http package depends only on its Store and Cluster.
//
// The leader-only loops (RunHealth, RunRecordingSync) run in each
// leadership term the peer wins (Cluster.LeaderLoops) and write only as
// that term's leader (Cluster.ApplyAsLeader): a leader deposed in the
// middle of a round commits nothing of it.
package control

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
)

// Cluster is what the control loops need of the replicated core.
// *raftnode.Node implements it.
type Cluster interface {
	// FSM is the local replica.
	FSM() *fsm.FSM
	// LeaderLoops runs fn in each leadership term this peer wins, with a
	// ctx cancelled when the term's leadership is lost (or ctx ends).
	LeaderLoops(ctx context.Context, fn func(ctx context.Context, term uint64))
	// ApplyAsLeader commits c as the leader of term: never forwarded,
	// refused once that term's leadership is lost.
	ApplyAsLeader(ctx context.Context, term uint64, c fsm.Command) (*fsm.Result, error)
}

// Caller makes one signed BBB API call on a backend and returns the body
// of a 200 answer. A timeout of 0 is the call's own bound.
type Caller interface {
	CallBackend(b *fsm.Backend, call string, args *fasthttp.Args, timeout time.Duration) ([]byte, error)
}

// ApplyFunc commits a command. The leader loops get one bound to their
// leadership term; request handlers pass the Cluster's own Apply or Commit.
type ApplyFunc func(ctx context.Context, c fsm.Command) (*fsm.Result, error)

// Config configures the control loops.
type Config struct {
	Logger *slog.Logger
	// Loads, when set, gives agents' gossiped load (fresher than probes).
	Loads LoadSource
	// LoadWeights weigh what a node runs in placement; zero: DefaultLoadWeights.
	LoadWeights LoadWeights
	// TooLarge, when set, counts a backend listing refused for its size.
	TooLarge func(backendID string)
	// SyncRecordings brings the recordings index in line with one
	// backend's getRecordings, committing through apply (the gateway reads
	// the answer: client meeting IDs, relay URLs hidden).
	SyncRecordings func(ctx context.Context, apply ApplyFunc, b *fsm.Backend) error
}

// Control runs the control loops of one peer and places new meetings.
type Control struct {
	cfg        Config
	cluster    Cluster
	caller     Caller
	log        *slog.Logger
	pending    pendingPlacements // placements chosen, not yet committed
	loadsCache agentLoadsCache
	// afterProbes, when set (tests only), runs when a probe round has its
	// answers, before it commits anything.
	afterProbes func()
}

// New makes the control loops over a cluster and a BBB caller.
func New(cfg Config, cluster Cluster, caller Caller) *Control {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Control{cfg: cfg, cluster: cluster, caller: caller, log: cfg.Logger}
}

// commitTimeout bounds one commit of the loops.
const commitTimeout = 5 * time.Second

// termApply commits as the leader of term, and only as that: once the
// term's leadership is lost every write is refused, never forwarded.
func (c *Control) termApply(term uint64) ApplyFunc {
	return func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
		return c.cluster.ApplyAsLeader(ctx, term, cmd)
	}
}

// RunRecordingSync keeps the recordings index in line with every live
// backend while this peer leads: the safety net for lost callbacks. Like
// the prober it runs in each leadership term this peer wins, stops when
// the term's leadership is lost and writes only as that term's leader. It
// returns when ctx ends.
func (c *Control) RunRecordingSync(ctx context.Context, every time.Duration) {
	c.cluster.LeaderLoops(ctx, func(ctx context.Context, term uint64) {
		c.recordingSyncTerm(ctx, every, term)
	})
	<-ctx.Done()
}

// recordingSyncTerm is the recordings sync for one leadership term.
func (c *Control) recordingSyncTerm(ctx context.Context, every time.Duration, term uint64) {
	if c.cfg.SyncRecordings == nil {
		return
	}
	apply := c.termApply(term)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, b := range c.cluster.FSM().Backends() {
			if ctx.Err() != nil {
				return
			}
			if b.NodeState != fsm.NodeReady {
				continue // a dead node's recordings stay listed with their last known URLs
			}
			if err := c.cfg.SyncRecordings(ctx, apply, &b); err != nil {
				c.log.Warn("recordings sync failed", "backend", b.ID, "err", err)
			}
		}
	}
}

// DrawClusterKey returns the cluster key, committing a new random one
// through apply when the state has none yet (the first committed wins on
// every peer).
func DrawClusterKey(ctx context.Context, st *fsm.FSM, apply ApplyFunc, log *slog.Logger) []byte {
	if k := st.ClusterKey(); k != nil {
		return k
	}
	k := make([]byte, fsm.ClusterKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil
	}
	if _, err := apply(ctx, &fsm.SetClusterKey{Key: k}); err != nil {
		log.Warn("could not commit the cluster key", "err", err)
		return nil
	}
	return st.ClusterKey()
}

// MarkLost records meetings a live node does not know any more.
func MarkLost(ctx context.Context, apply ApplyFunc, log *slog.Logger, refs []fsm.MeetingRef) {
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	if _, err := apply(ctx, &fsm.MarkMeetingsLost{Meetings: refs, Now: time.Now().UnixNano()}); err != nil {
		log.Warn("could not mark meetings lost", "err", err)
	}
}

// BackendDead reports whether a meeting bound to b cannot run there: the
// backend is gone, or the cluster declared its node dead. A node held in
// error only because its meeting list is too large to read still runs its
// meetings.
func BackendDead(b *fsm.Backend) bool {
	return b == nil || (b.NodeState == fsm.NodeError && b.LastError != TooLargeMessage)
}

// endStaleCopies ends, on backend b, the meetings it lists that the state
// binds to another backend: copies left behind when a meeting moved while
// b was declared dead (b was only cut off, or came back with its
// meetings). Users still in such a copy rejoin, and land in the one the
// cluster runs. Its end callback is refused by the relay (bound
// elsewhere), so the moved meeting stays bound.
func (c *Control) endStaleCopies(b *fsm.Backend, listed map[string]bool) {
	st := c.cluster.FSM()
	for id := range listed {
		m, ok := st.Meeting(id)
		if !ok || m.BackendID == b.ID {
			continue
		}
		if o, ok := st.Backend(m.BackendID); !ok || BackendDead(&o) || m.Down() {
			continue // the moved meeting does not run yet: the copy is all there is
		}
		args := fasthttp.AcquireArgs()
		args.Set("meetingID", id)
		if m.Create != nil && m.Create.ModeratorPW != "" {
			args.Set("password", m.Create.ModeratorPW)
		}
		bb := *b
		go func() {
			defer fasthttp.ReleaseArgs(args)
			if _, err := c.caller.CallBackend(&bb, "end", args, 0); err != nil {
				c.log.Warn("could not end a stale copy of a moved meeting", "backend", bb.ID, "meeting", id, "err", err)
				return
			}
			c.log.Info("ended a stale copy of a meeting that runs elsewhere", "backend", bb.ID, "meeting", id, "bound_to", m.BackendID)
		}()
	}
}
