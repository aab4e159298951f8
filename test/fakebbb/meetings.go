package fakebbb

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/conclave-lb/conclave/bbb"
)

// Message keys and texts bbb-web answers with that only this fake needs.
const (
	keyMismatchCreateTime   = "mismatchCreateTimeParam"
	keyMaxParticipants      = "maxParticipantsReached"
	keyNonUniqueVoiceBridge = "nonUniqueVoiceBridge"
	keyMeetingNotFound      = "meetingNotFound"
	keyNullError            = "nullError"
	keySizeError            = "sizeError"

	msgDuplicate        = "This conference was already in existence and may currently be in progress."
	msgIDNotUnique      = "A meeting already exists with that meeting ID.  Please use a different meeting ID."
	msgEndPassword      = "You must supply the moderator password for this call."
	msgContentType      = "POST request Content-Type is missing or unsupported"
	msgEndSent          = "A request to end the meeting was sent. Please wait a few seconds, and then use the getMeetingInfo or isMeetingRunning API calls to verify that it was ended."
	msgNoMeetings       = "no meetings were found on this server"
	msgDocumentUploaded = "Presentation is being uploaded"

	msgPresentationDisabled = "Presentation feature is disabled, ignoring."
	msgChatNotRunning       = "Meeting not found"
	msgChatSent             = "Message successfully sent"
	defaultDialNumber       = "613-555-1234" // bbb-web's default defaultDialAccessNumber
)

type meeting struct {
	id, internalID, name    string
	attendeePW, moderatorPW string
	voiceBridge, dialNumber string
	createTime              int64 // ms; also the suffix of internalID
	duration, maxUsers      int
	record                  bool
	protect                 bool              // create's protect (BBB 2.6+): its recordings are protected
	meta                    map[string]string // meta_* parameters, names lower-cased
	isBreakout              bool
	parentID                string // the parent's internal ID, for a breakout room
	sequence                int
	freeJoin                bool
	breakouts               []string // internal IDs of this meeting's breakout rooms
	attendees               []*attendee
	participants            int      // users who ever joined, for the recording
	disabledFeatures        []string // create's disabledFeatures, as bbb-web keeps them
}

// running is bbb-web's Meeting.isRunning: its users map is not empty. A user
// enters that map when the client joins and is only flagged as left when
// the browser goes, so a meeting runs from the first landing until it ends,
// even once everyone left (bbb-web 3.0 Meeting.userJoined/userLeft).
func (m *meeting) running() bool { return m.participants > 0 }

// featureDisabled reports whether create listed feature in disabledFeatures.
func (m *meeting) featureDisabled(feature string) bool {
	return slices.Contains(m.disabledFeatures, feature)
}

type attendee struct {
	userID, internalUserID, fullName, role string
	presenter                              bool
	custom                                 map[string]string // userdata-* parameters
}

// session is a join that returned a URL; the user counts once the browser
// lands on it.
type session struct {
	token, authToken  string
	meetingID         string
	internalMeetingID string
	user              attendee
	joined            bool
}

func (m *meeting) moderators() int {
	n := 0
	for _, a := range m.attendees {
		if a.role == "MODERATOR" {
			n++
		}
	}
	return n
}

// meetingIDParam reads the required meetingID, answering the error itself
// when it is missing.
func meetingIDParam(q *apiRequest) (string, bool) {
	id := q.get("meetingID")
	if id == "" {
		fail(q.w, bbb.KeyMissingParamMeetingID, bbb.MsgMissingMeetingID)
		return "", false
	}
	return id, true
}

