package raftnode

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode/peercall"
)

// Join adds a voter. It is idempotent: the same ID and address change
// nothing; the same ID or the same address alone replace the stale entry.
// On a follower the request is forwarded to the leader.
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	if req.ID == "" || req.RaftAddr == "" {
		return fmt.Errorf("join needs an ID and a Raft address")
	}
	body, _ := json.Marshal(req)
	_, err := retry(ctx, n, func() (struct{}, error) {
		if n.raft.State() != raft.Leader {
			return struct{}{}, n.forward(ctx, "join", body, nil)
		}
		return struct{}{}, n.joinLocal(ctx, req)
	})
	return err
}

func (n *Node) joinLocal(ctx context.Context, req JoinRequest) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range cf.Configuration().Servers {
		sameID, sameAddr := string(s.ID) == req.ID, string(s.Address) == req.RaftAddr
		switch {
		case sameID && sameAddr:
			present = true
		case sameID || sameAddr:
			n.log.Info("replacing stale member", "id", s.ID, "addr", s.Address)
			if err := n.raft.RemoveServer(s.ID, 0, time.Until(deadline(ctx))).Error(); err != nil {
				return mapLeaderErr(err)
			}
		}
	}
	if !present {
		n.log.Info("adding voter", "id", req.ID, "raft_addr", req.RaftAddr)
		if err := n.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, time.Until(deadline(ctx))).Error(); err != nil {
			return mapLeaderErr(err)
		}
	}
	if req.HTTPAddr != "" {
		res, _, err := n.applyLocal(ctx, fsm.Encode(&fsm.SetPeer{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, GossipAddr: req.GossipAddr}))
		if err != nil {
			return err
		}
		return ResultError(res)
	}
	return nil
}

func mapLeaderErr(err error) error {
	if err == raft.ErrNotLeader || err == raft.ErrLeadershipLost {
		return errNotLeader
	}
	return err
}

// Remove takes a peer out of the cluster. Removing the leader first moves
// leadership to another voter, then the new leader removes it. Removing an
// ID that is not a member is an error (ErrNotFound).
func (n *Node) Remove(ctx context.Context, id string) error {
	body, _ := json.Marshal(peercall.RemoveRequest{ID: id})
	_, err := retry(ctx, n, func() (struct{}, error) {
		if n.raft.State() != raft.Leader {
			return struct{}{}, n.forward(ctx, "remove", body, nil)
		}
		return struct{}{}, n.removeLocal(ctx, id)
	})
	return err
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return fmt.Errorf("%w: %s is not a member", ErrNotFound, id)
	}
	if id == n.cfg.ID {
		if n.voterCount() < 2 {
			return fmt.Errorf("refusing to remove the only voter")
		}
		n.log.Info("removing self: transferring leadership first")
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("leadership transfer: %w", err)
		}
		return errNotLeader // retry() forwards to the new leader
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, time.Until(deadline(ctx))).Error(); err != nil {
		return mapLeaderErr(err)
	}
	res, _, err := n.applyLocal(ctx, fsm.Encode(&fsm.RemovePeer{ID: id}))
	if err != nil {
		return err
	}
	return ResultError(res)
}

