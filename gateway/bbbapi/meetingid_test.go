package bbbapi

import (
	"strings"
	"testing"
)

func TestInternalMeetingID(t *testing.T) {
	if got := InternalMeetingID("moodle", "m1"); got != "moodle~m1" || !ownedBy(got, "moodle") || ownedBy(got, "mood") {
		t.Fatal(got)
	}
	long := strings.Repeat("x", 256)
	got := InternalMeetingID("moodle", long)
	if len(got) > 256 || !ownedBy(got, "moodle") || got == InternalMeetingID("moodle", long[:255]+"y") {
		t.Fatalf("long ID mapping: %s", got)
	}
}
