package bbbapi

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// InternalMeetingID is the meeting ID a backend sees: the frontend's key
// and the client's ID, so two tenants' "m1" never meet on a backend. When
// that would pass BBB's 256-character limit the client's ID is hashed.
func InternalMeetingID(frontend, meetingID string) string {
	return string(appendInternalMeetingID(nil, frontend, meetingID))
}

// appendInternalMeetingID appends InternalMeetingID(frontend, meetingID) to dst.
func appendInternalMeetingID[S ~string | ~[]byte](dst []byte, frontend string, meetingID S) []byte {
	dst = append(dst, frontend...)
	if len(frontend)+1+len(meetingID) <= maxMeetingIDLen {
		return append(append(dst, '~'), meetingID...)
	}
	sum := sha256.Sum256([]byte(meetingID))
	return hex.AppendEncode(append(dst, "~h~"...), sum[:])
}

// ownedBy reports whether an internal ID belongs to frontend.
func ownedBy(internalID, frontend string) bool {
	return strings.HasPrefix(internalID, frontend+"~")
}
