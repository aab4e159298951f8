package fakebbb

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"sort"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/conclave-lb/conclave/bbb"
)

// xmlWriter builds a BBB answer as text. bbb-web renders its answers with
// FreeMarker templates, element by element; writing them the same way keeps
// the element order of the real templates and makes any value safe: text is
// escaped, and characters XML cannot carry become U+FFFD, so the answer is
// well-formed whatever a client sent.
type xmlWriter struct{ b bytes.Buffer }

// newResponse opens <response> with its returncode, as every answer starts.
func newResponse(returncode string) *xmlWriter {
	x := &xmlWriter{}
	x.b.WriteString("<response>")
	x.leaf("returncode", returncode)
	return x
}

// open writes a start tag; attrs are name/value pairs.
func (x *xmlWriter) open(name string, attrs ...string) {
	x.b.WriteByte('<')
	x.b.WriteString(name)
	for i := 0; i+1 < len(attrs); i += 2 {
		x.b.WriteByte(' ')
		x.b.WriteString(attrs[i])
		x.b.WriteString(`="`)
		xml.EscapeText(&x.b, []byte(attrs[i+1]))
		x.b.WriteByte('"')
	}
	x.b.WriteByte('>')
}

func (x *xmlWriter) close(name string) {
	x.b.WriteString("</")
	x.b.WriteString(name)
	x.b.WriteByte('>')
}

// leaf writes <name>value</name>.
func (x *xmlWriter) leaf(name, value string) {
	x.open(name)
	xml.EscapeText(&x.b, []byte(value))
	x.close(name)
}

func (x *xmlWriter) leafBool(name string, v bool) { x.leaf(name, strconv.FormatBool(v)) }
func (x *xmlWriter) leafInt(name string, v int64) { x.leaf(name, strconv.FormatInt(v, 10)) }
func (x *xmlWriter) leafAttr(name, value string, attrs ...string) {
	x.open(name, attrs...)
	xml.EscapeText(&x.b, []byte(value))
	x.close(name)
}

// empty writes <name/>, as bbb-web does for an empty meetings/recordings list.
func (x *xmlWriter) empty(name string) {
	x.b.WriteByte('<')
	x.b.WriteString(name)
	x.b.WriteString("/>")
}

// kvs writes a map as <name><key>value</key>…</name>: metadata and user
// custom data, whose element names come from the client. Keys are sorted so
// answers are stable; a key that is not a usable XML name is left out, where
// bbb-web would emit a broken document.
func (x *xmlWriter) kvs(name string, m map[string]string) {
	x.open(name)
	for _, k := range sortedKeys(m) {
		if validXMLName(k) {
			x.leaf(k, m[k])
		}
	}
	x.close(name)
}

func (x *xmlWriter) done() []byte {
	x.close("response")
	return x.b.Bytes()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validXMLName accepts the names a parser takes without namespaces: a letter
// or underscore, then letters, digits, '-', '_' or '.'.
func validXMLName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case i > 0 && (r == '-' || r == '.' || unicode.IsDigit(r)):
		default:
			return false
		}
	}
	return true
}

// writeXML sends a BBB XML answer. BBB answers FAILED with HTTP 200 too.
func writeXML(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/xml;charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// fail sends BBB's FAILED envelope.
func fail(w http.ResponseWriter, key, message string) {
	writeXML(w, bbb.FailedXML(key, message))
}

// writeJSON sends a JSON answer (the text-track calls answer JSON).
func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"response":{"returncode":"FAILED","messageKey":"unexpectedError","message":"encoding failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// jsonFailure is the JSON error shape of bbb-web's RecordingController.
type jsonFailure struct {
	Response struct {
		ReturnCode string `json:"returncode"`
		MessageKey string `json:"messageKey"`
		Message    string `json:"message"`
	} `json:"response"`
}

func failJSON(w http.ResponseWriter, key, message string) {
	var f jsonFailure
	f.Response.ReturnCode, f.Response.MessageKey, f.Response.Message = "FAILED", key, message
	writeJSON(w, f)
}
