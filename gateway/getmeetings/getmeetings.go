// Package getmeetings answers the BBB API's getMeetings: the frontend's
// meetings gathered from every node that runs one, read-your-writes.
package getmeetings

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/callbacks"
	"github.com/conclave-lb/conclave/gateway/control"
	"github.com/conclave-lb/conclave/gateway/internal/listings"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
	"github.com/conclave-lb/conclave/gateway/nodeclient"
	"github.com/conclave-lb/conclave/raftnode"
)

// Request is one getMeetings call whose checksum has passed (bbbapi's
// pooled request).
type Request interface {
	Frontend() *fsm.Frontend
	// WriteXML answers body as BBB's XML; WriteOwnedXML too, without a
	// copy: body is the answer's from then on.
	WriteXML(body []byte)
	WriteOwnedXML(body []byte)
	// AnswerFromLeader hands the request to the leader and relays its
	// answer; false, having written nothing, when it could not.
	AnswerFromLeader() bool
}

// Cluster is what getMeetings needs of the replicated core.
type Cluster interface {
	// FSM is the local replica, for reads.
	FSM() *fsm.FSM
	// ConsistentRead waits until the local replica has applied what the
	// leader had (raftnode.ErrBehind when it could not catch up quickly).
	ConsistentRead(ctx context.Context) error
	IsLeader() bool
}

// Lister answers getMeetings.
type Lister struct {
	cluster Cluster
	node    *nodeclient.Client
	log     *slog.Logger
	// tooLarge counts, per backend, getMeetings answers over the size limit.
	tooLarge *prometheus.CounterVec
	// barrier shares a follower's read-index waits between concurrent calls.
	barrier readBarrier
	// listings keeps each node's answer up to a second: the nodes list
	// their meetings once a second per peer, whatever the client rate.
	listings *listings.Cache
	// listingAge observes how old each listing served was (nil: none).
	listingAge prometheus.Observer
}

// New builds a Lister over cluster, calling nodes through node.
// listingAge, when set, observes the age of every node listing served.
func New(cluster Cluster, node *nodeclient.Client, log *slog.Logger, tooLarge *prometheus.CounterVec, listingAge prometheus.Observer) *Lister {
	return &Lister{cluster: cluster, node: node, log: log, tooLarge: tooLarge,
		listings: listings.New(listings.DefaultMaxAge), listingAge: listingAge}
}

// NodeTimeout bounds each backend's answer in getMeetings' fan-out.
const NodeTimeout = nodeclient.ReadTimeout

const noMeetingsAnswer = "<response><returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey><message>no meetings were found on this server</message></response>"

