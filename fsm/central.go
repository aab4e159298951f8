package fsm

import (
	"sort"
	"strings"
)

// Central recordings: a recording format whose files were copied whole to
// the cluster's central store (verified by size and SHA-256 before the
// command is written) is played from there by any peer, so it outlives the
// node that made it. The index notes which formats are central; the files
// themselves never enter the log.

// CentralCopy is one recording format held in central storage.
type CentralCopy struct {
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	Files  int    `json:"files"`
	// Version names the copy's files in the store (the transfer that made
	// them): a copy shipped again is written beside the one in use and
	// takes its place in one command.
	Version string `json:"version,omitempty"`
}

// MarkCentral notes that a recording format's copy is complete.
type MarkCentral struct {
	RecordID string
	Copy     CentralCopy
}

// SetRecordingsPublished publishes or unpublishes recordings in the index
// alone: for central recordings whose node is gone or dead (a live node is
// asked, and the index follows its answer).
type SetRecordingsPublished struct {
	RecordIDs []string
	Published bool
}

// Central recording commands are additive: older peers may skip them.
const (
	CmdMarkCentral            = FlagSkippable | 20
	CmdSetRecordingsPublished = FlagSkippable | 21
)

func (*MarkCentral) Type() CmdType            { return CmdMarkCentral }
func (*SetRecordingsPublished) Type() CmdType { return CmdSetRecordingsPublished }

func (c *MarkCentral) encode(e *encoder) {
	e.str(c.RecordID)
	e.str(c.Copy.Format)
	e.varint(c.Copy.Bytes)
	e.varint(int64(c.Copy.Files))
	e.str(c.Copy.Version)
}

func (c *MarkCentral) decode(d *decoder) {
	c.RecordID, c.Copy.Format, c.Copy.Bytes, c.Copy.Files = d.str(), d.str(), d.varint(), int(d.varint())
	c.Copy.Version = d.str()
}

func (c *SetRecordingsPublished) encode(e *encoder) { e.strs(c.RecordIDs); e.boolean(c.Published) }
func (c *SetRecordingsPublished) decode(d *decoder) { c.RecordIDs, c.Published = d.strs(), d.boolean() }

// maxFormats bounds the central copies of one recording (BBB has five
// formats; a few more for custom ones).
const maxFormats = 16

func (s *State) markCentral(c *MarkCentral) *Result {
	old, ok := s.Recordings[c.RecordID]
	if !ok {
		return fail(notFound("no recording %s", c.RecordID))
	}
	if c.Copy.Format == "" || len(c.Copy.Format) > 64 || c.Copy.Bytes < 0 || c.Copy.Files < 0 || len(c.Copy.Version) > 64 {
		return fail(invalid("bad central copy"))
	}
	r := *old
	res := &Result{}
	r.Central = make([]CentralCopy, 0, len(old.Central)+1)
	for _, cc := range old.Central {
		if cc.Format != c.Copy.Format {
			r.Central = append(r.Central, cc)
		} else if cc.Version != c.Copy.Version {
			res.PreviousCopy = cc.Version // the caller deletes its files
		}
	}
	if len(r.Central) >= maxFormats {
		return fail(invalid("recording %s has %d central formats already", c.RecordID, len(r.Central)))
	}
	r.Central = append(r.Central, c.Copy)
	sort.Slice(r.Central, func(i, j int) bool { return r.Central[i].Format < r.Central[j].Format })
	s.Recordings[c.RecordID] = &r
	return res
}

func (s *State) setRecordingsPublished(c *SetRecordingsPublished) *Result {
	state := "unpublished"
	if c.Published {
		state = "published"
	}
	for _, id := range c.RecordIDs {
		old, ok := s.Recordings[id]
		if !ok || (old.State != "published" && old.State != "unpublished") {
			continue
		}
		r := *old
		r.State = state
		r.XML = setElementText(setElementText(r.XML, "state", state), "published", boolText(c.Published))
		s.Recordings[id] = &r
	}
	return &Result{}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// setElementText replaces the text of the first <name>…</name> directly
// inside a <recording> element (BBB writes state and published before any
// nested element that could hold the same names).
func setElementText(xml, name, text string) string {
	open, close := "<"+name+">", "</"+name+">"
	i := strings.Index(xml, open)
	if i < 0 {
		return xml
	}
	j := strings.Index(xml[i:], close)
	if j < 0 {
		return xml
	}
	return xml[:i+len(open)] + text + xml[i+j:]
}

// CentralFormat returns the central copy of one format of a recording.
func (r *Recording) CentralFormat(format string) (CentralCopy, bool) {
	for _, c := range r.Central {
		if c.Format == format {
			return c, true
		}
	}
	return CentralCopy{}, false
}