// create answers create (GET, or POST with slides or form parameters).
func (s *Server) create(q *apiRequest) {
	if q.mediaType != "" && !createTypes[q.mediaType] {
		fail(q.w, bbb.KeyUnsupportedContentType, msgContentType)
		return
	}
	id, ok := meetingIDParam(q)
	if !ok {
		return
	}
	if msg := checkMeetingID(id); msg != "" {
		fail(q.w, bbb.KeyValidationError, msg)
		return
	}
	voiceBridge := q.get("voiceBridge")
	if voiceBridge != "" && !integral(voiceBridge) {
		fail(q.w, bbb.KeyValidationError, "Voice bridge must be an integral value")
		return
	}
	var docs []string
	if isXML(q.mediaType) && len(q.body) > 0 {
		// bbb-web creates the meeting even when the slides cannot be read.
		docs, _ = parseSlides(q.body)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.meetings[id]; m != nil {
		// Same passwords, or none given: the create is idempotent.
		if samePassword(q, "attendeePW", m.attendeePW) && samePassword(q, "moderatorPW", m.moderatorPW) {
			writeXML(q.w, createXML(m, bbb.KeyDuplicateWarning, msgDuplicate))
		} else {
			fail(q.w, bbb.KeyIDNotUnique, msgIDNotUnique)
		}
		return
	}
	if voiceBridge == "" {
		voiceBridge = s.newVoiceBridge()
	} else if s.voiceBridgeInUse(voiceBridge) {
		fail(q.w, keyNonUniqueVoiceBridge, "The selected voice bridge is already in use.")
		return
	}
	m := &meeting{
		id:          id,
		name:        q.params.Get("name"),
		attendeePW:  orRandom(q.params.Get("attendeePW")),
		moderatorPW: orRandom(q.params.Get("moderatorPW")),
		voiceBridge: voiceBridge,
		dialNumber:  q.params.Get("dialNumber"),
		createTime:  s.nextCreateTime(),
		duration:    atoi(q.params.Get("duration")),
		maxUsers:    atoi(q.params.Get("maxParticipants")),
		record:      parseBool(q.params.Get("record")),
		protect:     parseBool(q.params.Get("protect")),
		meta:        metaParams(q),

		disabledFeatures: disabledFeatures(q.params.Get("disabledFeatures"), q.params.Get("disabledFeaturesExclude")),
	}
	if m.name == "" {
		m.name = id
	}
	if m.dialNumber == "" {
		m.dialNumber = defaultDialNumber
	}
	// The internal ID (and the recording ID) is BBB's: sha1 of the external
	// ID, a dash, the create time in milliseconds.
	sum := sha1.Sum([]byte(id))
	m.internalID = hex.EncodeToString(sum[:]) + "-" + strconv.FormatInt(m.createTime, 10)
	if parseBool(q.params.Get("isBreakoutRoom")) {
		m.isBreakout = true
		m.parentID = q.params.Get("parentMeetingID")
		m.sequence = atoi(q.params.Get("sequence"))
		m.freeJoin = parseBool(q.params.Get("freeJoin"))
		if p := s.meetingByInternalID(m.parentID); p != nil {
			p.breakouts = append(p.breakouts, m.internalID)
		}
	}
	s.meetings[id] = m
	s.presentations[id] = docs
	s.chats[id] = nil
	writeXML(q.w, createXML(m, "", ""))
}

var createTypes = map[string]bool{
	"application/x-www-form-urlencoded": true,
	"multipart/form-data":               true,
	"application/xml":                   true,
	"text/xml":                          true,
}

func isXML(mediaType string) bool {
	return mediaType == "application/xml" || mediaType == "text/xml"
}

// checkMeetingID applies bbb-web's rules (2.4+): 2 to 256 characters, no comma.
func checkMeetingID(id string) string {
	if n := utf8.RuneCountInString(id); n < 2 || n > 256 {
		return "Meeting ID must be between 2 and 256 characters"
	}
	if strings.Contains(id, ",") {
		return "Meeting ID cannot contain ','"
	}
	return ""
}

// samePassword: a password not given matches, as a duplicate create without
// passwords must not fail.
func samePassword(q *apiRequest, name, existing string) bool {
	v := q.params.Get(name)
	return v == "" || v == existing
}

func orRandom(pw string) string {
	if pw == "" {
		return randToken(8)
	}
	return pw
}

// disabledFeatures is ParamsProcessorUtil's list (bbb-web 3.0): the comma
// list, items trimmed, empty ones dropped, duplicates merged; then the items
// of disabledFeaturesExclude are removed as given (bbb-web removes them
// untrimmed). bbb-web's default list (disabledFeatures in its properties) is
// empty.
func disabledFeatures(list, exclude string) []string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if exclude != "" {
		drop := strings.Split(exclude, ",")
		out = slices.DeleteFunc(out, func(f string) bool { return slices.Contains(drop, f) })
	}
	return out
}

