package central

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// Protected recordings (BBB's protect=true on create, or a frontend's
// protect_recordings setting) play only through a link that getRecordings
// hands out: it carries an expiry and an HMAC of the recording ID and that
// expiry under a key derived from the cluster key, which no tenant, agent
// or operator knows. The first request with a valid link sets a cookie for
// that recording alone (the player then fetches its other files by
// relative URLs, without the query); an altered or expired link, or none,
// gets 403.

// TokenParam is the playback link's query parameter.
const TokenParam = "playback_token"

// cookiePrefix names the per-recording cookie.
const cookiePrefix = "conclave_playback_"

// Protected reports whether a recording plays only through signed links.
func Protected(rec *fsm.Recording, fe *fsm.Frontend) bool {
	return strings.Contains(rec.XML, "<protected>true</protected>") || (fe != nil && fe.Settings.ProtectRecordings)
}

// linkKey derives the playback links' key from the cluster key, so a
// signature made for another purpose (callback relays) never passes here.
func linkKey(clusterKey []byte) []byte {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte("conclave playback links v1"))
	return m.Sum(nil)
}

func (c *Central) sign(recordID string, exp int64) (string, bool) {
	k := c.cluster.FSM().ClusterKey()
	if k == nil {
		return "", false
	}
	m := hmac.New(sha256.New, linkKey(k))
	m.Write([]byte(recordID + "\n" + strconv.FormatInt(exp, 10)))
	return strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), true
}

// token mints a link token for recordID, valid LinkTTL from now.
func (c *Central) token(recordID string) (string, bool) {
	return c.sign(recordID, c.cfg.Now().Add(c.cfg.LinkTTL).Unix())
}

// validToken checks a token for recordID: well formed, signed by this
// cluster, not expired. It returns the expiry.
func (c *Central) validToken(recordID, tok string) (time.Time, bool) {
	expS, _, ok := strings.Cut(tok, ".")
	exp, err := strconv.ParseInt(expS, 10, 64)
	if !ok || err != nil || len(tok) > 128 {
		return time.Time{}, false
	}
	want, ok := c.sign(recordID, exp)
	if !ok || !hmac.Equal([]byte(want), []byte(tok)) {
		return time.Time{}, false
	}
	at := time.Unix(exp, 0)
	return at, c.cfg.Now().Before(at)
}

// PlaybackXML is rec's <recording> element as a client sees it: each
// central format's URLs (the playback URL and the preview images) moved
// from the node onto base, the cluster's own scheme://host, and the
// playback URL signed when the recording is protected. Formats still only
// on their node keep the node's URLs.
func (c *Central) PlaybackXML(rec *fsm.Recording, fe *fsm.Frontend, base string) string {
	if !c.Enabled() || len(rec.Central) == 0 || base == "" {
		return rec.XML
	}
	xml := rec.XML
	var tok string
	if Protected(rec, fe) {
		t, ok := c.token(rec.RecordID)
		if !ok {
			return xml // no cluster key yet: the node's URLs, as before
		}
		tok = t
	}
	var out strings.Builder
	for {
		before, block, rest, ok := nextFormat(xml)
		if !ok {
			break
		}
		out.WriteString(before)
		out.WriteString(c.rewriteFormat(rec, block, base, tok))
		xml = rest
	}
	out.WriteString(xml)
	return out.String()
}

// LinkPrefix is the route of protected recordings' links:
// <LinkPrefix><recordID>/<format>?playback_token=… checks the token, sets
// the recording's cookie and redirects to the format's playback URL on the
// same host. The link cannot be the playback URL itself: the presentation
// player is a static page the operator's proxy serves, and the player's
// files are fetched without the query.
const LinkPrefix = "/conclave/playback/"

// rewriteFormat rewrites one <format> block of a central recording.
func (c *Central) rewriteFormat(rec *fsm.Recording, block, base, tok string) string {
	format := elementText(block, "type")
	if _, ok := rec.CentralFormat(format); !ok {
		return block
	}
	u := elementText(block, "url")
	origin := originOf(u)
	if origin == "" {
		return block
	}
	block = strings.ReplaceAll(block, origin+"/", base+"/")
	if tok != "" {
		newURL := strings.Replace(u, origin, base, 1)
		link := base + LinkPrefix + rec.RecordID + "/" + format + "?" + TokenParam + "=" + tok
		block = strings.Replace(block, "<url>"+newURL+"</url>", "<url>"+link+"</url>", 1)
	}
	return block
}

// playbackURL is a central format's playback URL on base, from the
// recording's XML.
func playbackURL(rec *fsm.Recording, format, base string) (string, bool) {
	for xml := rec.XML; ; {
		_, block, rest, ok := nextFormat(xml)
		if !ok {
			return "", false
		}
		xml = rest
		if elementText(block, "type") != format {
			continue
		}
		u := elementText(block, "url")
		origin := originOf(u)
		if origin == "" {
			return "", false
		}
		return base + strings.ReplaceAll(u[len(origin):], "&amp;", "&"), true
	}
}

// nextFormat splits xml at its next <format>…</format> block: the text
// before it, the block, and the rest (false when there is none).
func nextFormat(xml string) (before, block, rest string, ok bool) {
	i := strings.Index(xml, "<format>")
	if i < 0 {
		return "", "", "", false
	}
	j := strings.Index(xml[i:], "</format>")
	if j < 0 {
		return "", "", "", false
	}
	j += i + len("</format>")
	return xml[:i], xml[i:j], xml[j:], true
}

// elementText is the text of the first <name>…</name> in s.
func elementText(s, name string) string {
	i := strings.Index(s, "<"+name+">")
	if i < 0 {
		return ""
	}
	s = s[i+len(name)+2:]
	j := strings.Index(s, "</"+name+">")
	if j < 0 {
		return ""
	}
	return strings.TrimSpace(s[:j])
}

// originOf is the scheme://host[:port] of an absolute http(s) URL.
func originOf(u string) string {
	rest, ok := strings.CutPrefix(u, "https://")
	scheme := "https://"
	if !ok {
		if rest, ok = strings.CutPrefix(u, "http://"); !ok {
			return ""
		}
		scheme = "http://"
	}
	host, _, _ := strings.Cut(rest, "/")
	if host == "" {
		return ""
	}
	return scheme + host
}
