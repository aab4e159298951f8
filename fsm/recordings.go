package fsm

import (
	"sort"
	"strings"
)

// Recording is one recording in the replicated index. XML is the
// <recording> element as the backend wrote it, with the client's meeting ID
// in it, so getRecordings can be answered without asking any backend.
type Recording struct {
	RecordID   string            `json:"record_id"`
	Frontend   string            `json:"frontend"`
	MeetingID  string            `json:"meeting_id"` // the client's
	InternalID string            `json:"internal_id"`
	BackendID  string            `json:"backend_id"`
	State      string            `json:"state"` // published, unpublished, deleted, processing…
	StartTime  int64             `json:"start_time"`
	Meta       map[string]string `json:"meta,omitempty"`
	XML        string            `json:"xml"`
	// Central lists the formats copied whole to central storage (central.go).
	Central []CentralCopy `json:"central,omitempty"`
}

// PutRecordings adds or replaces recordings (from a sync or a callback).
type PutRecordings struct{ Recordings []Recording }

// DropRecordings forgets recordings that backend no longer has. With a
// BackendID (a sync: the node no longer lists them) a recording with a
// central copy is kept, since it plays from there; without one (a client's
// deleteRecordings) it goes whatever it is.
type DropRecordings struct {
	BackendID string
	RecordIDs []string
}

// Recording commands are additive: older peers may skip them.
const (
	CmdPutRecordings  = FlagSkippable | 13
	CmdDropRecordings = FlagSkippable | 14
)

func (*PutRecordings) Type() CmdType  { return CmdPutRecordings }
func (*DropRecordings) Type() CmdType { return CmdDropRecordings }

func (c *PutRecordings) encode(e *encoder) {
	e.uvarint(uint64(len(c.Recordings)))
	for _, r := range c.Recordings {
		e.str(r.RecordID)
		e.str(r.Frontend)
		e.str(r.MeetingID)
		e.str(r.InternalID)
		e.str(r.BackendID)
		e.str(r.State)
		e.varint(r.StartTime)
		keys := make([]string, 0, len(r.Meta))
		for k := range r.Meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		e.uvarint(uint64(len(keys)))
		for _, k := range keys {
			e.str(k)
			e.str(r.Meta[k])
		}
		e.str(r.XML)
	}
}

func (c *PutRecordings) decode(d *decoder) {
	n := d.count()
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := Recording{RecordID: d.str(), Frontend: d.str(), MeetingID: d.str(), InternalID: d.str(),
			BackendID: d.str(), State: d.str(), StartTime: d.varint()}
		m := d.count()
		if m > 0 {
			r.Meta = make(map[string]string, m)
		}
		for j := uint64(0); j < m && d.err == nil; j++ {
			k := d.str()
			r.Meta[k] = d.str()
		}
		r.XML = d.str()
		c.Recordings = append(c.Recordings, r)
	}
}

func (c *DropRecordings) encode(e *encoder) { e.str(c.BackendID); e.strs(c.RecordIDs) }
func (c *DropRecordings) decode(d *decoder) { c.BackendID, c.RecordIDs = d.str(), d.strs() }

const maxRecordingXML = 256 << 10

func (s *State) putRecordings(c *PutRecordings) *Result {
	for i := range c.Recordings {
		r := c.Recordings[i]
		// Advisory data: skip what is malformed. The metadata limits came
		// later: checked before the log (Validate), not here.
		if r.RecordID == "" || len(r.RecordID) > maxMeetingID || len(r.XML) > maxRecordingXML {
			continue
		}
		if old, ok := s.Recordings[r.RecordID]; ok {
			if len(old.Central) > 0 && (old.BackendID != r.BackendID || old.Frontend != r.Frontend) {
				// Another node (or tenant) listing a central recording's ID
				// would take its central copy over: the copy stays its owner's.
				continue
			}
			r.Central = old.Central // a node's listing knows nothing of central copies
		} else {
			r.Central = nil
		}
		s.Recordings[r.RecordID] = &r
	}
	return &Result{}
}

func (s *State) dropRecordings(c *DropRecordings) *Result {
	for _, id := range c.RecordIDs {
		if r, ok := s.Recordings[id]; ok && (c.BackendID == "" || (r.BackendID == c.BackendID && len(r.Central) == 0)) {
			delete(s.Recordings, id)
		}
	}
	return &Result{}
}

// Recording returns one recording of the index.
func (f *FSM) Recording(id string) (Recording, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.Recordings[id]
	if !ok {
		return Recording{}, false
	}
	return *r, true
}

// RecordingsOf returns a frontend's recordings (all when empty) that keep
// returns true for, oldest first (then by ID): a stable order for paging.
// The values share maps with the state: callers must not modify them.
func (f *FSM) RecordingsOf(frontend string, keep func(*Recording) bool) []Recording {
	f.mu.RLock()
	var out []Recording
	for _, r := range f.st.Recordings {
		if (frontend == "" || r.Frontend == frontend) && (keep == nil || keep(r)) {
			out = append(out, *r)
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].StartTime != out[j].StartTime {
			return out[i].StartTime < out[j].StartTime
		}
		return out[i].RecordID < out[j].RecordID
	})
	return out
}

// RecordingsOn lists the IDs of the recordings held by one backend.
func (f *FSM) RecordingsOn(backend string) map[string]Recording {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]Recording{}
	for id, r := range f.st.Recordings {
		if r.BackendID == backend {
			out[id] = *r
		}
	}
	return out
}

// FrontendOf returns the frontend an internal meeting ID belongs to, if any.
func (f *FSM) FrontendOf(internalID string) (string, bool) {
	key, _, ok := strings.Cut(internalID, "~")
	if !ok {
		return "", false
	}
	_, exists := f.Frontend(key)
	return key, exists
}
