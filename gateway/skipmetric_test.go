package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type skippingCluster struct{ *MemCluster }

func (skippingCluster) SkippedCommands() map[string]uint64 { return map[string]uint64{"158": 2} }

// The replica's skipped commands (raftnode.Node.SkippedCommands) are
// exported as conclave_fsm_commands_skipped_total{type}.
func TestSkippedCommandsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&stateCollector{cluster: skippingCluster{NewMemCluster()}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "conclave_fsm_commands_skipped_total" {
			continue
		}
		m := mf.GetMetric()[0]
		if l := m.GetLabel()[0]; l.GetName() != "type" || l.GetValue() != "158" || m.GetCounter().GetValue() != 2 {
			t.Fatalf("%v", m)
		}
		return
	}
	t.Fatal("conclave_fsm_commands_skipped_total not exported")
}
