package bbbapi

import (
	"testing"
	"time"

	"github.com/conclave-lb/conclave/gateway/nodeclient"
)

// Every call a client can make has a bound of a few seconds on a hung node
// that is not marked error yet; only create and calls with a body get more.
func TestBackendCallTimeouts(t *testing.T) {
	for _, call := range apiCalls {
		d := nodeclient.CallTimeout(call)
		switch call {
		case "create":
			if d != nodeclient.CreateTimeout {
				t.Errorf("%s: %v", call, d)
			}
		case "insertDocument", "putRecordingTextTrack":
			if d > 15*time.Second {
				t.Errorf("%s: %v", call, d)
			}
		case "end", "sendChatMessage", "publishRecordings", "updateRecordings", "deleteRecordings":
			if d > 5*time.Second {
				t.Errorf("%s: %v", call, d)
			}
		default:
			if d > 3*time.Second {
				t.Errorf("%s (a read): %v", call, d)
			}
		}
	}
}