// metaParams collects meta_* parameters; bbb-web lower-cases their names.
func metaParams(q *apiRequest) map[string]string {
	meta := map[string]string{}
	for k, v := range q.params {
		if len(k) > len("meta_") && strings.EqualFold(k[:len("meta_")], "meta_") && len(v) > 0 {
			meta[strings.ToLower(k[len("meta_"):])] = v[0]
		}
	}
	return meta
}

// nextCreateTime is now in ms, but always after the previous meeting's, so
// two meetings created in the same millisecond get distinct internal IDs.
func (s *Server) nextCreateTime() int64 {
	t := time.Now().UnixMilli()
	if t <= s.lastCreate {
		t = s.lastCreate + 1
	}
	s.lastCreate = t
	return t
}

func (s *Server) voiceBridgeInUse(vb string) bool {
	for _, m := range s.meetings {
		if m.voiceBridge == vb {
			return true
		}
	}
	return false
}

// newVoiceBridge picks a free five-digit number, as bbb-web does.
func (s *Server) newVoiceBridge() string {
	for {
		vb := strconv.Itoa(70000 + rand.IntN(30000))
		if !s.voiceBridgeInUse(vb) {
			return vb
		}
	}
}

func (s *Server) meetingByInternalID(id string) *meeting {
	for _, m := range s.meetings {
		if m.internalID == id {
			return m
		}
	}
	return nil
}

// createXML renders create's answer (create-meeting.ftlx).
func createXML(m *meeting, key, msg string) []byte {
	x := newResponse("SUCCESS")
	x.leaf("meetingID", m.id)
	x.leaf("internalMeetingID", m.internalID)
	parent := "bbb-none"
	if m.isBreakout {
		parent = m.parentID
	}
	x.leaf("parentMeetingID", parent)
	x.leaf("attendeePW", m.attendeePW)
	x.leaf("moderatorPW", m.moderatorPW)
	x.leafInt("createTime", m.createTime)
	x.leaf("voiceBridge", m.voiceBridge)
	x.leaf("dialNumber", m.dialNumber)
	x.leaf("createDate", javaDate(m.createTime))
	x.leafBool("hasUserJoined", m.participants > 0)
	x.leafInt("duration", int64(m.duration))
	x.leafBool("hasBeenForciblyEnded", false)
	x.leaf("messageKey", key)
	x.leaf("message", msg)
	return x.done()
}

// writeMeeting renders a meeting's fields as getMeetingInfo and getMeetings
// do (get-meeting-info.ftlx, get-meetings.ftlx).
func writeMeeting(x *xmlWriter, m *meeting) {
	x.leaf("meetingName", m.name)
	x.leaf("meetingID", m.id)
	x.leaf("internalMeetingID", m.internalID)
	x.leafInt("createTime", m.createTime)
	x.leaf("createDate", javaDate(m.createTime))
	x.leaf("voiceBridge", m.voiceBridge)
	x.leaf("dialNumber", m.dialNumber)
	x.leaf("attendeePW", m.attendeePW)
	x.leaf("moderatorPW", m.moderatorPW)
	x.leafBool("running", m.running())
	x.leafInt("duration", int64(m.duration))
	x.leafBool("hasUserJoined", m.participants > 0)
	x.leafBool("recording", m.record)
	x.leafBool("hasBeenForciblyEnded", false)
	x.leafInt("startTime", m.createTime)
	x.leafInt("endTime", 0)
	x.leafInt("participantCount", int64(len(m.attendees)))
	x.leafInt("listenerCount", 0)
	x.leafInt("voiceParticipantCount", 0)
	x.leafInt("videoCount", 0)
	x.leafInt("maxUsers", int64(m.maxUsers))
	x.leafInt("moderatorCount", int64(m.moderators()))
	x.open("attendees")
	for _, a := range m.attendees {
		x.open("attendee")
		x.leaf("userID", a.userID)
		x.leaf("fullName", a.fullName)
		x.leaf("role", a.role)
		x.leafBool("isPresenter", a.presenter)
		x.leafBool("isListeningOnly", false)
		x.leafBool("hasJoinedVoice", false)
		x.leafBool("hasVideo", false)
		x.leaf("clientType", "HTML5")
		x.kvs("customdata", a.custom)
		x.close("attendee")
	}
	x.close("attendees")
	x.kvs("metadata", m.meta)
	x.leafBool("isBreakout", m.isBreakout)
	if m.isBreakout {
		x.leaf("parentMeetingID", m.parentID)
		x.leafInt("sequence", int64(m.sequence))
		x.leafBool("freeJoin", m.freeJoin)
	}
	if len(m.breakouts) > 0 {
		x.open("breakoutRooms")
		for _, b := range m.breakouts {
			x.leaf("breakout", b)
		}
		x.close("breakoutRooms")
	}
}

