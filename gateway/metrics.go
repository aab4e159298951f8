package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/bbbapi"
)

// metrics holds the gateway's collectors. Label values are IDs, keys and
// call names: never secrets.
// The BBB API's own collectors are bbbapi.Metrics; they are made and
// registered here, with the rest.
type metrics struct {
	*bbbapi.Metrics
	callbacks *prometheus.CounterVec // callback relays by kind and result
}

// RaftStatsSource is what the metrics read of Raft beyond the Cluster
// interface; *raftnode.Node has it. Optional: MemCluster lacks it.
type RaftStatsSource interface {
	RaftStats() map[string]string
	LeaderChanges() uint64
	LogWrites() (writes, entries uint64)
}

func newMetrics(reg *prometheus.Registry, cluster Cluster, loads LoadSource) *metrics {
	m := &metrics{Metrics: &bbbapi.Metrics{
		BBBRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_bbb_requests_total", Help: "BBB API requests by call, frontend and result.",
		}, []string{"call", "frontend", "result"}),
		BBBLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "conclave_bbb_request_duration_seconds", Help: "BBB API request latency by call.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"call"}),
		BackendCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_backend_calls_total", Help: "Calls from this peer to backends, by backend, call and result.",
		}, []string{"backend", "call", "result"}),
		BackendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "conclave_backend_call_duration_seconds", Help: "Latency of calls to backends.",
			Buckets: prometheus.DefBuckets,
		}, []string{"backend"}),
		Placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_placements_total", Help: "New meetings placed by this peer, by backend.",
		}, []string{"backend"}),
		PlaceFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_placement_failures_total", Help: "Creates this peer could not place, by reason.",
		}, []string{"reason"}),
		LeaderAnswers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "conclave_leader_answers_total", Help: "BBB requests this peer handed to the leader because its replica lagged.",
		}),
		ApplyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "conclave_raft_apply_duration_seconds", Help: "Time to commit and apply a command, from this peer (forwarding included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}}
	m.TooLarge = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "conclave_backend_answers_too_large_total", Help: "Backend answers refused for exceeding the size limit (16 MiB), by backend.",
	}, []string{"backend"})
	m.callbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "conclave_callback_relays_total",
		Help: "Callbacks from backends, by kind and result (refused, queued, duplicate, queue_full, delivered, failed).",
	}, []string{"kind", "result"})
	m.ListingAge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "conclave_getmeetings_listing_age_seconds",
		Help:    "Age of the node listings (getMeetings answers, kept up to a second) getMeetings answered from.",
		Buckets: []float64{.001, .01, .05, .1, .25, .5, .75, 1, 2},
	})
	m.Recreations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "conclave_meetings_recreated_total", Help: "Meetings this peer created again on a live node after their node died or lost them.",
	})
	reg.MustRegister(m.BBBRequests, m.BBBLatency, m.BackendCalls, m.BackendLatency, m.Placements, m.PlaceFailures, m.ApplyLatency, m.LeaderAnswers, m.TooLarge, m.callbacks, m.Recreations, m.ListingAge)
	// Known reasons start at zero, so rate() works before the first failure.
	for _, r := range []string{"no_backend", "no_tagged_backend", "server_tag_unavailable", "backends_failed", "no_quorum"} {
		m.PlaceFailures.WithLabelValues(r)
	}
	// A load source may bring its own metrics (the gossip layer counts the
	// agents' load reports it rejected).
	if c, ok := loads.(prometheus.Collector); ok {
		reg.MustRegister(c)
	}
	mc, _ := loads.(MemberCounter)
	reg.MustRegister(&stateCollector{cluster: cluster, members: mc})
	return m
}

// stateCollector reads gauges from the replica and Raft at scrape time, so
// nothing is kept in sync by hand and removed backends vanish on their own.
type stateCollector struct {
	cluster Cluster
	members MemberCounter // nil without gossip
}

var (
	descBackendMeetings  = prometheus.NewDesc("conclave_backend_meetings", "Meetings on a backend, as last reported.", []string{"backend"}, nil)
	descBackendAttendees = prometheus.NewDesc("conclave_backend_attendees", "Attendees on a backend, as last reported.", []string{"backend"}, nil)
	descBackendBound     = prometheus.NewDesc("conclave_backend_bound_meetings", "Meetings the cluster has bound to a backend.", []string{"backend"}, nil)
	descBackendLatency   = prometheus.NewDesc("conclave_backend_probe_latency_seconds", "Latency of the last health probe.", []string{"backend"}, nil)
	descNodeState        = prometheus.NewDesc("conclave_backend_node_state", "1 for the backend's current NodeState.", []string{"backend", "state"}, nil)
	descAdminState       = prometheus.NewDesc("conclave_backend_admin_state", "1 for the backend's current AdminState.", []string{"backend", "state"}, nil)
	descFrontends        = prometheus.NewDesc("conclave_frontends", "Frontends (tenants) configured.", nil, nil)
	descMeetings         = prometheus.NewDesc("conclave_meetings", "Meetings bound, per frontend.", []string{"frontend"}, nil)
	descApplied          = prometheus.NewDesc("conclave_raft_applied_index", "Index of the last command applied to the local replica.", nil, nil)
	descLeader           = prometheus.NewDesc("conclave_raft_leader", "1 when this peer leads the cluster.", nil, nil)
	descRaftState        = prometheus.NewDesc("conclave_raft_state", "1 for this peer's current Raft state.", []string{"state"}, nil)
	descTerm             = prometheus.NewDesc("conclave_raft_term", "Current Raft term.", nil, nil)
	descLastIndex        = prometheus.NewDesc("conclave_raft_last_log_index", "Last index in the local Raft log.", nil, nil)
	descCommitIndex      = prometheus.NewDesc("conclave_raft_commit_index", "Raft commit index known to this peer.", nil, nil)
	descLeaderChanges    = prometheus.NewDesc("conclave_raft_leader_changes_total", "Leadership changes seen by this peer.", nil, nil)
	descLogWrites        = prometheus.NewDesc("conclave_raft_log_writes_total", "Writes to the Raft log store (one fsync each).", nil, nil)
	descLogEntries       = prometheus.NewDesc("conclave_raft_log_entries_total", "Entries written to the Raft log store; entries/writes is the group-commit batch size.", nil, nil)
	descPeers            = prometheus.NewDesc("conclave_raft_peers", "Voters in the Raft configuration.", nil, nil)
	descGossipMembers    = prometheus.NewDesc("conclave_gossip_members", "Members of the gossip cluster (peers and agents) this peer sees alive.", nil, nil)
	descFSMSkipped       = prometheus.NewDesc("conclave_fsm_commands_skipped_total", "Log entries of a command type this release does not know, flagged skippable, skipped by the local replica, by type number.", []string{"type"}, nil)
)

