package bbb

import (
	"encoding/xml"
	"strings"
)

// Message keys BBB answers with. Clients switch on these.
const (
	KeyChecksumError          = "checksumError"
	KeyMissingParamMeetingID  = "missingParamMeetingID"
	KeyNotFound               = "notFound"
	KeyIDNotUnique            = "idNotUnique"
	KeyNonUniqueVoiceBridge   = "nonUniqueVoiceBridge"
	KeyDuplicateWarning       = "duplicateWarning"
	KeyValidationError        = "validationError"
	KeyUnsupportedContentType = "unsupportedContentType"
	KeyUnsupportedRequest     = "unsupportedRequest"
	KeyNoMeetings             = "noMeetings"
	KeyNoRecordings           = "noRecordings"
	KeyMissingParamRecordID   = "missingParamRecordID"
	KeyMissingParamPublish    = "missingParamPublish"
	KeySentEndMeetingRequest  = "sentEndMeetingRequest"
	KeyInvalidMeetingID       = "invalidMeetingIdentifier"
	KeyMissingParamPassword   = "invalidPassword"
	KeyMissingParamFullName   = "missingParamFullName"
	KeyServerUnavailable      = "serverUnavailable"
	KeyNoBackendAvailable     = "noBackendAvailable"
	// KeyServerTagUnavailable is Scalelite's answer to a create whose
	// required meta_server-tag no available server carries.
	KeyServerTagUnavailable = "serverTagUnavailable"
)

// FailedXML renders BBB's FAILED envelope. BBB answers these with HTTP 200.
func FailedXML(key, message string) []byte {
	var b strings.Builder
	b.Grow(128 + len(message))
	b.WriteString("<response><returncode>FAILED</returncode><messageKey>")
	xml.EscapeText(&b, []byte(key))
	b.WriteString("</messageKey><message>")
	xml.EscapeText(&b, []byte(message))
	b.WriteString("</message></response>")
	return []byte(b.String())
}

// Envelope is the part of every BBB XML response a balancer inspects: the
// <response> element's returncode, messageKey and message.
type Envelope struct {
	ReturnCode string `xml:"returncode"`
	MessageKey string `xml:"messageKey"`
	Message    string `xml:"message"`
}

// OK reports whether the envelope says SUCCESS.
func (e Envelope) OK() bool { return e.ReturnCode == "SUCCESS" }

// Common error messages, worded like bbb-web's.
const (
	MsgChecksumError      = "Checksums do not match"
	MsgUnsupportedRequest = "This request is not supported."
	MsgNotFound           = "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?"
	MsgMissingMeetingID   = "You must specify a meeting ID for the meeting."
)
