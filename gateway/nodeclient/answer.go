package nodeclient

import (
	"errors"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/gateway/internal/xmlscan"
)

// idElements are where BBB echoes a meeting's ID: its meetingID, and the
// name it defaults to the ID (meetingName, a recording's name and metadata).
var idElements = []string{"meetingID", "meetingName", "name", "meetingId"}

// RewriteMeetingIDs shows the client its own meeting ID wherever the
// backend echoed the internal one.
func RewriteMeetingIDs(doc []byte, internal, external string) []byte {
	return xmlscan.RewriteTexts(doc, idElements, func(t string) (string, bool) { return external, t == internal })
}

// ShowMeetingIDs is RewriteMeetingIDs on an answer ParseAnswer has scanned.
func ShowMeetingIDs(doc []byte, els []xmlscan.Element, internal, external string) []byte {
	return xmlscan.RewriteElements(doc, els, idElements, func(t string) (string, bool) { return external, t == internal })
}

// answerElements are what one scan of a backend's answer collects: the
// envelope and the places the meeting ID is echoed.
var answerElements = append([]string{"response", "returncode", "messageKey", "message"}, idElements...)

// ParseAnswer reads a backend's XML answer once: its envelope (an error if
// it is not a BBB <response>) and the elements ShowMeetingIDs rewrites.
func ParseAnswer(doc []byte) (bbb.Envelope, []xmlscan.Element, error) {
	var env bbb.Envelope
	els, err := xmlscan.Scan(doc, answerElements...)
	if err != nil {
		return env, nil, err
	}
	isResponse := false
	for _, e := range els {
		switch {
		case e.Depth == 1:
			isResponse = e.Name == "response"
		case e.Depth != 2:
		case e.Name == "returncode":
			env.ReturnCode = e.Text
		case e.Name == "messageKey":
			env.MessageKey = e.Text
		case e.Name == "message":
			env.Message = e.Text
		}
	}
	if !isResponse {
		return bbb.Envelope{}, els, errNotBBBResponse
	}
	return env, els, nil
}

var errNotBBBResponse = errors.New("the answer is not a BBB <response> document")