// SkipCounter counts the log entries the replica skipped by command type
// (raftnode.Node.SkippedCommands). Optional: MemCluster lacks it.
type SkipCounter interface{ SkippedCommands() map[string]uint64 }

// MemberCounter is implemented by a LoadSource that can count gossip members.
type MemberCounter interface{ NumMembers() int }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBackendMeetings, descBackendAttendees, descBackendBound, descBackendLatency,
		descNodeState, descAdminState, descFrontends, descMeetings, descApplied, descLeader, descRaftState, descTerm,
		descLastIndex, descCommitIndex, descLeaderChanges, descLogWrites, descLogEntries, descPeers, descGossipMembers, descFSMSkipped} {
		ch <- d
	}
}

func boolGauge(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.cluster.FSM()
	counts := st.MeetingCounts()
	for _, b := range st.Backends() {
		ch <- prometheus.MustNewConstMetric(descBackendMeetings, prometheus.GaugeValue, float64(b.Meetings), b.ID)
		ch <- prometheus.MustNewConstMetric(descBackendAttendees, prometheus.GaugeValue, float64(b.Attendees), b.ID)
		ch <- prometheus.MustNewConstMetric(descBackendBound, prometheus.GaugeValue, float64(counts[b.ID]), b.ID)
		ch <- prometheus.MustNewConstMetric(descBackendLatency, prometheus.GaugeValue, time.Duration(b.LatencyNs).Seconds(), b.ID)
		for _, s := range []fsm.NodeState{fsm.NodeInit, fsm.NodeReady, fsm.NodeStopped, fsm.NodeError, fsm.NodeDecommissioned} {
			ch <- prometheus.MustNewConstMetric(descNodeState, prometheus.GaugeValue, boolGauge(b.NodeState == s), b.ID, string(s))
		}
		for _, s := range []fsm.AdminState{fsm.AdminInit, fsm.AdminReady, fsm.AdminStopped, fsm.AdminDecommissioned} {
			ch <- prometheus.MustNewConstMetric(descAdminState, prometheus.GaugeValue, boolGauge(b.AdminState == s), b.ID, string(s))
		}
	}
	fes := st.Frontends()
	ch <- prometheus.MustNewConstMetric(descFrontends, prometheus.GaugeValue, float64(len(fes)))
	perFrontend := map[string]int{}
	for _, m := range st.Meetings("") {
		perFrontend[m.Frontend]++
	}
	for _, f := range fes {
		ch <- prometheus.MustNewConstMetric(descMeetings, prometheus.GaugeValue, float64(perFrontend[f.Key]), f.Key)
	}
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, boolGauge(c.cluster.IsLeader()))
	if c.members != nil {
		ch <- prometheus.MustNewConstMetric(descGossipMembers, prometheus.GaugeValue, float64(c.members.NumMembers()))
	}
	if sc, ok := c.cluster.(SkipCounter); ok {
		for t, n := range sc.SkippedCommands() {
			ch <- prometheus.MustNewConstMetric(descFSMSkipped, prometheus.CounterValue, float64(n), t)
		}
	}
	rs, ok := c.cluster.(RaftStatsSource)
	if !ok {
		return
	}
	stats := rs.RaftStats()
	for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, boolGauge(stats["state"] == s), s)
	}
	num := func(k string) float64 { v, _ := strconv.ParseFloat(stats[k], 64); return v }
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, num("term"))
	ch <- prometheus.MustNewConstMetric(descLastIndex, prometheus.GaugeValue, num("last_log_index"))
	ch <- prometheus.MustNewConstMetric(descCommitIndex, prometheus.GaugeValue, num("commit_index"))
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, num("num_peers")+1)
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(rs.LeaderChanges()))
	writes, entries := rs.LogWrites()
	ch <- prometheus.MustNewConstMetric(descLogWrites, prometheus.CounterValue, float64(writes))
	ch <- prometheus.MustNewConstMetric(descLogEntries, prometheus.CounterValue, float64(entries))
}
