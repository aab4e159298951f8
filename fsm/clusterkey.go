package fsm

// The cluster key is a secret of the cluster itself, known to no tenant,
// operator or agent: the gateway signs callback relay URLs with it, so a
// tenant (who knows its own secret) cannot mint one. The leader draws it
// at random once and commits it; the FSM only stores what the command
// carries (no randomness here), and the first key committed wins. It
// travels in snapshots but is never shown by the admin API or logged.

// ClusterKeyLen is the size of the cluster key.
const ClusterKeyLen = 32

// SetClusterKey stores the cluster key unless one is stored already.
type SetClusterKey struct{ Key []byte }

// CmdSetClusterKey is additive: older peers may skip it.
const CmdSetClusterKey = FlagSkippable | 15

func (*SetClusterKey) Type() CmdType { return CmdSetClusterKey }

func (c *SetClusterKey) encode(e *encoder) { e.bytes(c.Key) }
func (c *SetClusterKey) decode(d *decoder) { c.Key = d.bytes() }

func (s *State) setClusterKey(c *SetClusterKey) *Result {
	if len(c.Key) != ClusterKeyLen {
		return fail(invalid("a cluster key is %d bytes, not %d", ClusterKeyLen, len(c.Key)))
	}
	if s.ClusterKey == nil {
		s.ClusterKey = append([]byte(nil), c.Key...)
	}
	return &Result{}
}

// ClusterKey is the stored cluster key (a copy), or nil before one is set.
func (f *FSM) ClusterKey() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.ClusterKey == nil {
		return nil
	}
	return append([]byte(nil), f.st.ClusterKey...)
}
