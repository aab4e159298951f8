package gateway

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway/control"
)

// The control loops (prober, recordings sync) and placement live in
// package control; these names keep the gateway's configuration in one
// place for cmd/conclaved.
type (
	// HealthConfig tunes the leader's backend prober.
	HealthConfig = control.HealthConfig
	// LoadWeights say what each thing on a node adds to its load.
	LoadWeights = control.LoadWeights
	// LoadSource gives the agents' latest loads.
	LoadSource = control.LoadSource
	// AgentLoad is a BBB node's load as its agent gossips it.
	AgentLoad = control.AgentLoad
)

// DefaultHealth is the prober's production setting.
var DefaultHealth = control.DefaultHealth

// DefaultLoadWeights are the weights when none are configured.
var DefaultLoadWeights = control.DefaultLoadWeights

// ParseLoadWeights reads "meeting=5,attendee=1,video=2,voice=1".
func ParseLoadWeights(s string) (LoadWeights, error) { return control.ParseLoadWeights(s) }

// RunHealth runs the leader's backend prober in each leadership term this
// peer wins (control.Control.RunHealth). It returns when ctx ends.
func (s *Server) RunHealth(ctx context.Context, cfg HealthConfig) { s.ctl.RunHealth(ctx, cfg) }

// RunRecordingSync runs the leader's recordings sync in each leadership
// term this peer wins. It returns when ctx ends.
func (s *Server) RunRecordingSync(ctx context.Context, every time.Duration) {
	s.ctl.RunRecordingSync(ctx, every)
}

// backendCaller is the control loops' way to the BBB nodes: the BBB
// API's client (signing, per-call bounds, metrics). s.api is set after
// control.New, hence the indirection.
type backendCaller struct{ s *Server }

func (c backendCaller) CallBackend(b *fsm.Backend, call string, args *fasthttp.Args, timeout time.Duration) ([]byte, error) {
	return c.s.api.CallBackend(b, call, args, timeout)
}

// RunStagingSweep deletes abandoned recording transfers from the central
// store (nothing without one), every hour until ctx ends.
func (s *Server) RunStagingSweep(ctx context.Context) { s.central.RunStagingSweep(ctx) }
