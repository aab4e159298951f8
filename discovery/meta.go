package discovery

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"

	"github.com/conclave-lb/conclave/bbb"
)

// Role says what a gossip member is.
type Role string

const (
	RolePeer  Role = "peer"  // a conclaved peer
	RoleAgent Role = "agent" // a conclave-agent beside one BBB server
)

// MaxMetaSize is the largest encoded Meta memberlist accepts (it panics
// beyond it, so Conclave refuses first).
const MaxMetaSize = memberlist.MetaMaxSize

// Meta is what a member gossips about itself (memberlist NodeMeta). It
// must never carry a secret: every member of the gossip cluster reads it.
type Meta struct {
	Role       Role    `json:"role"`
	HTTPAddr   string  `json:"http_addr,omitempty"` // peers: their HTTP host:port
	APIURL     string  `json:"api_url,omitempty"`   // agents: their normalised BBB API URL
	Meetings   int     `json:"meetings"`
	Attendees  int     `json:"attendees"`
	Videos     int     `json:"videos"`
	Voice      int     `json:"voice,omitempty"` // voice participants (BBB's voiceParticipantCount)
	LoadFactor float64 `json:"load_factor"`
	BBBUp      bool    `json:"bbb_up"` // the agent reached its BBB API on the last poll
	Seq        uint64  `json:"seq"`    // increases with every update of this member

	// An agent's load report is signed (see SignMeta): Time is when it was
	// made (unix seconds), MAC a truncated HMAC-SHA256 over the report
	// under the agent's load key. The key itself never travels in gossip.
	Time int64  `json:"time,omitempty"`
	MAC  string `json:"mac,omitempty"`
}

// wireMeta is Meta on the wire: JSON with short keys, zero values left out.
type wireMeta struct {
	R  Role    `json:"r,omitempty"`
	H  string  `json:"h,omitempty"`
	U  string  `json:"u,omitempty"`
	M  int     `json:"m,omitempty"`
	A  int     `json:"a,omitempty"`
	V  int     `json:"v,omitempty"`
	VO int     `json:"vo,omitempty"`
	LF float64 `json:"lf,omitempty"`
	Up bool    `json:"up,omitempty"`
	S  uint64  `json:"s,omitempty"`
	T  int64   `json:"t,omitempty"`
	K  string  `json:"k,omitempty"`
}

// ErrMetaTooLarge is returned for a Meta whose encoding exceeds MaxMetaSize.
var ErrMetaTooLarge = errors.New("discovery: encoded meta exceeds 512 bytes")

// EncodeMeta encodes m for gossip, refusing an unknown role or an
// encoding over MaxMetaSize.
func EncodeMeta(m Meta) ([]byte, error) {
	if m.Role != RolePeer && m.Role != RoleAgent {
		return nil, fmt.Errorf("discovery: unknown role %q (want %q or %q)", m.Role, RolePeer, RoleAgent)
	}
	b, err := json.Marshal(wireMeta{
		R: m.Role, H: m.HTTPAddr, U: m.APIURL, M: m.Meetings, A: m.Attendees, V: m.Videos, VO: m.Voice,
		LF: m.LoadFactor, Up: m.BBBUp, S: m.Seq, T: m.Time, K: m.MAC,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: encode meta: %w", err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrMetaTooLarge, len(b))
	}
	return b, nil
}

// DecodeMeta decodes gossiped meta. An agent's API URL is normalised the
// way backends' URLs are, so Loads keys match backend URLs.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("discovery: empty meta")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{}, fmt.Errorf("discovery: decode meta: %w", err)
	}
	m := Meta{Role: w.R, HTTPAddr: w.H, APIURL: w.U, Meetings: w.M, Attendees: w.A, Videos: w.V, Voice: w.VO,
		LoadFactor: w.LF, BBBUp: w.Up, Seq: w.S, Time: w.T, MAC: w.K}
	if m.Role == RoleAgent && m.APIURL != "" {
		if u, err := bbb.NormalizeAPIURL(m.APIURL); err == nil {
			m.APIURL = u
		}
	}
	return m, nil
}

// ParseKey decodes a base64 gossip key (standard or URL alphabet, padding
// optional); it must be 16, 24 or 32 bytes (AES-128/192/256). The error
// never repeats the key.
func ParseKey(b64 string) ([]byte, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return nil, errors.New("gossip key is empty")
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("gossip key is not valid base64")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("gossip key decodes to %d bytes; want 16, 24 or 32 (e.g. openssl rand -base64 32)", len(key))
}