// lockedMeeting finds the request's meeting and returns it with s.mu
// held; it answers missingParamMeetingID or notFound itself and returns nil
// (the lock released) when there is none.
func (s *Server) lockedMeeting(q *apiRequest) *meeting {
	id, ok := meetingIDParam(q)
	if !ok {
		return nil
	}
	s.mu.Lock()
	m := s.meetings[id]
	if m == nil {
		s.mu.Unlock()
		fail(q.w, bbb.KeyNotFound, bbb.MsgNotFound)
		return nil
	}
	return m
}

// join answers join as bbb-web 3.0 does (ApiController.join): by default a
// 302 to the node's own client page, with redirect=false BBB's XML. The user
// counts only once that page is fetched.
//
// Its failures take three forms, as there:
//   - the request's validation (JoinMeeting: checksum, meetingID, fullName,
//     password length) fails: a 302 to the logout URL with the violation in
//     errors=[{"message":…,"key":…}], whatever redirect says;
//   - createTime does not match, or the meeting is full: the same redirect,
//     or with redirect=false the FAILED XML;
//   - neither a role nor a matching password: FAILED XML with the messageKey
//     "Params required", whatever redirect says.
func (s *Server) join(q *apiRequest) {
	s.mu.Lock()
	m := s.meetings[q.get("meetingID")]
	if key, msg := joinViolation(q, m); key != "" {
		s.mu.Unlock()
		joinFailed(q, true, key, msg)
		return
	}
	redirect := true
	if r := q.params.Get("redirect"); r != "" {
		// bbb-web reads it with Boolean.parseBoolean: only "true" redirects.
		redirect = parseBool(r)
	}
	if ct := q.params.Get("createTime"); ct != "" && ct != strconv.FormatInt(m.createTime, 10) {
		s.mu.Unlock()
		joinFailed(q, redirect, keyMismatchCreateTime, "The createTime parameter submitted mismatches with the current meeting.")
		return
	}
	role, msg := joinRole(m, q.params.Get("role"), q.params.Get("password"))
	if role == "" {
		s.mu.Unlock()
		fail(q.w, keyParamsRequired, msg)
		return
	}
	if m.maxUsers > 0 && len(m.attendees) >= m.maxUsers {
		s.mu.Unlock()
		joinFailed(q, redirect, keyMaxParticipants, "The number of participants allowed for this meeting has been reached.")
		return
	}
	sess := &session{
		token:             randToken(16),
		authToken:         randToken(12),
		meetingID:         m.id,
		internalMeetingID: m.internalID,
		user: attendee{
			internalUserID: "w_" + randToken(12),
			userID:         q.params.Get("userID"),
			fullName:       strings.TrimSpace(q.params.Get("fullName")),
			role:           role,
			custom:         userData(q),
		},
	}
	if sess.user.userID == "" {
		sess.user.userID = sess.user.internalUserID
	}
	s.sessions[sess.token] = sess
	s.mu.Unlock()

	clientURL := q.base + landingPath + "?sessionToken=" + sess.token
	if !redirect {
		x := newResponse("SUCCESS")
		x.leaf("messageKey", "successfullyJoined")
		x.leaf("message", "You have joined successfully.")
		x.leaf("meeting_id", sess.internalMeetingID)
		x.leaf("user_id", sess.user.internalUserID)
		x.leaf("auth_token", sess.authToken)
		x.leaf("session_token", sess.token)
		x.leaf("guestStatus", "ALLOW")
		x.leaf("url", clientURL)
		writeXML(q.w, x.done())
		return
	}
	q.w.Header().Set("Cache-Control", "no-cache")
	http.Redirect(q.w, q.r, clientURL, http.StatusFound)
}

