package fsm

// Video streams and voice participants are load placement may weigh
// (gateway.LoadWeights). The prober reports them with their own command,
// so ReportBackends keeps its encoding; older peers skip it.

// StreamReport is one backend's video streams and voice participants.
type StreamReport struct {
	ID            string
	Videos, Voice int64
}

// ReportStreams records video and voice counts of backends.
type ReportStreams struct{ Reports []StreamReport }

// CmdReportStreams is additive: older peers may skip it.
const CmdReportStreams = FlagSkippable | 30

func (*ReportStreams) Type() CmdType { return CmdReportStreams }

func (c *ReportStreams) encode(e *encoder) {
	e.uvarint(uint64(len(c.Reports)))
	for _, r := range c.Reports {
		e.str(r.ID)
		e.varint(r.Videos)
		e.varint(r.Voice)
	}
}

func (c *ReportStreams) decode(d *decoder) {
	n := d.count()
	c.Reports = make([]StreamReport, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Reports = append(c.Reports, StreamReport{ID: d.str(), Videos: d.varint(), Voice: d.varint()})
	}
}

// reportStreams is advisory, like reportBackends: unknown IDs are skipped.
func (s *State) reportStreams(c *ReportStreams) *Result {
	for _, r := range c.Reports {
		old, ok := s.Backends[r.ID]
		if !ok {
			continue
		}
		videos, voice := int(min(max(r.Videos, 0), 1<<31-1)), int(min(max(r.Voice, 0), 1<<31-1))
		if old.Videos == videos && old.Voice == voice {
			continue
		}
		b := *old
		b.Videos, b.Voice = videos, voice
		s.Backends[b.ID] = &b
	}
	return &Result{}
}
