package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

func benchState(b *testing.B, backends, meetings int) *FSM {
	b.Helper()
	f := New()
	idx := uint64(0)
	apply := func(c Command) {
		idx++
		if r := f.ApplyCommand(idx, c); r.Error != nil {
			b.Fatal(r.Error)
		}
	}
	apply(&AddFrontend{Key: "fe", Secret: "s"})
	for i := 0; i < backends; i++ {
		id := fmt.Sprintf("b%04d", i)
		apply(&AddBackend{ID: id, URL: fmt.Sprintf("https://n%d.example.org/bigbluebutton/api/", i), Secret: "s"})
		apply(&SetBackendAdminState{ID: id, State: AdminReady})
		apply(&ReportBackends{Reports: []BackendReport{{ID: id, NodeState: NodeReady}}})
	}
	for i := 0; i < meetings; i++ {
		apply(&ClaimMeeting{InternalID: fmt.Sprintf("fe~m%d", i), Frontend: "fe", MeetingID: fmt.Sprintf("m%d", i),
			BackendID: fmt.Sprintf("b%04d", i%backends), Now: int64(i)})
	}
	return f
}

// BenchmarkApplyClaim is the FSM's share of a create: decode + claim, on
// a state of 1 000 backends and 100 000 meetings.
func BenchmarkApplyClaim(b *testing.B) {
	f := benchState(b, 1000, 100000)
	cmds := make([][]byte, b.N)
	for i := range cmds {
		cmds[i] = Encode(&ClaimMeeting{InternalID: fmt.Sprintf("fe~x%d", i), Frontend: "fe", MeetingID: fmt.Sprintf("x%d", i),
			BackendID: fmt.Sprintf("b%04d", i%1000), Now: 1})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := f.Apply(uint64(i+1000), cmds[i]); r.Error != nil {
			b.Fatal(r.Error)
		}
	}
}

func BenchmarkMeetingLookup(b *testing.B) {
	f := benchState(b, 100, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := f.Meeting("fe~m4242"); !ok {
			b.Fatal("missing")
		}
	}
}

// BenchmarkSnapshotRestore100k: 1 000 backends, 100 000 meetings. It also
// reports the heap the state occupies.
func BenchmarkSnapshotRestore100k(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := benchState(b, 1000, 100000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapMB := float64(after.HeapAlloc-before.HeapAlloc) / 1e6
	var buf bytes.Buffer
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if _, err := f.Snapshot().WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		if err := New().Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/1e6, "snapshot-MB")
	b.ReportMetric(heapMB, "state-heap-MB") // after ResetTimer, which clears reported metrics
}
