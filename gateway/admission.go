package gateway

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/internal/admit"
	"github.com/conclave-lb/conclave/gateway/internal/pace"
)

// writeCalls are the BBB calls admitted as writes: they change state, wait
// on Raft or a node, and a user cannot redo them by reloading a page.
var writeCalls = [][]byte{[]byte("create"), []byte("end"), []byte("insertDocument"), []byte("sendChatMessage"),
	[]byte("publishRecordings"), []byte("deleteRecordings"), []byte("updateRecordings"), []byte("putRecordingTextTrack")}

// callClass tells a BBB call's admission class from the path after
// /bigbluebutton/api.
func callClass(rest []byte) admit.Class {
	call := bytes.Trim(rest, "/")
	if string(call) == "join" {
		return admit.Join
	}
	for _, w := range writeCalls {
		if bytes.Equal(call, w) {
			return admit.Write
		}
	}
	return admit.Read
}

// shedAnswer is what a client gets when this peer is at its bound: BBB's
// FAILED envelope, so BBB clients show a message, with 503 and
// Retry-After, so a proxy in front or the client tries again (through DNS,
// likely another peer).
var shedAnswer = bbb.FailedXML(bbb.KeyServerUnavailable, "This server is busy. Please retry in a moment.")

// serveAdmitted serves a BBB API request when the gate admits it, and
// sheds it otherwise (a join after waiting briefly for a slot).
func (s *Server) serveAdmitted(ctx *fasthttp.RequestCtx, key string, rest []byte) {
	class := callClass(rest)
	if !s.gate.Enter(class) {
		s.shed[class].Inc()
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetContentType("text/xml; charset=utf-8")
		ctx.SetBody(shedAnswer)
		return
	}
	defer s.gate.Leave(class)
	s.api.ServeBBB(ctx, key, rest)
}

// newShedMetrics registers the shed counters and the in-flight gauges.
func newShedMetrics(reg *prometheus.Registry, g *admit.Gate) [3]prometheus.Counter {
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "conclave_requests_shed_total",
		Help: "BBB API requests answered 503 because this peer had as many of their class (join, read, write) in flight as it admits (a join after waiting up to 20 ms for a slot).",
	}, []string{"class"})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "conclave_requests_inflight", Help: "BBB API requests being served (joins, reads and writes).",
	}, func() float64 {
		return float64(g.InFlight(admit.Join) + g.InFlight(admit.Read) + g.InFlight(admit.Write))
	})
	reg.MustRegister(shed, inflight)
	return [3]prometheus.Counter{admit.Join: shed.WithLabelValues("join"), admit.Read: shed.WithLabelValues("read"),
		admit.Write: shed.WithLabelValues("write")}
}

// DefaultClientCPU is the share of a peer's CPU budget client requests
// may keep busy before their reads are paced (Config.ClientCPU).
const DefaultClientCPU = pace.DefaultTarget

// ParseClientCPU reads --client-cpu: a share in (0, 1], "off" (-1,
// which turns pacing off), or empty (0: the default).
func ParseClientCPU(s string) (float64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, nil
	case strings.EqualFold(s, "off"):
		return -1, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0 && v <= 1) {
		return 0, fmt.Errorf("%q is not a share in (0, 1] nor off", s)
	}
	return v, nil
}

// registerPaceMetrics exposes the pacer: its rate, and the reads it held.
func registerPaceMetrics(reg *prometheus.Registry, p *pace.Pacer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "conclave_client_paced_rate",
			Help: "Client requests per second this peer reads while its CPU is over the share kept for client work (0: not pacing).",
		}, p.Rate),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "conclave_client_paced_waiting",
			Help: "Client connections waiting now, their next request unread, for this peer to read it.",
		}, func() float64 { return float64(p.Waiting()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "conclave_client_paced_total",
			Help: "Client requests left unread in their connection for a while because this peer's CPU was over the share kept for client work.",
		}, func() float64 { n, _ := p.Held(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "conclave_client_paced_seconds_total",
			Help: "Total time client requests waited unread in their connection while this peer paced reads.",
		}, func() float64 { _, d := p.Held(); return d.Seconds() }),
	)
}
