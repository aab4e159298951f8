package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
)

// HealthConfig tunes the leader's backend prober.
type HealthConfig struct {
	Interval time.Duration // between probe rounds
	Timeout  time.Duration // per probe
	// FailAfter consecutive failed probes make a backend NodeState error;
	// RecoverAfter consecutive good ones make it ready again.
	FailAfter, RecoverAfter int
	// LoadEvery bounds how often load-only changes are committed, and how
	// often each backend's meetings are listed (getMeetings, whose answer
	// grows with the node's meetings); rounds in between only check that
	// the node answers a signed call.
	LoadEvery time.Duration
	// EndedGrace: a bound meeting missing from its backend's list for this
	// long is forgotten (a create in flight is not yet listed).
	EndedGrace time.Duration
}

// DefaultHealth makes a dead backend `error` within about 2 s: a round
// every 500 ms, and two failed probes in a row, each given 750 ms (a node
// whose port is closed fails at once: about 1 s; one that vanished from
// the network times out: up to Interval + 2×Timeout = 2 s); one failed
// probe when its agent is gone from the gossip too. A live node is not
// called dead for one slow answer, nor for a slow listing alone: listing
// rounds (every LoadEvery) are one in four, and the cheap rounds between
// them reset the count. Load reaches the state at most every 2 s, and each
// backend's meetings are listed as often.
var DefaultHealth = HealthConfig{
	Interval: 500 * time.Millisecond, Timeout: 750 * time.Millisecond, FailAfter: 2, RecoverAfter: 2,
	LoadEvery: 2 * time.Second, EndedGrace: 30 * time.Second,
}

const (
	// lostGrace: a meeting its live node does not list is lost only once
	// it was created this long before the listing started (a create in
	// flight is not listed yet) or was listed since its creation.
	lostGrace = 5 * time.Second
	// lostKeep: a lost meeting no one joined is forgotten after this.
	lostKeep = time.Hour
)

// maxConcurrentProbes bounds the answers held at once: with 1 000 backends
// probed all together, their getMeetings answers (tens of kB each) took
// over 100 MB of the leader's memory every second. A probe round still
// ends within a timeout for up to this many dead backends at once.
const maxConcurrentProbes = 64

type probeResult struct {
	started             time.Time // when the call was sent
	ok                  bool
	listed              bool // meetings, attendees and meetingIDs are known
	latency             time.Duration
	meetings, attendees int
	videos, voice       int // video streams, voice participants
	meetingIDs          map[string]bool
	err                 string
	tooLarge            bool // the getMeetings answer exceeded MaxBackendResponse
}

// backendHealth is the prober's memory of one backend.
type backendHealth struct {
	fails, goods int
	missingSince map[string]time.Time
	// seen: when a listing that started then last listed each meeting.
	seen map[string]time.Time
	// tooLarge: the last listing was refused for its size. The node is
	// held in NodeState error (it cannot be watched, so it takes no new
	// meetings) until a listing succeeds; its meetings stay bound.
	tooLarge string
}

// TooLargeMessage is the NodeState error reason for a node whose
// getMeetings answer is over the limit.
var TooLargeMessage = fmt.Sprintf("getMeetings answer larger than %d MiB: Conclave cannot list this node's meetings; "+
	"its meetings stay bound but it takes no new ones until its answer shrinks", MaxBackendResponse>>20)

// MaxBackendResponse is the largest backend answer read (the gateway's
// BBB client refuses larger ones: fasthttp.ErrBodyTooLarge).
const MaxBackendResponse = 16 << 20

// IsTooLarge reports whether err is a backend answer refused for its size.
func IsTooLarge(err error) bool { return errors.Is(err, fasthttp.ErrBodyTooLarge) }

// RunHealth probes every backend while this peer leads, and commits
// NodeState changes (at once), load (at most every LoadEvery) and ended
// meetings through Raft. The prober runs in each leadership term this peer
// wins (Cluster.LeaderLoops), starting from what the state says, and stops
// the moment that term's leadership is lost; it writes only as the leader
// of its term, so a round a deposed leader finishes commits nothing. It
// returns when ctx ends.
func (c *Control) RunHealth(ctx context.Context, cfg HealthConfig) {
	c.cluster.LeaderLoops(ctx, func(ctx context.Context, term uint64) {
		c.proberTerm(ctx, cfg, term)
	})
	<-ctx.Done()
}

// proberTerm is the prober for one leadership term; ctx ends with it.
func (c *Control) proberTerm(ctx context.Context, cfg HealthConfig, term uint64) {
	apply := c.termApply(term)
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	mem := map[string]*backendHealth{}
	var lastLoad, lastList time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.cluster.FSM().ClusterKey() == nil {
			DrawClusterKey(ctx, c.cluster.FSM(), apply, c.log) // the leader draws the cluster key once
		}
		list := time.Since(lastList) >= cfg.LoadEvery
		if list {
			lastList = time.Now()
		}
		lastLoad = c.probeRound(ctx, cfg, apply, mem, lastLoad, list)
	}
}

