package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// FSM guards the State for concurrent readers and the single Raft applier.
type FSM struct {
	mu      sync.RWMutex
	st      *State
	applied atomic.Uint64
	// frontendList caches Frontends() for the single-tenant route, which
	// tries every frontend's secret on each request.
	frontendList atomic.Pointer[[]Frontend]
	// unknown: types this FSM treats as unknown (WithoutCommands).
	unknown map[CmdType]bool
	// halted is set by the first log entry of a type this release does not
	// know and may not skip; nothing is applied after it.
	halted atomic.Pointer[UnknownCommandError]
}

// Option configures an FSM.
type Option func(*FSM)

// WithoutCommands makes the FSM not know the given command types, as a
// release before them: for mixed-version tests, never in production.
func WithoutCommands(types ...CmdType) Option {
	return func(f *FSM) {
		if f.unknown == nil {
			f.unknown = map[CmdType]bool{}
		}
		for _, t := range types {
			f.unknown[t] = true
		}
	}
}

// New returns an empty FSM.
func New(opts ...Option) *FSM {
	f := &FSM{st: newState()}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Apply decodes and applies one log entry. Malformed input is an error in
// the result, never a panic; the state is unchanged then.
//
// A command of a type this release does not know:
//   - with FlagSkippable, is skipped (Result.Skipped): the applied index
//     moves on, the state does not change;
//   - without it, halts the FSM: the result is an error, the applied index
//     stays before the entry, and every later Apply is refused the same way.
//     Halted returns the *UnknownCommandError (naming the type and the
//     index); the peer must stop and be upgraded, never go on with a state
//     that differs from its neighbours'. Snapshots must not be taken once
//     halted (raftnode refuses them), so the entry is replayed after the
//     upgrade.
func (f *FSM) Apply(index uint64, data []byte) *Result {
	if h := f.halted.Load(); h != nil {
		return fail(&Error{Code: CodeUnknownCommand, Msg: h.Error()})
	}
	c, err := decodeKnown(data, f.unknown)
	if errors.Is(err, ErrSkipped) {
		f.setApplied(index)
		return &Result{Skipped: true}
	}
	var uc *UnknownCommandError
	if errors.As(err, &uc) {
		h := &UnknownCommandError{Type: uc.Type, Index: index}
		f.halted.CompareAndSwap(nil, h)
		return fail(&Error{Code: CodeUnknownCommand, Msg: h.Error()})
	}
	if err != nil {
		f.setApplied(index)
		return fail(invalid("%v", err))
	}
	return f.ApplyCommand(index, c)
}

// Halted returns the log entry that stopped this FSM (a command type this
// release does not know and may not skip), or nil.
func (f *FSM) Halted() *UnknownCommandError { return f.halted.Load() }

// Knows reports whether this FSM applies commands of type t.
func (f *FSM) Knows(t CmdType) bool { return newCommand(t) != nil && !f.unknown[t] }

// ApplyCommand applies a decoded command.
func (f *FSM) ApplyCommand(index uint64, c Command) *Result {
	f.mu.Lock()
	r := f.st.apply(c)
	if isFrontendCmd(c.Type()) {
		f.frontendList.Store(nil)
	}
	f.applied.Store(index)
	f.mu.Unlock()
	return r
}

func isFrontendCmd(t CmdType) bool {
	return t == CmdAddFrontend || t == CmdSetFrontendSettings || t == CmdRemoveFrontend
}

// AppliedIndex is the Raft index of the last command entry applied. Raft's
// own no-op and configuration entries never reach the FSM, so this is the
// index peers compare for read-your-writes: equal on every peer that has
// applied the same commands, and carried in snapshots.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

func (f *FSM) setApplied(i uint64) {
	f.mu.Lock()
	f.applied.Store(i)
	f.mu.Unlock()
}

// Backend returns a backend by ID.
func (f *FSM) Backend(id string) (Backend, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.st.Backends[id]
	if !ok {
		return Backend{}, false
	}
	return *b, true
}

// Backends returns every backend, sorted by ID.
func (f *FSM) Backends() []Backend {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Backend, 0, len(f.st.Backends))
	for _, k := range sortedKeys(f.st.Backends) {
		out = append(out, *f.st.Backends[k])
	}
	return out
}

// FindBackend resolves an operator's name for a backend: its ID, its full
// API URL, or its URL's host part.
func (f *FSM) FindBackend(ref string) (Backend, bool) {
	if b, ok := f.Backend(ref); ok {
		return b, true
	}
	norm, _ := NormalizeBackendURL(ref)
	for _, b := range f.Backends() {
		if b.URL == ref || b.URL == norm {
			return b, true
		}
		if u, err := url.Parse(b.URL); err == nil && (u.Host == ref || u.Hostname() == ref) {
			return b, true
		}
	}
	return Backend{}, false
}

