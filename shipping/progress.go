package shipping

import "sync/atomic"

// Progress counts what shippers did; safe for concurrent use. Several
// Shippers may share one.
type Progress struct {
	offered, sent, resumed atomic.Int64
	done, failed           atomic.Int64
}

// Snapshot is Progress at one moment.
type Snapshot struct {
	Offered int64 `json:"bytes_offered"` // bytes of the units offered
	Sent    int64 `json:"bytes_sent"`    // chunk bytes sent and accepted
	Resumed int64 `json:"bytes_resumed"` // bytes not sent: the cluster had them already (staged or central)
	Done    int64 `json:"units_done"`    // units central
	Failed  int64 `json:"units_failed"`  // Ship calls that failed
}

// Snapshot reads the counters. A nil Progress reads as zero.
func (p *Progress) Snapshot() Snapshot {
	if p == nil {
		return Snapshot{}
	}
	return Snapshot{
		Offered: p.offered.Load(), Sent: p.sent.Load(), Resumed: p.resumed.Load(),
		Done: p.done.Load(), Failed: p.failed.Load(),
	}
}

// Sub is s minus an earlier snapshot: what happened in between.
func (s Snapshot) Sub(earlier Snapshot) Snapshot {
	return Snapshot{
		Offered: s.Offered - earlier.Offered, Sent: s.Sent - earlier.Sent, Resumed: s.Resumed - earlier.Resumed,
		Done: s.Done - earlier.Done, Failed: s.Failed - earlier.Failed,
	}
}
