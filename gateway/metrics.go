package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the gateway's collectors. Label values never carry secrets.
type metrics struct {
	bbbRequests    *prometheus.CounterVec
	bbbLatency     *prometheus.HistogramVec
	backendCalls   *prometheus.CounterVec
	backendLatency *prometheus.HistogramVec
}

func (m *metrics) observeBBB(call, frontend, result string, d time.Duration) {
	m.bbbRequests.WithLabelValues(call, frontend, result).Inc()
	m.bbbLatency.WithLabelValues(call).Observe(d.Seconds())
}

func (m *metrics) observeBackend(backend, call string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.backendCalls.WithLabelValues(backend, metricCall(call), result).Inc()
	m.backendLatency.WithLabelValues(backend).Observe(d.Seconds())
}

func newMetrics(reg *prometheus.Registry, cluster Cluster) *metrics {
	m := &metrics{
		bbbRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "conclave_bbb_requests_total", Help: "BBB API requests by call, frontend and result.",
		}, []string{"call", "frontend", "result"}),
		bbbLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "conclave_bbb_request_duration_seconds", Help: "BBB API request latency by call.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"call"}),
	}
	m.backendCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "conclave_backend_calls_total", Help: "Calls from this peer to backends, by backend, call and result.",
	}, []string{"backend", "call", "result"})
	m.backendLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "conclave_backend_call_duration_seconds", Help: "Latency of calls to backends.",
		Buckets: prometheus.DefBuckets,
	}, []string{"backend"})
	reg.MustRegister(m.bbbRequests, m.bbbLatency, m.backendCalls, m.backendLatency)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "conclave_raft_applied_index", Help: "Index of the last command applied to the local replica.",
	}, func() float64 { return float64(cluster.FSM().AppliedIndex()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "conclave_raft_leader", Help: "1 when this peer leads the cluster.",
	}, func() float64 {
		if cluster.IsLeader() {
			return 1
		}
		return 0
	}))
	return m
}
