package discovery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math"
	"time"
)

// Agents' load reports are authenticated. Anyone holding the gossip key
// (it is on every BBB server) can join the gossip cluster and advertise
// any meta, so a peer that verifies (Config.LoadKey set) takes a report
// for a BBB API URL only when it is signed with that URL's load key: an
// HMAC the agent got from a peer's admin API by showing an agent token for
// the URL's host:port (auth.AgentLoadKey). A report that fails is dropped
// and counted (RejectedReports); the member's last good report stands.

// DefaultLoadWindow is how far a signed report's time may be from the
// verifying peer's clock.
const DefaultLoadWindow = 5 * time.Minute

// macLen is how many bytes of the HMAC-SHA256 a report carries.
const macLen = 16

// Reasons a report is rejected (the label of the rejection counter).
const (
	RejectUnsigned  = "unsigned"      // no MAC at all
	RejectSignature = "bad_signature" // MAC does not verify for the URL's host:port
	RejectStale     = "stale"         // signed time outside the window
	RejectReplay    = "replay"        // an older (or another member's) report for the URL
	RejectNoKey     = "bad_url"       // no key can be derived for the URL
)

// RejectReasons lists every reason, for counters that start at zero.
var RejectReasons = []string{RejectUnsigned, RejectSignature, RejectStale, RejectReplay, RejectNoKey}

// metaMAC is the truncated HMAC-SHA256 of everything a report says except
// the MAC itself.
func metaMAC(m *Meta, key []byte) string {
	b := make([]byte, 0, 128)
	b = append(b, "conclave-load-v1\x00"...)
	b = append(append(b, m.Role...), 0)
	b = append(append(b, m.APIURL...), 0)
	b = append(append(b, m.HTTPAddr...), 0)
	b = binary.AppendVarint(b, int64(m.Meetings))
	b = binary.AppendVarint(b, int64(m.Attendees))
	b = binary.AppendVarint(b, int64(m.Videos))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.LoadFactor))
	if m.BBBUp {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendVarint(b, m.Time)
	if m.Voice != 0 { // added later: a report without voice signs as before
		b = append(b, 'v')
		b = binary.AppendVarint(b, int64(m.Voice))
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:macLen])
}

// SignMeta stamps m with the time t and signs it with key.
func SignMeta(m *Meta, key []byte, t time.Time) {
	m.Time = t.Unix()
	m.MAC = metaMAC(m, key)
}

// VerifyMeta reports whether m carries a valid MAC under key.
func VerifyMeta(m *Meta, key []byte) bool {
	if m.MAC == "" || len(key) == 0 {
		return false
	}
	return hmac.Equal([]byte(m.MAC), []byte(metaMAC(m, key)))
}

// sameContent compares two metas ignoring Seq, Time and MAC.
func sameContent(a, b Meta) bool {
	a.Seq, a.Time, a.MAC = 0, 0, ""
	b.Seq, b.Time, b.MAC = 0, 0, ""
	return a == b
}

// urlSeen is the newest accepted report for one API URL.
type urlSeen struct {
	seq    uint64
	member string
}

type verdict int

const (
	accept verdict = iota
	ignore         // the same member's own older report: not an attack, not applied
	reject
)

// admitLocked decides on an agent's report (n.mu held). On accept it
// records the report as the URL's newest. rejoined: the member was gone
// and is back (a restart, whose clock may have stepped back): its own
// lower Seq is then taken, if signed and fresh.
func (n *Node) admitLocked(member string, m *Meta, now time.Time, rejoined bool) (verdict, string) {
	if m.MAC == "" {
		return reject, RejectUnsigned
	}
	key := n.cfg.LoadKey(m.APIURL)
	if len(key) == 0 {
		return reject, RejectNoKey
	}
	if !VerifyMeta(m, key) {
		return reject, RejectSignature
	}
	if seen, ok := n.urlSeq[m.APIURL]; ok && !(rejoined && seen.member == member) {
		switch {
		case seen.member == member && m.Seq <= seen.seq:
			return ignore, ""
		case m.Seq < seen.seq || m.Seq == seen.seq && seen.member != member:
			return reject, RejectReplay
		}
	}
	if d := now.Sub(time.Unix(m.Time, 0)); d > n.window || d < -n.window {
		return reject, RejectStale
	}
	n.urlSeq[m.APIURL] = urlSeen{seq: m.Seq, member: member}
	return accept, ""
}

// rejectedLocked counts a rejected report and says whether to log it (at
// most once a minute per member). n.mu held.
func (n *Node) rejectedLocked(member, reason string, now time.Time) bool {
	if c := n.rejected[reason]; c != nil {
		c.Add(1)
	}
	if last, ok := n.warned[member]; ok && now.Sub(last) < time.Minute {
		return false
	}
	n.warned[member] = now
	return true
}

// RejectedReports counts the agents' load reports this member dropped, by
// reason (all zero when it does not verify).
func (n *Node) RejectedReports() map[string]uint64 {
	out := make(map[string]uint64, len(n.rejected))
	for r, c := range n.rejected {
		out[r] = c.Load()
	}
	return out
}

// Verifying reports whether this member checks agents' signatures.
func (n *Node) Verifying() bool { return n.cfg.LoadKey != nil }

// SetLoadKey makes this member (an agent) sign every meta it publishes
// from now on with key, and republishes its current meta signed at once.
// A nil key turns signing off.
func (n *Node) SetLoadKey(key []byte) {
	n.metaMu.Lock()
	n.signKey = append([]byte(nil), key...)
	if key == nil {
		n.signKey = nil
	}
	m := n.meta
	n.metaMu.Unlock()
	_ = n.update(m, true)
}