// joinLoop asks the configured peers to add this node until one succeeds.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	req := JoinRequest{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertise, HTTPAddr: n.cfg.HTTPAdvertise, GossipAddr: n.cfg.GossipAdvertise}
	body, _ := json.Marshal(req)
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, addr := range n.cfg.Join {
			if addr == n.cfg.HTTPAdvertise {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := n.client.Call(ctx, addr, "join", body, nil)
			cancel()
			if err == nil {
				n.log.Info("joined the cluster", "via", addr)
				return
			}
			if attempt == 1 || attempt%10 == 0 {
				n.log.Warn("join attempt failed; retrying", "via", addr, "attempt", attempt, "err", err)
			}
		}
		select {
		case <-n.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Status is one peer's own view of itself, in the admin API's JSON shape
// (GET /api/v1/status serves it as it is).
type Status = adminapi.Status

func (n *Node) raftState() string { return n.raft.State().String() }

// Status reports this node's state.
func (n *Node) Status() Status {
	st := n.raft.Stats()
	_, lid := n.raft.LeaderWithID()
	s := Status{
		ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertise, HTTPAddr: n.cfg.HTTPAdvertise,
		State: n.raftState(), LeaderID: string(lid),
		Term: parseU(st["term"]), AppliedIndex: n.fsm.AppliedIndex(),
		CommitIndex: parseU(st["commit_index"]), LastIndex: parseU(st["last_log_index"]),
		LastContact: st["last_contact"],
	}
	if s.State == "Leader" {
		s.LastContact = "0"
	}
	s.Ready, s.NotReady = n.Ready()
	return s
}

func parseU(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// MaxApplyLag is how far the applied state may trail the commit index for
// the node to call itself ready.
const MaxApplyLag = 1000

// Ready reports whether the node serves requests well: it knows a leader it
// has heard from lately and its applied state is close to the commit index
// and, on a follower, to what the leader has applied: a follower's own
// commit index only tells what it has received, and after a restart it
// receives the backlog gradually.
func (n *Node) Ready() (bool, string) {
	_, lid := n.raft.LeaderWithID()
	st := n.raft.Stats()
	return readiness{
		leaderKnown: lid != "", state: n.raft.State(), leaderReady: n.leaderReady.Load(),
		lastContact: n.raft.LastContact(),
		commit:      parseU(st["commit_index"]), applied: parseU(st["applied_index"]),
		stateApplied: n.fsm.AppliedIndex(), leaderApplied: n.leaderApplied,
	}.check(time.Now())
}

// readiness is what Ready decides on, gathered so the decision can be
// tested without a cluster.
type readiness struct {
	leaderKnown, leaderReady bool
	state                    raft.RaftState
	lastContact              time.Time
	commit, applied          uint64 // raft's own indexes
	stateApplied             uint64 // the FSM's applied index (the unit read-index answers in)
	leaderApplied            func() (uint64, error)
}

func (r readiness) check(now time.Time) (bool, string) {
	if !r.leaderKnown {
		return false, "no leader known"
	}
	switch r.state {
	case raft.Leader:
		if !r.leaderReady {
			return false, "leader is still taking over"
		}
	case raft.Follower:
		if r.lastContact.IsZero() || now.Sub(r.lastContact) > 10*time.Second {
			return false, "no contact with the leader for over 10s"
		}
	default:
		return false, "state " + r.state.String()
	}
	if r.commit > r.applied+MaxApplyLag {
		return false, fmt.Sprintf("applied index %d trails commit index %d", r.applied, r.commit)
	}
	if r.state == raft.Follower {
		leaderApplied, err := r.leaderApplied()
		if err != nil {
			return false, "cannot ask the leader how far it has applied: " + err.Error()
		}
		if leaderApplied > r.stateApplied+MaxApplyLag {
			return false, fmt.Sprintf("catching up: applied state %d, the leader's %d", r.stateApplied, leaderApplied)
		}
	}
	return true, ""
}

// leaderAppliedReuse bounds how often readiness checks ask the leader.
const leaderAppliedReuse = time.Second

// leaderApplied is the leader's applied index (as read-index answers it),
// asked at most once per leaderAppliedReuse: /readyz may be polled often.
func (n *Node) leaderApplied() (uint64, error) {
	c := &n.readyCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < leaderAppliedReuse {
		return c.index, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), forwardAttemptTimeout)
	defer cancel()
	c.index, c.err = n.leaderReadIndex(ctx)
	c.at = time.Now()
	return c.index, c.err
}

type leaderAppliedCache struct {
	mu    sync.Mutex
	at    time.Time
	index uint64
	err   error
}

// PeerInfo is one member as the leader sees it, in the admin API's JSON
// shape (GET /api/v1/peers).
type PeerInfo = adminapi.Peer

// Peers lists the members of the Raft configuration, asking each one for
// its own status concurrently (a short timeout; unreachable peers are
// listed with reachable=false).
func (n *Node) Peers(ctx context.Context) ([]PeerInfo, error) {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	_, lid := n.raft.LeaderWithID()
	servers := cf.Configuration().Servers
	out := make([]PeerInfo, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		rec, _ := n.fsm.Peer(string(s.ID))
		out[i] = PeerInfo{
			ID: string(s.ID), RaftAddr: string(s.Address), HTTPAddr: rec.HTTPAddr,
			Voter: s.Suffrage == raft.Voter, Leader: s.ID == lid,
		}
		if string(s.ID) == n.cfg.ID {
			st := n.Status()
			out[i].State, out[i].LastContact, out[i].AppliedIndex, out[i].Reachable = st.State, st.LastContact, st.AppliedIndex, true
			continue
		}
		if rec.HTTPAddr == "" {
			out[i].Error = "HTTP address not yet known"
			continue
		}
		wg.Add(1)
		go func(p *PeerInfo) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			var st Status
			if err := n.client.Call(cctx, p.HTTPAddr, "status", nil, &st); err != nil {
				p.Error = err.Error()
				return
			}
			p.State, p.LastContact, p.AppliedIndex, p.Reachable = st.State, st.LastContact, st.AppliedIndex, true
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