// Join's validation answers (bbb-common-web 3.0: JoinMeeting and the
// constraints on its fields, JoinPassword).
const (
	keyParamsRequired       = "Params required" // sic: bbb-web's messageKey for a wrong or missing password
	keyMeetingForciblyEnded = "meetingForciblyEnded"
	keySizeErrorJoin        = "sizeError"

	msgMeetingIDMissing   = "You must provide a meeting ID"   // MeetingIDConstraint's NotEmpty
	msgMeetingIDRequired  = "You must provide the meeting ID" // Password.meetingID (no key: validationError)
	msgMeetingIDSize      = "Meeting ID must be between 2 and 256 characters"
	msgMeetingIDComma     = "Meeting ID cannot contain ','"
	msgMeetingNotExisting = "A meeting with that ID does not exist" // MeetingExistsConstraint
	msgMeetingEnded       = "You can not join a meeting that has already been forcibly ended"
	msgJoinPassword       = "The provided password is neither a moderator or attendee password" // JoinPasswordConstraint
	msgPasswordLength     = "Invalid password"                                                  // PasswordConstraint: 2 to 64 characters
	msgFullNameEmpty      = "You must provide your name"
	msgGuestBoolean       = "Guest must be a boolean value (true or false)" // IsBooleanConstraint
	msgAuthBoolean        = "Auth must be a boolean value (true or false)"
	msgNotIntegral        = "Value must be an integral number" // IsIntegralConstraint
	msgWrongPassword      = "You must enter a valid password"
	msgRoleOrPassword     = "You must either send the valid role of the user, or the password, sould the meeting has one." // sic
)

// joinViolation runs join's validation as bbb-web does and returns the
// violation it reports, or "" when the request is valid. bbb-web checks
// every constraint, keeps one message per key in a java.util.HashMap and
// reports the first the map iterates: for a meeting it does not have, that
// is meetingForciblyEnded (MeetingEndedValidator fails on a missing meeting
// too), not invalidMeetingIdentifier, as a real 2.7 server answered
// (bigbluebutton/bigbluebutton#20178).
func joinViolation(q *apiRequest, m *meeting) (key, message string) {
	v := map[string]string{}
	id, idGiven := q.get("meetingID"), q.params.Has("meetingID")
	if idGiven {
		if id == "" {
			v[bbb.KeyMissingParamMeetingID] = msgMeetingIDMissing
		}
		if n := utf8.RuneCountInString(id); n < 2 || n > 256 {
			v[keySizeErrorJoin] = msgMeetingIDSize
		}
		if id == "" || strings.Contains(id, ",") {
			v[bbb.KeyValidationError] = msgMeetingIDComma
		}
	} else {
		v[bbb.KeyValidationError] = msgMeetingIDRequired
	}
	if m == nil {
		v[bbb.KeyInvalidMeetingID] = msgMeetingNotExisting
		v[keyMeetingForciblyEnded] = msgMeetingEnded
		v[bbb.KeyMissingParamPassword] = msgJoinPassword
	}
	// bbb-web lets a missing fullName through its validation (NotEmpty
	// accepts null) and then has no name to give; here it is refused like
	// an empty one.
	if strings.TrimSpace(q.params.Get("fullName")) == "" {
		v[bbb.KeyMissingParamFullName] = msgFullNameEmpty
	}
	for _, b := range [][2]string{{"guest", msgGuestBoolean}, {"auth", msgAuthBoolean}} {
		switch strings.ToLower(q.params.Get(b[0])) {
		case "", "true", "false", "0", "1":
		default:
			v[bbb.KeyValidationError] = b[1]
		}
	}
	if ct := q.params.Get("createTime"); ct != "" && !integral(ct) {
		v[bbb.KeyValidationError] = msgNotIntegral
	}
	if pw := q.params.Get("password"); pw != "" {
		if n := utf8.RuneCountInString(pw); (n < 2 || n > 64) && v[bbb.KeyMissingParamPassword] == "" {
			v[bbb.KeyMissingParamPassword] = msgPasswordLength
		}
	}
	key = javaHashMapFirst(v)
	return key, v[key]
}