func (c *Control) probeRound(ctx context.Context, cfg HealthConfig, apply ApplyFunc, mem map[string]*backendHealth, lastLoad time.Time, list bool) time.Time {
	backends := c.cluster.FSM().Backends()
	results := make([]probeResult, len(backends))
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxConcurrentProbes)
	for i := range backends {
		wg.Add(1)
		slots <- struct{}{}
		go func(i int) {
			defer func() { <-slots; wg.Done() }()
			results[i] = c.probe(&backends[i], cfg.Timeout, list)
		}(i)
	}
	wg.Wait()
	if c.afterProbes != nil {
		c.afterProbes()
	}
	if ctx.Err() != nil {
		// The term ended while the probes were out: what they found is
		// the next leader's to find again.
		c.log.Info("leadership lost during a probe round: its reports are dropped")
		return lastLoad
	}

	now := time.Now()
	loads := c.agentLoads()
	var reports []fsm.BackendReport
	var streams []fsm.StreamReport // video and voice, as placement weighs them
	streamsChanged := false
	var ended, lost []fsm.MeetingRef
	stateChanged, loadChanged := false, false
	seen := map[string]bool{}
	for i := range backends {
		b, r := &backends[i], results[i]
		seen[b.ID] = true
		h := mem[b.ID]
		if h == nil {
			h = &backendHealth{missingSince: map[string]time.Time{}}
			mem[b.ID] = h
		}
		state := b.NodeState
		switch {
		case r.tooLarge:
			if h.tooLarge == "" {
				c.log.Error("backend's getMeetings answer is over the size limit: holding it in NodeState error; its meetings stay bound",
					"backend", b.ID, "limit_bytes", MaxBackendResponse)
			}
			h.tooLarge = r.err
		case r.listed:
			if h.tooLarge != "" {
				c.log.Info("backend's getMeetings answer fits again", "backend", b.ID)
			}
			h.tooLarge = ""
		}
		if r.ok {
			h.fails, h.goods = 0, h.goods+1
			if state != fsm.NodeReady && (state == fsm.NodeInit || h.goods >= cfg.RecoverAfter) {
				state = fsm.NodeReady
			}
			if r.listed {
				e, l := h.endedMeetings(c.cluster.FSM(), b.ID, r.meetingIDs, r.started, now, cfg.EndedGrace)
				ended, lost = append(ended, e...), append(lost, l...)
				c.endStaleCopies(b, r.meetingIDs)
			}
		} else {
			h.goods, h.fails = 0, h.fails+1
			// Gossip and probe agree the node is gone: no need to wait.
			if h.fails >= cfg.FailAfter || c.agentDead(b) {
				state = fsm.NodeError
			}
		}
		if h.tooLarge != "" {
			state = fsm.NodeError
			if r.err == "" {
				r.err = h.tooLarge
			}
		}
		rep := fsm.BackendReport{ID: b.ID, NodeState: state, Meetings: int64(b.Meetings), Attendees: int64(b.Attendees),
			LatencyNs: b.LatencyNs, Error: r.err}
		if r.ok {
			rep.LatencyNs = int64(r.latency)
		}
		if r.listed {
			rep.Meetings, rep.Attendees = int64(r.meetings), int64(r.attendees)
		}
		str := fsm.StreamReport{ID: b.ID, Videos: int64(b.Videos), Voice: int64(b.Voice)}
		if r.listed {
			str.Videos, str.Voice = int64(r.videos), int64(r.voice)
		}
		if l, ok := loads[b.URL]; ok { // the agent's figures are fresher
			rep.Meetings, rep.Attendees = int64(l.Meetings), int64(l.Attendees)
			str.Videos, str.Voice = int64(l.Videos), int64(l.Voice)
		}
		if str.Videos != int64(b.Videos) || str.Voice != int64(b.Voice) {
			streamsChanged, loadChanged = true, true
		}
		streams = append(streams, str)
		if state != b.NodeState {
			stateChanged = true
			c.log.Info("backend state changed", "backend", b.ID, "from", b.NodeState, "to", state, "err", r.err)
		}
		if rep.Meetings != int64(b.Meetings) || rep.Attendees != int64(b.Attendees) || rep.Error != b.LastError {
			loadChanged = true
		}
		reports = append(reports, rep)
	}
	for id := range mem {
		if !seen[id] {
			delete(mem, id)
		}
	}
	if stateChanged || (loadChanged && now.Sub(lastLoad) >= cfg.LoadEvery) || now.Sub(lastLoad) >= 6*cfg.LoadEvery {
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		if _, err := apply(cctx, &fsm.ReportBackends{Reports: reports, Now: now.UnixNano()}); err != nil {
			c.log.Warn("could not commit backend reports", "err", err)
		} else {
			lastLoad = now
			if streamsChanged {
				if _, err := apply(cctx, &fsm.ReportStreams{Reports: streams}); err != nil {
					c.log.Warn("could not commit video and voice counts", "err", err)
				}
			}
		}
		cancel()
	}
	if len(lost) > 0 {
		c.log.Info("meetings lost by their node (not listed any more): a join creates them again", "count", len(lost))
		MarkLost(ctx, apply, c.log, lost)
	}
	if len(ended) > 0 {
		cctx, cancel := context.WithTimeout(ctx, commitTimeout)
		if _, err := apply(cctx, &fsm.ReleaseMeetings{Meetings: ended}); err != nil {
			c.log.Warn("could not release ended meetings", "err", err)
		}
		cancel()
	}
	return lastLoad
}