// Serve gathers the frontend's meetings from every backend that runs
// one, concurrently, each with its own timeout: a dead backend costs its
// meetings in the answer, never the whole call (Scalelite fails it), and a
// backend the cluster has declared dead is not asked at all (its meetings
// are left out, as a BBB server that lost them). A backend whose answer is
// over the size limit is asked for the frontend's meetings one by one
// instead (counted and logged).
//
// Read-your-writes: the meetings are those of a replica that holds every
// create any peer answered before this call (readYourWrites), and a
// meeting the replica binds to a live node that the node's own list lacks
// (a create the node has not listed yet) is asked for by getMeetingInfo.
func (l *Lister) Serve(r Request) string {
	if l.readYourWrites(r) {
		return "leader"
	}
	mine := map[string]string{}    // internal ID -> client's ID
	boundTo := map[string]string{} // internal ID -> backend
	perBackend := map[string]bool{}
	onBackend := map[string][]string{} // backend -> the frontend's meetings there
	recent := map[string][]string{}    // backend -> those created (or re-created) within listGrace
	now := time.Now()
	l.cluster.FSM().EachMeetingOf(r.Frontend().Key, func(m *fsm.Meeting) {
		mine[m.InternalID] = m.MeetingID
		boundTo[m.InternalID] = m.BackendID
		perBackend[m.BackendID] = true
		onBackend[m.BackendID] = append(onBackend[m.BackendID], m.InternalID)
		if !m.Lost && now.Sub(time.Unix(0, max(m.CreatedAt, m.RecreatedAt, m.Recreating))) < listGrace {
			recent[m.BackendID] = append(recent[m.BackendID], m.InternalID)
		}
	})
	if len(mine) == 0 {
		r.WriteXML([]byte(noMeetingsAnswer))
		return "success"
	}
	ids := slices.Sorted(maps.Keys(perBackend))
	// Each backend's part: its <meeting> elements, slices of the kept
	// listing (not copied until the answer is assembled).
	parts := make([][][]byte, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		b, ok := l.cluster.FSM().Backend(id)
		if !ok {
			continue
		}
		if control.BackendDead(&b) {
			l.log.Debug("getMeetings: backend declared dead, not asked; its meetings are left out",
				"backend", b.ID, "meetings", len(onBackend[b.ID]))
			continue
		}
		wg.Add(1)
		go func(i int, b fsm.Backend) {
			defer wg.Done()
			lst, err := l.listing(&b)
			if err != nil {
				if control.IsTooLarge(err) {
					// Not a dead node: one that outgrew the limit. Say so
					// every time (metric) and in the log (once a minute),
					// and ask for this frontend's meetings one by one.
					l.tooLarge.WithLabelValues(b.ID).Inc()
					if warnEvery("getMeetings-too-large:"+b.ID, time.Minute) {
						l.log.Error("getMeetings: backend's answer is over the size limit; its meetings are asked one by one (getMeetingInfo)",
							"backend", b.ID, "limit_bytes", control.MaxBackendResponse, "meetings", len(onBackend[b.ID]))
					}
					parts[i] = [][]byte{callbacks.HideRelayURLs(l.meetingsByInfo(&b, onBackend[b.ID], mine))}
					return
				}
				l.log.Debug("getMeetings: backend skipped", "backend", b.ID, "err", err)
				return
			}
			var own [][]byte
			for _, id := range lst.Order {
				if boundTo[id] == b.ID { // a stale copy of a meeting moved elsewhere is not listed twice
					own = append(own, lst.Meetings[id])
				}
			}
			var missing []string
			for _, id := range recent[b.ID] {
				if _, ok := lst.Meetings[id]; !ok {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				own = append(own, callbacks.HideRelayURLs(l.meetingsByInfo(&b, missing, mine)))
			}
			parts[i] = own
		}(i, b)
	}
	wg.Wait()
	total := 0
	for _, p := range parts {
		for _, el := range p {
			total += len(el)
		}
	}
	if total == 0 {
		r.WriteXML([]byte(noMeetingsAnswer))
		return "success"
	}
	out := make([]byte, 0, total+96)
	out = append(out, "<response><returncode>SUCCESS</returncode><meetings>"...)
	for _, p := range parts {
		for _, el := range p {
			out = append(out, el...)
		}
	}
	out = append(out, "</meetings></response>"...)
	r.WriteOwnedXML(out)
	return "success"
}

// maxInfoFallback bounds the getMeetingInfo calls one getMeetings makes to
// a backend whose getMeetings answer is too large; infoConcurrency how many
// run at once.
const (
	maxInfoFallback = 500
	infoConcurrency = 8
)

// meetingsByInfo builds the <meeting> elements of the given meetings
// (internal IDs) on backend b from one getMeetingInfo each: getMeetingInfo
// answers a meeting's <meeting> element's children inside its <response>.
// Meetings the node does not know, or whose call fails, are left out.
func (l *Lister) meetingsByInfo(b *fsm.Backend, internals []string, mine map[string]string) []byte {
	slices.Sort(internals)
	if len(internals) > maxInfoFallback {
		l.log.Warn("getMeetings: too many meetings to ask one by one; the rest are left out",
			"backend", b.ID, "meetings", len(internals), "asked", maxInfoFallback)
		internals = internals[:maxInfoFallback]
	}
	parts := make([][]byte, len(internals))
	slots := make(chan struct{}, infoConcurrency)
	var wg sync.WaitGroup
	for i, internal := range internals {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			args := fasthttp.AcquireArgs()
			defer fasthttp.ReleaseArgs(args)
			args.Set("meetingID", internal)
			answer, err := l.node.Call(b, "getMeetingInfo", args, nil, "", NodeTimeout)
			if err != nil {
				return
			}
			parts[i] = meetingFromInfo(answer, internal, mine[internal])
		}()
	}
	wg.Wait()
	return bytes.Join(parts, nil)
}

// meetingFromInfo turns a getMeetingInfo answer for internal into the
// <meeting> element getMeetings would list, with the client's meeting ID.
func meetingFromInfo(doc []byte, internal, external string) []byte {
	els, err := xmlscan.Scan(doc, "response", "returncode", "meetingID")
	if err != nil {
		return nil
	}
	var resp, rc *xmlscan.Element
	ok := false
	for i := range els {
		e := &els[i]
		switch {
		case e.Name == "response" && e.Depth == 1:
			resp = e
		case e.Name == "returncode" && e.Depth == 2:
			rc = e
		case e.Name == "meetingID" && e.Depth == 2:
			ok = e.Text == internal
		}
	}
	if resp == nil || rc == nil || rc.Text != "SUCCESS" || !ok {
		return nil
	}
	var out []byte
	out = append(out, "<meeting>"...)
	out = append(out, doc[resp.ContentStart:rc.Start]...)
	out = append(out, doc[rc.End:resp.ContentEnd]...)
	out = append(out, "</meeting>"...)
	return nodeclient.RewriteMeetingIDs(out, internal, external)
}