// javaHashMapFirst is the key a java.util.HashMap[String, String] of the
// default capacity (16 buckets, enough below 13 keys) yields first: the
// lowest bucket of String.hashCode spread as HashMap.hash does. Keys sharing
// a bucket come in insertion order there; here, sorted.
func javaHashMapFirst(m map[string]string) string {
	first, firstBucket := "", uint32(1<<31)
	for k := range m {
		var h uint32
		for _, c := range utf16.Encode([]rune(k)) {
			h = 31*h + uint32(c)
		}
		b := (h ^ h>>16) & 15
		if b < firstBucket || b == firstBucket && k < first {
			first, firstBucket = k, b
		}
	}
	return first
}

// joinFailed answers a failed join: with redirect, bbb-web's redirect to
// the logout URL (errorRedirectUrl, else the join's logoutURL, else the
// server's own URL) with errors=[{"message":…,"key":…}] appended to its
// query; without, the FAILED XML.
func joinFailed(q *apiRequest, redirect bool, key, message string) {
	if !redirect {
		fail(q.w, key, message)
		return
	}
	target := q.base
	if l := q.params.Get("logoutURL"); l != "" {
		target = strings.NewReplacer("%%MEETINGID%%", "", "%%USERID%%", "", "%%USERNAME%%", "").Replace(l)
	}
	if e := q.params.Get("errorRedirectUrl"); e != "" {
		target = e
	}
	u, err := url.Parse(target)
	if err != nil {
		u, _ = url.Parse(q.base)
	}
	// org.json writes the map {key, message} message first, as the
	// HashMap it keeps iterates.
	msgJSON, _ := json.Marshal(message)
	keyJSON, _ := json.Marshal(key)
	errs := javaURIQuote(`[{"message":` + string(msgJSON) + `,"key":` + string(keyJSON) + `}]`)
	if u.RawQuery == "" {
		u.RawQuery = "errors=" + errs
	} else {
		u.RawQuery += "&errors=" + errs
	}
	q.w.Header().Set("Location", u.String())
	q.w.Header().Set("Cache-Control", "no-cache")
	q.w.WriteHeader(http.StatusFound)
}

// javaURIQuote escapes a query as java.net.URI's multi-argument
// constructors do: ASCII outside RFC 2396's unreserved and reserved
// characters (brackets included) becomes %XX; other characters stay, but
// for spaces and controls.
func javaURIQuote(s string) string {
	const ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" +
		"_-!.~'()*" + ";/?:@&=+$,[]"
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && strings.ContainsRune(ok, r),
			r >= utf8.RuneSelf && !unicode.IsSpace(r) && !unicode.IsControl(r):
			b.WriteRune(r)
		default:
			var buf [utf8.UTFMax]byte
			for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
	}
	return b.String()
}

// joinRole is bbb-web 3.0's: a valid role= (moderator or viewer, any case)
// wins; else the password names the role; else "" and the message of the
// FAILED answer.
func joinRole(m *meeting, role, password string) (string, string) {
	switch strings.ToLower(role) {
	case "moderator":
		return "MODERATOR", ""
	case "viewer":
		return "VIEWER", ""
	}
	switch {
	case password == "":
		return "", msgRoleOrPassword
	case password == m.moderatorPW:
		return "MODERATOR", ""
	case password == m.attendeePW:
		return "VIEWER", ""
	}
	return "", msgWrongPassword
}

// userData collects userdata-* parameters, shown as customdata.
func userData(q *apiRequest) map[string]string {
	d := map[string]string{}
	for k, v := range q.params {
		if name, ok := strings.CutPrefix(k, "userdata-"); ok && name != "" && len(v) > 0 {
			d[name] = v[0]
		}
	}
	return d
}

