package fsm

// Transparent failover. Each meeting keeps the parameters of its create
// (SetMeetingParams), so when its node dies (NodeState error, or gone) or
// comes back without it (MarkMeetingsLost), the next join can create it
// again, with the same parameters, on a live node. Many joins on many peers
// race for that: FailoverMeeting moves the binding only away from a dead or
// lost binding, so the first claim in the log wins and the others see the
// new binding, marked Recreating until the winner commits MeetingRecreated.
// A winner that dies leaves Recreating set; a claim made RecreateStale
// later (by the command's clock) may take over.
//
// All four commands are additive and skippable: an older peer that skips
// them keeps today's behaviour (the binding stays on the dead node).

import "time"

const (
	CmdSetMeetingParams = FlagSkippable | 16
	CmdFailoverMeeting  = FlagSkippable | 17
	CmdMeetingRecreated = FlagSkippable | 18
	CmdMarkMeetingsLost = FlagSkippable | 19
)

// Bounds on what a meeting keeps of its create.
const (
	MaxCreateQuery  = 16 << 10 // the create's query, as the backend gets it
	MaxCreateSlides = 64 << 10 // an XML slides body
	maxPasswordLen  = 256
	maxContentType  = 128
)

// RecreateStale is how long (by the commands' clocks) a re-creation may stay
// unconfirmed before another claim may take it over.
const RecreateStale = int64(10 * time.Second)

// CreateParams is what a meeting keeps of its create, to create it again.
type CreateParams struct {
	// Query is the create's query as the backend received it (scoped
	// meeting ID, no checksum), with the client's own callback URLs (relays
	// are signed anew for the node that re-creates it).
	Query string `json:"query"`
	// Slides is the create's XML body when it fit (SlidesType its
	// Content-Type); SlidesLost when there was one that did not.
	Slides     string `json:"slides,omitempty"`
	SlidesType string `json:"slides_type,omitempty"`
	SlidesLost bool   `json:"slides_lost,omitempty"`
	// ClientBridge: the client chose the voice bridge (kept in Query);
	// otherwise the state's is used on each node.
	ClientBridge bool `json:"client_bridge,omitempty"`
	// The passwords the node answered (it draws them when the client gave
	// none): a re-created meeting keeps them, and join checks them.
	AttendeePW  string `json:"attendee_pw,omitempty"`
	ModeratorPW string `json:"moderator_pw,omitempty"`
	// CreateTime is the node's createTime of the first create, the one the
	// client saw.
	CreateTime int64 `json:"create_time,omitempty"`
}

func (p *CreateParams) valid() bool {
	return len(p.Query) <= MaxCreateQuery && len(p.Slides) <= MaxCreateSlides && len(p.SlidesType) <= maxContentType &&
		len(p.AttendeePW) <= maxPasswordLen && len(p.ModeratorPW) <= maxPasswordLen
}

// Size is the bytes a CreateParams holds (for tests and metrics).
func (p *CreateParams) Size() int {
	if p == nil {
		return 0
	}
	return len(p.Query) + len(p.Slides) + len(p.SlidesType) + len(p.AttendeePW) + len(p.ModeratorPW)
}

// SetMeetingParams records a meeting's create parameters, if the meeting is
// still bound to BackendID.
type SetMeetingParams struct {
	InternalID, BackendID string
	Params                CreateParams
}

// FailoverMeeting moves a meeting from FromBackend, where it is dead or lost
// (or its re-creation went stale, or Token's own re-creation failed), to
// ToBackend, and marks it Recreating under Token.
type FailoverMeeting struct {
	InternalID, FromBackend, ToBackend, Token string
	Now                                       int64
}

// MeetingRecreated confirms that the meeting runs on BackendID again.
type MeetingRecreated struct {
	InternalID, BackendID, Token string
	Now                          int64
}

// MarkMeetingsLost records meetings that their backend, alive, no longer
// lists (it restarted empty): a join creates them again.
type MarkMeetingsLost struct {
	Meetings []MeetingRef
	Now      int64
}

func (*SetMeetingParams) Type() CmdType { return CmdSetMeetingParams }
func (*FailoverMeeting) Type() CmdType  { return CmdFailoverMeeting }
func (*MeetingRecreated) Type() CmdType { return CmdMeetingRecreated }
func (*MarkMeetingsLost) Type() CmdType { return CmdMarkMeetingsLost }

func (c *SetMeetingParams) encode(e *encoder) {
	e.str(c.InternalID)
	e.str(c.BackendID)
	p := &c.Params
	e.str(p.Query)
	e.str(p.Slides)
	e.str(p.SlidesType)
	e.boolean(p.SlidesLost)
	e.boolean(p.ClientBridge)
	e.str(p.AttendeePW)
	e.str(p.ModeratorPW)
	e.varint(p.CreateTime)
}
func (c *SetMeetingParams) decode(d *decoder) {
	c.InternalID, c.BackendID = d.str(), d.str()
	p := &c.Params
	p.Query, p.Slides, p.SlidesType = d.str(), d.str(), d.str()
	p.SlidesLost, p.ClientBridge = d.boolean(), d.boolean()
	p.AttendeePW, p.ModeratorPW, p.CreateTime = d.str(), d.str(), d.varint()
}