// listing returns node b's meetings as its getMeetings listed them, at
// most a second ago.
func (l *Lister) listing(b *fsm.Backend) (listings.Listing, error) {
	lst, err := l.listings.Get(b.ID, func() (listings.Listing, error) {
		started := time.Now()
		doc, err := l.node.Call(b, "getMeetings", nil, nil, "", NodeTimeout)
		if err != nil {
			return listings.Listing{}, err
		}
		st := l.cluster.FSM()
		return cutListing(doc, started, func(internal string) (string, bool) {
			m, ok := st.Meeting(internal)
			return m.MeetingID, ok
		}), nil
	})
	if err == nil && l.listingAge != nil {
		l.listingAge.Observe(time.Since(lst.Started).Seconds())
	}
	return lst, err
}

// cutListing cuts a node's getMeetings answer into the <meeting> elements
// of the cluster's meetings (clientID knows their clients' IDs; others are
// left out), each passed on byte for byte but for its meetingID, shown as
// the client's own, and relayed callback URLs, shown as the client's. The
// work is done once per listing, not once per getMeetings.
func cutListing(doc []byte, started time.Time, clientID func(internal string) (string, bool)) listings.Listing {
	lst := listings.Listing{Started: started, Meetings: map[string][]byte{}}
	els, err := xmlscan.Scan(doc, "meeting", "meetingID")
	if err != nil {
		return lst
	}
	for i, m := range els {
		if m.Name != "meeting" || m.Depth != 3 {
			continue
		}
		// Its own meetingID is a direct child scanned before it closed.
		for _, c := range els[:i] {
			if c.Name != "meetingID" || c.Depth != m.Depth+1 || c.Start < m.Start || c.End > m.End {
				continue
			}
			ext, ok := clientID(c.Text)
			if !ok {
				break
			}
			if _, dup := lst.Meetings[c.Text]; dup {
				break
			}
			el := bytes.Clone(callbacks.HideRelayURLs(nodeclient.RewriteMeetingIDs(doc[m.Start:m.End], c.Text, ext)))
			lst.Order = append(lst.Order, c.Text)
			lst.Meetings[c.Text] = el
			lst.Size += len(el) + len(c.Text)
			break
		}
	}
	return lst
}

// listGrace: a meeting claimed this recently that its node's getMeetings
// does not list is asked for by getMeetingInfo (a node may list a new
// meeting late; BBB lists it at once). Older unlisted ones have ended, and
// the prober forgets them (HealthConfig.EndedGrace).
const listGrace = 30 * time.Second

// listReadTimeout bounds the wait for a consistent replica before a
// getMeetings; past it the local replica answers as it stands.
const listReadTimeout = 2 * time.Second

// readYourWrites makes the local replica hold every meeting whose create
// any peer answered before this call. The leader's replica always does: a
// peer answers a create only once the leader has applied its claim
// (Commit), so the leader makes no round trip at all. A follower cannot
// know what other peers committed without asking: it waits for one
// read-index (ConsistentRead: the leader's applied index, then the local
// replica reaching it), shared by every getMeetings that arrived before it
// started (barrier), so a burst of them costs one or two leader round
// trips, not one each. A replica that cannot catch up hands the request to
// the leader (true: answered); with no leader reachable, the local replica
// answers as it stands — a list that may lack the newest meetings rather
// than no list.
func (l *Lister) readYourWrites(r Request) bool {
	if l.cluster.IsLeader() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*listReadTimeout)
	err := l.barrier.wait(ctx, l.cluster.ConsistentRead)
	cancel()
	switch {
	case err == nil:
		return false
	case errors.Is(err, raftnode.ErrBehind) && r.AnswerFromLeader():
		return true
	}
	l.log.Debug("getMeetings: replica not confirmed; answering from it as it stands", "err", err)
	return false
}

// readBarrier runs read-index waits for concurrent callers: a caller waits
// for a round that starts after it arrived (so it sees every write
// acknowledged before it), one round runs at a time, and every caller that
// arrives while one runs shares the next. The zero value is ready.
type readBarrier struct {
	mu      sync.Mutex
	running bool
	queued  *readRound // not started yet; callers join it
}

type readRound struct {
	done chan struct{}
	err  error
}

// wait returns once a round of read started after the call has ended, with
// its error, or ctx's.
func (b *readBarrier) wait(ctx context.Context, read func(context.Context) error) error {
	b.mu.Lock()
	if b.queued == nil {
		b.queued = &readRound{done: make(chan struct{})}
	}
	rd := b.queued
	if !b.running {
		b.running = true
		go b.run(read)
	}
	b.mu.Unlock()
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *readBarrier) run(read func(context.Context) error) {
	for {
		b.mu.Lock()
		rd := b.queued
		b.queued = nil
		if rd == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), listReadTimeout)
		rd.err = read(ctx)
		cancel()
		close(rd.done)
	}
}

// warnLimiter remembers when each rate-limited warning was last logged.
var warnLimiter sync.Map // key -> time.Time

// warnEvery reports whether a warning under key may be logged now: at
// most once per every.
func warnEvery(key string, every time.Duration) bool {
	now := time.Now()
	if last, ok := warnLimiter.Load(key); ok && now.Sub(last.(time.Time)) < every {
		return false
	}
	warnLimiter.Store(key, now)
	return true
}
