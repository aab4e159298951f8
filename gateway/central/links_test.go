package central

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/recstore"
)

type keyCluster struct{ f *fsm.FSM }

func (k keyCluster) FSM() *fsm.FSM { return k.f }
func (k keyCluster) Apply(_ context.Context, c fsm.Command) (*fsm.Result, error) {
	return k.f.Apply(1, fsm.Encode(c)), nil
}
func (keyCluster) ConsistentRead(context.Context) error { return nil }

func newKeyed(t *testing.T, key byte, now *time.Time) *Central {
	f := fsm.New()
	f.Apply(1, fsm.Encode(&fsm.SetClusterKey{Key: bytes.Repeat([]byte{key}, fsm.ClusterKeyLen)}))
	return New(Config{LinkTTL: time.Hour, Now: func() time.Time { return *now }}, keyCluster{f}, nil)
}

// A link is bound to its recording, its expiry and the cluster's key.
func TestPlaybackLinksExpireAndBindTheirRecording(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := newKeyed(t, 1, &now)
	tok, ok := c.token("rec-a")
	if !ok {
		t.Fatal("no token with a cluster key")
	}
	if _, ok := c.validToken("rec-a", tok); !ok {
		t.Fatal("a fresh link is refused")
	}
	if _, ok := c.validToken("rec-b", tok); ok {
		t.Fatal("a link plays another recording")
	}
	exp, sig, _ := strings.Cut(tok, ".")
	if _, ok := c.validToken("rec-a", exp+"1."+sig); ok {
		t.Fatal("a link with a changed expiry is accepted")
	}
	if _, ok := c.validToken("rec-a", "garbage"); ok {
		t.Fatal("garbage is accepted")
	}
	other := newKeyed(t, 2, &now)
	if _, ok := other.validToken("rec-a", tok); ok {
		t.Fatal("another cluster's link is accepted")
	}
	now = now.Add(time.Hour + time.Second)
	if _, ok := c.validToken("rec-a", tok); ok {
		t.Fatal("an expired link is accepted")
	}
}

// getRecordings' XML: a central format's URLs move to the cluster's name
// (playback and preview images), others stay on their node, and a
// protected recording's playback URL is signed.
func TestPlaybackXMLMovesOnlyCentralFormats(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := newKeyed(t, 1, &now)
	c.store = fakeEnabled{}
	rec := fsm.Recording{RecordID: "r1", Central: []fsm.CentralCopy{{Format: "video"}}, XML: "<recording><recordID>r1</recordID><playback>" +
		"<format><type>presentation</type><url>https://node1.example.org/playback/presentation/2.3/r1</url></format>" +
		"<format><type>video</type><url>https://node1.example.org/playback/video/r1/</url><preview><images><image>https://node1.example.org/video/r1/t.png</image></images></preview></format>" +
		"</playback></recording>"}
	out := c.PlaybackXML(&rec, nil, "https://bbb.example.org")
	for _, want := range []string{
		"<url>https://node1.example.org/playback/presentation/2.3/r1</url>",
		"<url>https://bbb.example.org/playback/video/r1/</url>",
		"<image>https://bbb.example.org/video/r1/t.png</image>",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %s in %s", want, out)
		}
	}
	rec.XML = strings.Replace(rec.XML, "<playback>", "<protected>true</protected><playback>", 1)
	out = c.PlaybackXML(&rec, nil, "https://bbb.example.org")
	if !strings.Contains(out, "<url>https://bbb.example.org"+LinkPrefix+"r1/video?"+TokenParam+"=") ||
		!strings.Contains(out, "<url>https://node1.example.org/playback/presentation/2.3/r1</url>") {
		t.Fatalf("a protected recording's URL is not signed: %s", out)
	}
}

type fakeEnabled struct{ recstore.Store }

// A protected link leads to the format's playback URL on the link's host,
// the node's query kept.
func TestPlaybackURLOfAFormat(t *testing.T) {
	t.Parallel()
	rec := fsm.Recording{XML: "<playback><format><type>presentation</type><url>https://n1.example.org/playback/presentation/0.9.0/playback.html?meetingId=r1&amp;x=1</url></format></playback>"}
	if u, ok := playbackURL(&rec, "presentation", "https://bbb.example.org"); !ok || u != "https://bbb.example.org/playback/presentation/0.9.0/playback.html?meetingId=r1&x=1" {
		t.Fatalf("%q %v", u, ok)
	}
	if _, ok := playbackURL(&rec, "video", "https://bbb.example.org"); ok {
		t.Fatal("a format the recording lacks")
	}
}