func (c *FailoverMeeting) encode(e *encoder) {
	e.str(c.InternalID)
	e.str(c.FromBackend)
	e.str(c.ToBackend)
	e.str(c.Token)
	e.varint(c.Now)
}
func (c *FailoverMeeting) decode(d *decoder) {
	c.InternalID, c.FromBackend, c.ToBackend, c.Token, c.Now = d.str(), d.str(), d.str(), d.str(), d.varint()
}

func (c *MeetingRecreated) encode(e *encoder) {
	e.str(c.InternalID)
	e.str(c.BackendID)
	e.str(c.Token)
	e.varint(c.Now)
}
func (c *MeetingRecreated) decode(d *decoder) {
	c.InternalID, c.BackendID, c.Token, c.Now = d.str(), d.str(), d.str(), d.varint()
}

func (c *MarkMeetingsLost) encode(e *encoder) {
	e.varint(c.Now)
	e.uvarint(uint64(len(c.Meetings)))
	for _, m := range c.Meetings {
		e.str(m.InternalID)
		e.str(m.BackendID)
	}
}
func (c *MarkMeetingsLost) decode(d *decoder) {
	c.Now = d.varint()
	n := d.count()
	c.Meetings = make([]MeetingRef, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Meetings = append(c.Meetings, MeetingRef{InternalID: d.str(), BackendID: d.str()})
	}
}

func (s *State) setMeetingParams(c *SetMeetingParams) *Result {
	m, ok := s.Meetings[c.InternalID]
	if !ok || m.BackendID != c.BackendID {
		return fail(conflict("meeting %s is not bound to %s", c.InternalID, c.BackendID))
	}
	if !c.Params.valid() {
		return fail(invalid("create parameters over their bounds (query %d bytes, slides %d bytes)", MaxCreateQuery, MaxCreateSlides))
	}
	n := *m
	p := c.Params
	if m.Create != nil && m.Create.CreateTime != 0 {
		p.CreateTime = m.Create.CreateTime // the first the client saw
	}
	n.Create = &p
	n.Lost, n.LostAt = false, 0 // a create just succeeded there
	s.Meetings[n.InternalID] = &n
	s.onBackend[n.BackendID][n.InternalID] = &n
	return &Result{Meeting: &n}
}

// Dead reports whether a meeting's binding may be taken over by a
// failover claim made at now: its backend is gone or in error, it is lost,
// or its re-creation went stale.
func (s *State) dead(m *Meeting, now int64) bool {
	b, ok := s.Backends[m.BackendID]
	return !ok || b.NodeState == NodeError || m.Lost || (m.Recreating != 0 && now-m.Recreating >= RecreateStale)
}

func (s *State) failoverMeeting(c *FailoverMeeting) *Result {
	m, ok := s.Meetings[c.InternalID]
	if !ok {
		return fail(notFound("no meeting %s", c.InternalID))
	}
	if c.Token == "" || len(c.Token) > maxIDLen {
		return fail(invalid("a failover claim needs a token of 1 to %d characters", maxIDLen))
	}
	own := m.Recreating != 0 && m.RecreateToken == c.Token
	if m.BackendID != c.FromBackend || !(own || s.dead(m, c.Now)) {
		return &Result{Meeting: m} // lost the race, or nothing to do: the binding stands
	}
	b, ok := s.Backends[c.ToBackend]
	if !ok {
		return fail(conflict("backend %s is gone", c.ToBackend))
	}
	if !b.Placeable() {
		return fail(conflict("backend %s takes no new meetings (admin %s, node %s)", b.ID, b.AdminState, b.NodeState))
	}
	previous := m.BackendID
	s.dropMeeting(c.InternalID)
	n := *m
	n.BackendID = b.ID
	n.VoiceBridge = s.allocBridge(b.ID, c.InternalID)
	n.Lost, n.LostAt = false, 0
	n.Recreating, n.RecreateToken = c.Now, c.Token
	s.putMeeting(&n)
	return &Result{Meeting: &n, Created: true, PreviousBackend: previous}
}

func (s *State) meetingRecreated(c *MeetingRecreated) *Result {
	m, ok := s.Meetings[c.InternalID]
	if !ok || m.BackendID != c.BackendID || m.Recreating == 0 || m.RecreateToken != c.Token {
		return &Result{}
	}
	n := *m
	n.Recreating, n.RecreateToken = 0, ""
	n.RecreatedAt = c.Now
	n.Recreations++
	s.Meetings[n.InternalID] = &n
	s.onBackend[n.BackendID][n.InternalID] = &n
	return &Result{Meeting: &n}
}

func (s *State) markMeetingsLost(c *MarkMeetingsLost) *Result {
	for _, ref := range c.Meetings {
		m, ok := s.Meetings[ref.InternalID]
		if !ok || m.BackendID != ref.BackendID || m.Lost || m.Recreating != 0 {
			continue
		}
		n := *m
		n.Lost, n.LostAt = true, c.Now
		s.Meetings[n.InternalID] = &n
		s.onBackend[n.BackendID][n.InternalID] = &n
	}
	return &Result{}
}
