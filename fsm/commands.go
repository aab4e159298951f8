package fsm

import (
	"errors"
	"fmt"
)

// CmdType is the first byte of an encoded command.
type CmdType byte

// FlagSkippable marks a command type that peers which do not know it may
// skip. New, purely additive command types set it so peers can be upgraded
// one at a time; a type without it that a peer does not know stops that
// peer (FSM.Apply, "upgrade this peer"), never a silent divergence.
const FlagSkippable CmdType = 0x80

// Command types. Numbers are part of the log format: never reuse one.
const (
	CmdAddBackend           CmdType = 1
	CmdSetBackendSettings   CmdType = 2
	CmdSetBackendAdminState CmdType = 3
	CmdRemoveBackend        CmdType = 4
	CmdReportBackends       CmdType = 5
	CmdAddFrontend          CmdType = 6
	CmdSetFrontendSettings  CmdType = 7
	CmdRemoveFrontend       CmdType = 8
	CmdClaimMeeting         CmdType = 9
	CmdReleaseMeetings      CmdType = 10
	CmdSetPeer              CmdType = 11
	CmdRemovePeer           CmdType = 12
)

// Command is one change to the state.
type Command interface {
	Type() CmdType
	encode(*encoder)
	decode(*decoder)
}

// AddBackend registers a BBB server, AdminState init.
type AddBackend struct {
	ID, URL, Secret string
	Settings        []byte // JSON merge patch over empty settings
	Now             int64
	// IfAbsent makes adding a URL that is already registered a success that
	// returns the existing backend (agents autoregister on every start).
	IfAbsent bool
}

// SetBackendSettings merges a JSON patch into a backend's settings.
type SetBackendSettings struct {
	ID    string
	Patch []byte
}

// SetBackendAdminState is enable (ready), disable (stopped) or init.
type SetBackendAdminState struct {
	ID    string
	State AdminState
	Now   int64
}

// RemoveBackend decommissions a backend; Force removes it and its meetings now.
type RemoveBackend struct {
	ID    string
	Force bool
	Now   int64
}

// BackendReport is one observation of one backend.
type BackendReport struct {
	ID        string
	NodeState NodeState
	Meetings  int64
	Attendees int64
	LatencyNs int64
	Error     string
}

// ReportBackends records health and load observations in one entry.
type ReportBackends struct {
	Reports []BackendReport
	Now     int64
}

// AddFrontend registers a tenant.
type AddFrontend struct {
	Key, Secret string
	Settings    []byte
	Now         int64
}

// SetFrontendSettings merges a JSON patch into a frontend's settings.
type SetFrontendSettings struct {
	Key   string
	Patch []byte
}

// RemoveFrontend deletes a tenant and forgets its meetings.
type RemoveFrontend struct{ Key string }

// ClaimMeeting binds a frontend's meeting to a backend unless it is bound
// already to a backend that still lives; the log decides races.
type ClaimMeeting struct {
	InternalID, Frontend, MeetingID, BackendID string
	Now                                        int64
}

// MeetingRef names a meeting on the backend it is believed to be on.
type MeetingRef struct {
	InternalID string
	BackendID  string // empty: whichever backend it is on
}

// ReleaseMeetings forgets meetings that ended or whose create failed. A
// meeting re-placed elsewhere in the meantime is left alone.
type ReleaseMeetings struct {
	Meetings []MeetingRef
	// CreatedAt, when given (aligned with Meetings; 0: any), releases a
	// meeting only while it is the instance claimed then: a late end
	// callback of a meeting ended and created again must not drop the new
	// one. Older peers read the command without it.
	CreatedAt []int64
}

// SetPeer records a Raft member's HTTP and gossip addresses.
type SetPeer struct{ ID, RaftAddr, HTTPAddr, GossipAddr string }

// RemovePeer forgets a member's record.
type RemovePeer struct{ ID string }

func (*AddBackend) Type() CmdType           { return CmdAddBackend }
func (*SetBackendSettings) Type() CmdType   { return CmdSetBackendSettings }
func (*SetBackendAdminState) Type() CmdType { return CmdSetBackendAdminState }
func (*RemoveBackend) Type() CmdType        { return CmdRemoveBackend }
func (*ReportBackends) Type() CmdType       { return CmdReportBackends }
func (*AddFrontend) Type() CmdType          { return CmdAddFrontend }
func (*SetFrontendSettings) Type() CmdType  { return CmdSetFrontendSettings }
func (*RemoveFrontend) Type() CmdType       { return CmdRemoveFrontend }
func (*ClaimMeeting) Type() CmdType         { return CmdClaimMeeting }
func (*ReleaseMeetings) Type() CmdType      { return CmdReleaseMeetings }
func (*SetPeer) Type() CmdType              { return CmdSetPeer }
func (*RemovePeer) Type() CmdType           { return CmdRemovePeer }