// landing is the page a join redirect leads to: fetching it (GET) puts the
// user in the meeting, once per session.
func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("sessionToken")
	s.mu.Lock()
	sess := s.sessions[token]
	var m *meeting
	if sess != nil {
		m = s.meetings[sess.meetingID]
	}
	if m == nil || m.internalID != sess.internalMeetingID {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<!DOCTYPE html><html><head><title>BigBlueButton</title></head><body><p>This session is not valid or the meeting has ended.</p></body></html>\n"))
		return
	}
	if m.maxUsers > 0 && !sess.joined && len(m.attendees) >= m.maxUsers {
		// Filled up between join and landing: bbb-web drops the user.
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("<!DOCTYPE html><html><head><title>BigBlueButton</title></head><body><p>The number of participants allowed for this meeting has been reached.</p></body></html>\n"))
		return
	}
	if r.Method == http.MethodGet && !sess.joined {
		sess.joined = true
		a := sess.user
		// The first moderator in becomes presenter, as in BBB.
		if a.role == "MODERATOR" && !hasPresenter(m) {
			a.presenter = true
		}
		m.attendees = append(m.attendees, &a)
		m.participants++
	}
	page := "<!DOCTYPE html><html><head><title>BigBlueButton</title></head><body><p>" +
		html.EscapeString(sess.user.fullName) + " joined " + html.EscapeString(m.name) +
		" as " + strings.ToLower(sess.user.role) + ".</p></body></html>\n"
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write([]byte(page))
}

func hasPresenter(m *meeting) bool {
	for _, a := range m.attendees {
		if a.presenter {
			return true
		}
	}
	return false
}

// end answers end; a password, when given, must be the moderator's.
func (s *Server) end(q *apiRequest) {
	m := s.lockedMeeting(q)
	if m == nil {
		return
	}
	if pw := q.params.Get("password"); pw != "" && pw != m.moderatorPW {
		s.mu.Unlock()
		fail(q.w, bbb.KeyMissingParamPassword, msgEndPassword)
		return
	}
	callbacks := s.endLocked(m, q.base)
	s.mu.Unlock()
	for _, cb := range callbacks {
		go cb()
	}
	x := newResponse("SUCCESS")
	x.leaf("messageKey", bbb.KeySentEndMeetingRequest)
	x.leaf("message", msgEndSent)
	writeXML(q.w, x.done())
}

// endLocked removes a meeting, its breakout rooms and its sessions, leaves a
// recording when it was recorded, and returns the callbacks to send once
// the lock is released.
func (s *Server) endLocked(m *meeting, base string) []func() {
	delete(s.meetings, m.id)
	for tok, sess := range s.sessions {
		if sess.internalMeetingID == m.internalID {
			delete(s.sessions, tok)
		}
	}
	var callbacks []func()
	for _, b := range m.breakouts {
		if bm := s.meetingByInternalID(b); bm != nil {
			callbacks = append(callbacks, s.endLocked(bm, base)...)
		}
	}
	if m.isBreakout {
		if p := s.meetingByInternalID(m.parentID); p != nil {
			p.breakouts = removeString(p.breakouts, m.internalID)
		}
		// bbb-web sends no end callback for breakout rooms.
		return callbacks
	}
	now := time.Now().UnixMilli()
	if m.record {
		rec := s.newRecording(m, base, now)
		if u := m.meta["bbb-recording-ready-url"]; u != "" {
			meetingID, recordID := m.id, rec.id
			callbacks = append(callbacks, func() { s.recordingReady(u, meetingID, recordID) })
		}
	}
	if u := m.meta["endcallbackurl"]; u != "" {
		// recordingmarks: a recorded meeting here always has marks, as if
		// it had been recorded from start to end.
		meetingID, marks := m.id, m.record
		callbacks = append(callbacks, func() { s.endCallback(u, meetingID, marks) })
	}
	return callbacks
}

func removeString(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func (s *Server) isMeetingRunning(q *apiRequest) {
	id, ok := meetingIDParam(q)
	if !ok {
		return
	}
	s.mu.Lock()
	m := s.meetings[id]
	running := m != nil && m.running()
	s.mu.Unlock()
	x := newResponse("SUCCESS")
	x.leafBool("running", running)
	writeXML(q.w, x.done())
}

func (s *Server) getMeetingInfo(q *apiRequest) {
	m := s.lockedMeeting(q)
	if m == nil {
		return
	}
	defer s.mu.Unlock()
	x := newResponse("SUCCESS")
	writeMeeting(x, m)
	writeXML(q.w, x.done())
}

func (s *Server) getMeetings(q *apiRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := newResponse("SUCCESS")
	if len(s.meetings) == 0 {
		x.empty("meetings")
		x.leaf("messageKey", bbb.KeyNoMeetings)
		x.leaf("message", msgNoMeetings)
		writeXML(q.w, x.done())
		return
	}
	list := make([]*meeting, 0, len(s.meetings))
	for _, m := range s.meetings {
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].createTime < list[j].createTime })
	x.open("meetings")
	for _, m := range list {
		x.open("meeting")
		writeMeeting(x, m)
		x.close("meeting")
	}
	x.close("meetings")
	writeXML(q.w, x.done())
}

