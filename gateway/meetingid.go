package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// internalMeetingID is the meeting ID a backend sees: the frontend's key
// and the client's ID, so two tenants' "m1" never meet on a backend. When
// that would pass BBB's 256-character limit the client's ID is hashed.
func internalMeetingID(frontend, meetingID string) string {
	if len(frontend)+1+len(meetingID) <= maxMeetingIDLen {
		return frontend + "~" + meetingID
	}
	sum := sha256.Sum256([]byte(meetingID))
	return frontend + "~h~" + hex.EncodeToString(sum[:])
}

// ownedBy reports whether an internal ID belongs to frontend.
func ownedBy(internalID, frontend string) bool {
	return strings.HasPrefix(internalID, frontend+"~")
}