// EachBackend calls fn for every backend, in no particular order, with the
// number of meetings bound to it. It reads the state in place under the read
// lock, copying nothing: placement runs on every create, over every backend.
// fn must not keep b nor call into the FSM.
func (f *FSM) EachBackend(fn func(b *Backend, bound int)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for id, b := range f.st.Backends {
		fn(b, len(f.st.onBackend[id]))
	}
}

// MeetingCount returns the number of meetings bound to one backend.
func (f *FSM) MeetingCount(backendID string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.st.onBackend[backendID])
}

// MeetingCounts returns the number of meetings bound to each backend.
func (f *FSM) MeetingCounts() map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int, len(f.st.onBackend))
	for k, v := range f.st.onBackend {
		out[k] = len(v)
	}
	return out
}

// Frontend returns a frontend by key.
func (f *FSM) Frontend(key string) (Frontend, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fe, ok := f.st.Frontends[key]
	if !ok {
		return Frontend{}, false
	}
	return *fe, true
}

// Frontends returns every frontend, sorted by key. The slice is shared:
// callers must not modify it.
func (f *FSM) Frontends() []Frontend {
	if p := f.frontendList.Load(); p != nil {
		return *p
	}
	f.mu.RLock()
	out := make([]Frontend, 0, len(f.st.Frontends))
	for _, k := range sortedKeys(f.st.Frontends) {
		out = append(out, *f.st.Frontends[k])
	}
	f.mu.RUnlock()
	f.frontendList.Store(&out)
	return out
}

// Meeting returns a meeting by its internal ID.
func (f *FSM) Meeting(internalID string) (Meeting, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.st.Meetings[internalID]
	if !ok {
		return Meeting{}, false
	}
	return *m, true
}

// Meetings returns the meetings of one frontend (all when key is empty),
// sorted by internal ID.
func (f *FSM) Meetings(frontend string) []Meeting {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []Meeting
	for _, k := range sortedKeys(f.st.Meetings) {
		if m := f.st.Meetings[k]; frontend == "" || m.Frontend == frontend {
			out = append(out, *m)
		}
	}
	return out
}

// EachMeetingOf calls fn with every meeting of a frontend, in no order,
// without copying them (getMeetings reads them on every call). fn runs
// under the state's read lock: it must not call the FSM, nor keep m.
func (f *FSM) EachMeetingOf(frontend string, fn func(m *Meeting)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, m := range f.st.Meetings {
		if m.Frontend == frontend {
			fn(m)
		}
	}
}

// MeetingsOn returns the meetings bound to one backend.
func (f *FSM) MeetingsOn(backendID string) []Meeting {
	f.mu.RLock()
	defer f.mu.RUnlock()
	on := f.st.onBackend[backendID]
	if len(on) == 0 {
		return nil
	}
	out := make([]Meeting, 0, len(on))
	for _, m := range on {
		out = append(out, *m)
	}
	return out
}

// Peers returns the peer records, sorted by ID.
func (f *FSM) Peers() []Peer {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Peer, 0, len(f.st.Peers))
	for _, k := range sortedKeys(f.st.Peers) {
		out = append(out, *f.st.Peers[k])
	}
	return out
}

// Peer returns one peer record.
func (f *FSM) Peer(id string) (Peer, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.st.Peers[id]
	if !ok {
		return Peer{}, false
	}
	return *p, true
}

// Snapshot is a point-in-time copy of the state. Taking one copies only the
// maps of pointers (values are immutable), so Raft's snapshot call stays cheap;
// the encoding happens in Persist, off the apply path.
type Snapshot struct {
	applied    uint64
	backends   map[string]*Backend
	frontends  map[string]*Frontend
	meetings   map[string]*Meeting
	peers      map[string]*Peer
	recordings map[string]*Recording
	clusterKey []byte
}

