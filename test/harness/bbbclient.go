package harness

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/xml"
	"hash"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BBBClient is an independent BBB API client for tests: it computes
// checksums itself (not with Conclave's bbb package), as an LMS would.
type BBBClient struct {
	Base   string // e.g. http://127.0.0.1:42353/bigbluebutton/api
	Secret string
	Algo   string // sha1, sha256 (default), sha384, sha512
}

// Sum is the checksum of call+query under the client's secret.
func (c BBBClient) Sum(call, query string) string {
	var h hash.Hash
	switch c.Algo {
	case "sha1":
		h = sha1.New()
	case "sha384":
		h = sha512.New384()
	case "sha512":
		h = sha512.New()
	default:
		h = sha256.New()
	}
	io.WriteString(h, call+query+c.Secret)
	return hex.EncodeToString(h.Sum(nil))
}

// URL is the signed URL of call with query (already encoded).
func (c BBBClient) URL(call, query string) string {
	q := query
	if q != "" {
		q += "&"
	}
	return c.Base + "/" + call + "?" + q + "checksum=" + c.Sum(call, query)
}

// NoRedirect is an HTTP client that shows redirects instead of following them.
var NoRedirect = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Answer is the part of a BBB XML answer tests look at; Raw is all of it.
type Answer struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	MessageKey string   `xml:"messageKey"`
	MeetingID  string   `xml:"meetingID"`
	Running    string   `xml:"running"`
	Meetings   []struct {
		MeetingID string `xml:"meetingID"`
	} `xml:"meetings>meeting"`
	Version string `xml:"version"`
	Raw     string `xml:"-"`
}

// Get calls the API and parses the XML answer, failing the test on
// transport errors or a non-200 status (BBB answers 200 even on FAILED).
func (c BBBClient) Get(t testing.TB, call, query string) Answer {
	t.Helper()
	return Fetch(t, c.URL(call, query), "", "")
}

// TryGet is Get returning errors instead of failing (for load loops).
func (c BBBClient) TryGet(call, query string) (Answer, error) {
	return tryFetch(c.URL(call, query), "", "")
}

// Fetch GETs u, or POSTs body when body is not empty, and parses BBB XML.
func Fetch(t testing.TB, u, contentType, body string) Answer {
	t.Helper()
	a, err := tryFetch(u, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func tryFetch(u, contentType, body string) (Answer, error) {
	var resp *http.Response
	var err error
	if body != "" {
		resp, err = NoRedirect.Post(u, contentType, strings.NewReader(body))
	} else {
		resp, err = NoRedirect.Get(u)
	}
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return Answer{Raw: string(data)}, &HTTPError{Status: resp.StatusCode, Body: string(data)}
	}
	var a Answer
	if err := xml.Unmarshal(data, &a); err != nil {
		return Answer{Raw: string(data)}, err
	}
	a.Raw = string(data)
	return a, nil
}
