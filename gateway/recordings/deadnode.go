package recordings

import (
	"strconv"
	"time"

	"github.com/conclave-lb/conclave/fsm"
)

// A node the cluster has declared dead (NodeState error: the leader's
// prober failed it three times, or once with its agent gone from the
// gossip) is not called: a hung node would hold the client for the whole
// per-call timeout, and a dead one answers nothing anyway. Callers answer
// at once instead, as BBB would:
//
//   - getMeetings leaves the node's meetings out, as a BBB server that lost
//     them (a restarted BBB lists none of its earlier meetings);
//   - publish/update/deleteRecordings and the text-track calls of a
//     recording held there answer FAILED serverUnavailable, and change
//     nothing (the index keeps listing the recording with its last known
//     URLs; the node's files are what would change, and they are out of
//     reach);
//   - meeting calls (gateway/bbbapi) answer for a meeting that is not
//     running, or fail over.
//
// A node held in error only because its getMeetings answer is over the
// size limit is alive and answers every other call: it stays usable (its
// meetings are listed one by one, see getMeetings). control.BackendDead
// is the one rule for "do not call this node".

// deadBackendMessage says why a call was not sent to backend b, for the
// message of a FAILED answer: which server, since when.
func deadBackendMessage(b *fsm.Backend, what string) string {
	msg := "The server holding " + what + " is down"
	if b.StateChangedAt > 0 {
		since := time.Since(time.Unix(0, b.StateChangedAt)).Round(time.Second)
		if since >= 0 {
			msg += " (unreachable for " + strconv.Itoa(int(since/time.Second)) + " s)"
		}
	}
	return msg + ". Nothing was changed; please retry when it is back."
}