// insertDocument takes an XML body of documents for a meeting. As in
// bbb-web 3.0 (ApiController.insertDocument), its failures past validation
// carry no messageKey: an unknown meeting, and a meeting created with
// disabledFeatures=presentation.
func (s *Server) insertDocument(q *apiRequest) {
	if q.r.Method != http.MethodPost || !isXML(q.mediaType) {
		fail(q.w, bbb.KeyUnsupportedContentType, msgContentType)
		return
	}
	id, ok := meetingIDParam(q)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meetings[id]
	if m == nil {
		writeXML(q.w, insertDocumentXML("FAILED", "Meeting with id ["+id+"] not found."))
		return
	}
	if m.featureDisabled("presentation") {
		writeXML(q.w, insertDocumentXML("FAILED", msgPresentationDisabled))
		return
	}
	docs, err := parseSlides(q.body)
	if err != nil {
		fail(q.w, bbb.KeyValidationError, "The XML body could not be read: "+err.Error())
		return
	}
	s.presentations[id] = append(s.presentations[id], docs...)
	writeXML(q.w, insertDocumentXML("SUCCESS", msgDocumentUploaded))
}

// insertDocumentXML is bbb-web's insert-document answer: a returncode and a
// message, never a messageKey.
func insertDocumentXML(returncode, message string) []byte {
	x := newResponse(returncode)
	x.leaf("message", message)
	return x.done()
}

// sendChatMessage posts to a running meeting's public chat (BBB 2.7+). The
// meeting must be running, someone having joined (bbb-web 3.0:
// meeting != null && meeting.isRunning(), else meetingNotFound).
func (s *Server) sendChatMessage(q *apiRequest) {
	id, ok := meetingIDParam(q)
	if !ok {
		return
	}
	msgs, given := q.params["message"]
	if !given {
		fail(q.w, keyNullError, "You must provide the param message")
		return
	}
	msg := msgs[0]
	if n := utf8.RuneCountInString(msg); n < 1 || n > 500 {
		fail(q.w, keySizeError, "Param message must be between 1 and 500 characters")
		return
	}
	if utf8.RuneCountInString(q.params.Get("userName")) > 255 {
		fail(q.w, keySizeError, "Param userName must not exceed 255 characters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.meetings[id]; m == nil || !m.running() {
		fail(q.w, keyMeetingNotFound, msgChatNotRunning)
		return
	}
	s.chats[id] = append(s.chats[id], msg)
	x := newResponse("SUCCESS")
	x.leaf("messageKey", "")
	x.leaf("message", msgChatSent)
	writeXML(q.w, x.done())
}

// slidesXML is the body of a create POST or insertDocument:
// <modules><module name="presentation"><document url=… | name=…>…
type slidesXML struct {
	XMLName xml.Name `xml:"modules"`
	Modules []struct {
		Name      string `xml:"name,attr"`
		Documents []struct {
			URL  string `xml:"url,attr"`
			Name string `xml:"name,attr"`
		} `xml:"document"`
	} `xml:"module"`
}

// parseSlides returns the presentation documents of a slides body: their
// URLs, or the names of embedded (base64) documents.
func parseSlides(body []byte) ([]string, error) {
	var doc slidesXML
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	var out []string
	for _, mod := range doc.Modules {
		if mod.Name != "presentation" {
			continue
		}
		for _, d := range mod.Documents {
			switch {
			case d.URL != "":
				out = append(out, d.URL)
			case d.Name != "":
				out = append(out, d.Name)
			}
		}
	}
	return out, nil
}

// javaDate formats ms like java.util.Date.toString, as createDate is.
func javaDate(ms int64) string {
	return time.UnixMilli(ms).Format("Mon Jan 02 15:04:05 MST 2006")
}

// parseBool is Java's Boolean.parseBoolean: only "true", in any case.
func parseBool(s string) bool { return strings.EqualFold(s, "true") }

func integral(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// atoi reads a number parameter; anything unreadable is 0, the default.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