func (c *AddBackend) encode(e *encoder) {
	e.str(c.ID)
	e.str(c.URL)
	e.str(c.Secret)
	e.bytes(c.Settings)
	e.varint(c.Now)
	e.boolean(c.IfAbsent)
}
func (c *AddBackend) decode(d *decoder) {
	c.ID, c.URL, c.Secret, c.Settings, c.Now, c.IfAbsent = d.str(), d.str(), d.str(), d.bytes(), d.varint(), d.boolean()
}

func (c *SetBackendSettings) encode(e *encoder) { e.str(c.ID); e.bytes(c.Patch) }
func (c *SetBackendSettings) decode(d *decoder) { c.ID, c.Patch = d.str(), d.bytes() }

func (c *SetBackendAdminState) encode(e *encoder) {
	e.str(c.ID)
	e.str(string(c.State))
	e.varint(c.Now)
}
func (c *SetBackendAdminState) decode(d *decoder) {
	c.ID, c.State, c.Now = d.str(), AdminState(d.str()), d.varint()
}

func (c *RemoveBackend) encode(e *encoder) { e.str(c.ID); e.boolean(c.Force); e.varint(c.Now) }
func (c *RemoveBackend) decode(d *decoder) { c.ID, c.Force, c.Now = d.str(), d.boolean(), d.varint() }

func (c *ReportBackends) encode(e *encoder) {
	e.varint(c.Now)
	e.uvarint(uint64(len(c.Reports)))
	for _, r := range c.Reports {
		e.str(r.ID)
		e.str(string(r.NodeState))
		e.varint(r.Meetings)
		e.varint(r.Attendees)
		e.varint(r.LatencyNs)
		e.str(r.Error)
	}
}
func (c *ReportBackends) decode(d *decoder) {
	c.Now = d.varint()
	n := d.count()
	c.Reports = make([]BackendReport, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Reports = append(c.Reports, BackendReport{
			ID: d.str(), NodeState: NodeState(d.str()), Meetings: d.varint(),
			Attendees: d.varint(), LatencyNs: d.varint(), Error: d.str(),
		})
	}
}

func (c *AddFrontend) encode(e *encoder) {
	e.str(c.Key)
	e.str(c.Secret)
	e.bytes(c.Settings)
	e.varint(c.Now)
}
func (c *AddFrontend) decode(d *decoder) {
	c.Key, c.Secret, c.Settings, c.Now = d.str(), d.str(), d.bytes(), d.varint()
}

func (c *SetFrontendSettings) encode(e *encoder) { e.str(c.Key); e.bytes(c.Patch) }
func (c *SetFrontendSettings) decode(d *decoder) { c.Key, c.Patch = d.str(), d.bytes() }

func (c *RemoveFrontend) encode(e *encoder) { e.str(c.Key) }
func (c *RemoveFrontend) decode(d *decoder) { c.Key = d.str() }

func (c *ClaimMeeting) encode(e *encoder) {
	e.str(c.InternalID)
	e.str(c.Frontend)
	e.str(c.MeetingID)
	e.str(c.BackendID)
	e.varint(c.Now)
}
func (c *ClaimMeeting) decode(d *decoder) {
	c.InternalID, c.Frontend, c.MeetingID, c.BackendID, c.Now = d.str(), d.str(), d.str(), d.str(), d.varint()
}

func (c *ReleaseMeetings) encode(e *encoder) {
	e.uvarint(uint64(len(c.Meetings)))
	for _, m := range c.Meetings {
		e.str(m.InternalID)
		e.str(m.BackendID)
	}
	if len(c.CreatedAt) > 0 { // a trailing field: absent, the bytes are those of before
		e.uvarint(uint64(len(c.CreatedAt)))
		for _, t := range c.CreatedAt {
			e.varint(t)
		}
	}
}
func (c *ReleaseMeetings) decode(d *decoder) {
	n := d.count()
	c.Meetings = make([]MeetingRef, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Meetings = append(c.Meetings, MeetingRef{InternalID: d.str(), BackendID: d.str()})
	}
	if d.more() {
		n := d.count()
		for i := uint64(0); i < n && d.err == nil; i++ {
			c.CreatedAt = append(c.CreatedAt, d.varint())
		}
	}
}

