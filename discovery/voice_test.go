package discovery

import (
	"testing"
	"time"
)

// Voice participants travel in the meta and are covered by the signature.
func TestMetaVoiceSignedAndEncoded(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	m := Meta{Role: RoleAgent, APIURL: "http://bbb.example:8090/bigbluebutton/api/", Meetings: 2, Attendees: 9, Videos: 3, Voice: 4, LoadFactor: 1, BBBUp: true, Seq: 7}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeMeta(b)
	if err != nil || back.Voice != 4 {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	SignMeta(&m, key, time.Now())
	if !VerifyMeta(&m, key) {
		t.Fatal("a signed report with voice does not verify")
	}
	forged := m
	forged.Voice = 0
	if VerifyMeta(&forged, key) {
		t.Fatal("voice is not covered by the signature")
	}
}