// endedMeetings sorts the meetings bound to backend id that a listing
// (started at listed) did not list. A meeting whose create parameters are
// kept is lost (a join creates it again) once it was listed since its
// latest creation, or was created lostGrace before the listing started (a
// create in flight is not listed yet): the grace counts from the last time
// it was seen or from its creation. Lost meetings no one joined are
// forgotten after lostKeep. Meetings without kept parameters are forgotten
// after grace, as before.
func (h *backendHealth) endedMeetings(st *fsm.FSM, id string, listed map[string]bool, started, now time.Time, grace time.Duration) (ended, lost []fsm.MeetingRef) {
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	lg := min(lostGrace, grace)
	bound := map[string]bool{}
	for _, m := range st.MeetingsOn(id) {
		bound[m.InternalID] = true
		ref := time.Unix(0, max(m.CreatedAt, m.RecreatedAt))
		if listed[m.InternalID] {
			h.seen[m.InternalID] = started
			delete(h.missingSince, m.InternalID)
			continue
		}
		if m.Create != nil {
			switch {
			case m.Lost:
				if now.Sub(time.Unix(0, m.LostAt)) >= lostKeep {
					ended = append(ended, fsm.MeetingRef{InternalID: m.InternalID, BackendID: id})
				}
			case m.Recreating != 0 || !ref.Before(started):
			case h.seen[m.InternalID].After(ref) || started.Sub(ref) >= lg:
				lost = append(lost, fsm.MeetingRef{InternalID: m.InternalID, BackendID: id})
				delete(h.seen, m.InternalID)
			}
			continue
		}
		if now.Sub(ref) < grace {
			delete(h.missingSince, m.InternalID)
			continue
		}
		since, ok := h.missingSince[m.InternalID]
		if !ok {
			h.missingSince[m.InternalID] = now
			continue
		}
		if now.Sub(since) >= grace {
			ended = append(ended, fsm.MeetingRef{InternalID: m.InternalID, BackendID: id})
			delete(h.missingSince, m.InternalID)
		}
	}
	for k := range h.missingSince {
		if !bound[k] {
			delete(h.missingSince, k)
		}
	}
	for k := range h.seen {
		if !bound[k] {
			delete(h.seen, k)
		}
	}
	return ended, lost
}

// pingMeetingID names no meeting: isMeetingRunning on it is a signed call
// with a small answer whatever the node runs.
const pingMeetingID = "conclave-health-check"

// probe makes a signed call to a backend, which proves the node up and its
// secret right. With list the call is getMeetings, whose answer carries the
// node's load and meetings; without, a small isMeetingRunning on
// pingMeetingID.
func (c *Control) probe(b *fsm.Backend, timeout time.Duration, list bool) probeResult {
	call := "getMeetings"
	var args *fasthttp.Args
	if !list {
		call = "isMeetingRunning"
		args = fasthttp.AcquireArgs()
		defer fasthttp.ReleaseArgs(args)
		args.Set("meetingID", pingMeetingID)
	}
	start := time.Now()
	answer, err := c.caller.CallBackend(b, call, args, timeout)
	r := probeResult{started: start, latency: time.Since(start)}
	if err != nil {
		r.err = err.Error()
		if IsTooLarge(err) {
			if c.cfg.TooLarge != nil {
				c.cfg.TooLarge(b.ID)
			}
			r.tooLarge, r.err = true, TooLargeMessage
		}
		return r
	}
	els, err := xmlscan.Scan(answer, "returncode", "messageKey", "meeting", "meetingID", "participantCount",
		"videoCount", "voiceParticipantCount")
	if err != nil {
		r.err = "unreadable " + call + " answer: " + err.Error()
		return r
	}
	if list {
		r.meetingIDs = map[string]bool{}
	}
	success := false
	for _, e := range els {
		switch {
		case e.Name == "returncode" && e.Depth == 2:
			if e.Text != "SUCCESS" {
				r.err = call + " answered " + e.Text
				return r
			}
			success = true
		case !list:
		case e.Name == "meeting" && e.Depth == 3:
			r.meetings++
		case e.Name == "meetingID" && e.Depth == 4:
			r.meetingIDs[e.Text] = true
		case e.Name == "participantCount" && e.Depth == 4:
			n, _ := strconv.Atoi(e.Text)
			r.attendees += n
		case e.Name == "videoCount" && e.Depth == 4:
			n, _ := strconv.Atoi(e.Text)
			r.videos += n
		case e.Name == "voiceParticipantCount" && e.Depth == 4:
			n, _ := strconv.Atoi(e.Text)
			r.voice += n
		}
	}
	if !success {
		r.err = call + " answer has no returncode"
		return r
	}
	r.ok, r.listed = true, list
	return r
}