func (c *SetPeer) encode(e *encoder) {
	e.str(c.ID)
	e.str(c.RaftAddr)
	e.str(c.HTTPAddr)
	e.str(c.GossipAddr)
}
func (c *SetPeer) decode(d *decoder) {
	c.ID, c.RaftAddr, c.HTTPAddr, c.GossipAddr = d.str(), d.str(), d.str(), d.str()
}

func (c *RemovePeer) encode(e *encoder) { e.str(c.ID) }
func (c *RemovePeer) decode(d *decoder) { c.ID = d.str() }

// Encode renders a command as its type byte followed by its payload.
func Encode(c Command) []byte {
	e := encoder{b: make([]byte, 1, 64)}
	e.b[0] = byte(c.Type())
	c.encode(&e)
	return e.b
}

// ErrSkipped is returned by Decode for an unknown type flagged skippable.
var ErrSkipped = errors.New("fsm: unknown skippable command")

// UnknownCommandError is an encoded command of a type this release does
// not know, without FlagSkippable. Index is the log entry that held it (0
// when it was not read from the log).
type UnknownCommandError struct {
	Type  CmdType
	Index uint64
}

func (e *UnknownCommandError) Error() string {
	if e.Index == 0 {
		return fmt.Sprintf("fsm: unknown command type %d (0x%02x): this release does not know it", byte(e.Type), byte(e.Type))
	}
	return fmt.Sprintf("fsm: log entry %d holds command type %d (0x%02x), which this release does not know and may not skip: upgrade this peer",
		e.Index, byte(e.Type), byte(e.Type))
}

func newCommand(t CmdType) Command {
	switch t {
	case CmdAddBackend:
		return &AddBackend{}
	case CmdSetBackendSettings:
		return &SetBackendSettings{}
	case CmdSetBackendAdminState:
		return &SetBackendAdminState{}
	case CmdRemoveBackend:
		return &RemoveBackend{}
	case CmdReportBackends:
		return &ReportBackends{}
	case CmdAddFrontend:
		return &AddFrontend{}
	case CmdSetFrontendSettings:
		return &SetFrontendSettings{}
	case CmdRemoveFrontend:
		return &RemoveFrontend{}
	case CmdClaimMeeting:
		return &ClaimMeeting{}
	case CmdReleaseMeetings:
		return &ReleaseMeetings{}
	case CmdSetPeer:
		return &SetPeer{}
	case CmdRemovePeer:
		return &RemovePeer{}
	case CmdPutRecordings:
		return &PutRecordings{}
	case CmdDropRecordings:
		return &DropRecordings{}
	case CmdSetClusterKey:
		return &SetClusterKey{}
	case CmdMarkCentral:
		return &MarkCentral{}
	case CmdSetRecordingsPublished:
		return &SetRecordingsPublished{}
	case CmdSetMeetingParams:
		return &SetMeetingParams{}
	case CmdFailoverMeeting:
		return &FailoverMeeting{}
	case CmdMeetingRecreated:
		return &MeetingRecreated{}
	case CmdMarkMeetingsLost:
		return &MarkMeetingsLost{}
	case CmdReportStreams:
		return &ReportStreams{}
	}
	return nil
}

// Decode parses an encoded command. It never panics; an unknown type is an
// *UnknownCommandError, or ErrSkipped when the type is flagged skippable.
// Bytes after the fields this release knows are ignored (codec.go).
func Decode(b []byte) (Command, error) { return decodeKnown(b, nil) }

// decodeKnown is Decode with some types treated as unknown (WithoutCommands).
func decodeKnown(b []byte, unknown map[CmdType]bool) (Command, error) {
	if len(b) == 0 {
		return nil, errors.New("fsm: empty command")
	}
	t := CmdType(b[0])
	c := newCommand(t)
	if c == nil || unknown[t] {
		if t&FlagSkippable != 0 {
			return nil, ErrSkipped
		}
		return nil, &UnknownCommandError{Type: t}
	}
	d := decoder{b: b[1:]}
	c.decode(&d)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return c, nil
}