// Snapshot captures the state.
func (f *FSM) Snapshot() *Snapshot {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &Snapshot{
		applied:    f.applied.Load(),
		backends:   cloneMap(f.st.Backends),
		frontends:  cloneMap(f.st.Frontends),
		meetings:   cloneMap(f.st.Meetings),
		peers:      cloneMap(f.st.Peers),
		recordings: cloneMap(f.st.Recordings),
		clusterKey: f.st.ClusterKey, // never changed in place once set
	}
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// snapshotHeader starts every snapshot; Version changes when the format does.
type snapshotHeader struct {
	Version   int    `json:"version"`
	Applied   uint64 `json:"applied"`
	Backends  int    `json:"backends"`
	Frontends int    `json:"frontends"`
	Meetings  int    `json:"meetings"`
	Peers     int    `json:"peers"`
	// Recordings came later: absent (0) in older snapshots.
	Recordings int `json:"recordings,omitempty"`
	// ClusterKey came later too (base64 in JSON; absent before one is set).
	ClusterKey []byte `json:"cluster_key,omitempty"`
}

// snapshotVersion is the format this release writes. Restore reads every
// version from 1 up to it (a newer peer reads an older snapshot) and
// refuses a newer one loudly. Fields added to records without a version
// change must be optional (omitempty, absent = zero), as Recordings and
// ClusterKey in the header were; testdata/snapshot-v1.jsonl must keep
// restoring (TestGoldenSnapshot).
const snapshotVersion = 1

// ErrNewerSnapshot: Restore met a snapshot format this release cannot read.
var ErrNewerSnapshot = errors.New("fsm: snapshot from a newer release")

// WriteTo streams the snapshot as JSON lines: a header with counts, then
// one object per record in sorted order (deterministic bytes for equal states).
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10)}
	enc := json.NewEncoder(cw)
	hdr := snapshotHeader{snapshotVersion, s.applied, len(s.backends), len(s.frontends), len(s.meetings), len(s.peers), len(s.recordings), s.clusterKey}
	if err := enc.Encode(hdr); err != nil {
		return cw.n, err
	}
	if err := encodeSorted(enc, s.backends); err != nil {
		return cw.n, err
	}
	if err := encodeSorted(enc, s.frontends); err != nil {
		return cw.n, err
	}
	if err := encodeSorted(enc, s.meetings); err != nil {
		return cw.n, err
	}
	if err := encodeSorted(enc, s.peers); err != nil {
		return cw.n, err
	}
	if err := encodeSorted(enc, s.recordings); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

func encodeSorted[V any](enc *json.Encoder, m map[string]V) error {
	for _, k := range sortedKeys(m) {
		if err := enc.Encode(m[k]); err != nil {
			return err
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// maxSnapshotRecords bounds what a (corrupt) header can make us allocate.
const maxSnapshotRecords = 50_000_000

// Restore replaces the state with one read from a snapshot. The new state is
// built aside and swapped in under the lock, so readers never see half.
func (f *FSM) Restore(r io.Reader) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var hdr snapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return fmt.Errorf("fsm: snapshot header: %w", err)
	}
	if hdr.Version > snapshotVersion {
		return fmt.Errorf("%w: format version %d was written by a newer release (this one reads versions 1 to %d): upgrade this peer", ErrNewerSnapshot, hdr.Version, snapshotVersion)
	}
	if hdr.Version < 1 {
		return fmt.Errorf("fsm: snapshot format version %d: not a Conclave snapshot", hdr.Version)
	}
	for _, n := range []int{hdr.Backends, hdr.Frontends, hdr.Meetings, hdr.Peers, hdr.Recordings} {
		if n < 0 || n > maxSnapshotRecords {
			return fmt.Errorf("fsm: snapshot header has bad count %d", n)
		}
	}
	st := newState()
	if len(hdr.ClusterKey) == ClusterKeyLen {
		st.ClusterKey = hdr.ClusterKey
	}
	if err := decodeN(dec, hdr.Backends, func(b *Backend) string { return b.ID }, st.Backends); err != nil {
		return err
	}
	if err := decodeN(dec, hdr.Frontends, func(x *Frontend) string { return x.Key }, st.Frontends); err != nil {
		return err
	}
	meetings := map[string]*Meeting{}
	if err := decodeN(dec, hdr.Meetings, func(m *Meeting) string { return m.InternalID }, meetings); err != nil {
		return err
	}
	for _, m := range meetings {
		st.putMeeting(m)
	}
	if err := decodeN(dec, hdr.Peers, func(p *Peer) string { return p.ID }, st.Peers); err != nil {
		return err
	}
	if err := decodeN(dec, hdr.Recordings, func(r *Recording) string { return r.RecordID }, st.Recordings); err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.applied.Store(hdr.Applied)
	f.mu.Unlock()
	f.frontendList.Store(nil)
	return nil
}

func decodeN[V any](dec *json.Decoder, n int, key func(*V) string, into map[string]*V) error {
	for i := 0; i < n; i++ {
		v := new(V)
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("fsm: snapshot record: %w", err)
		}
		into[key(v)] = v
	}
	return nil
}

// Dump renders the whole state canonically (for tests and debugging).
func (f *FSM) Dump() string {
	var b strings.Builder
	f.Snapshot().WriteTo(&b)
	return b.String()
}
