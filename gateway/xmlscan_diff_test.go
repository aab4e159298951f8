package gateway

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/bbb"
)

// scanXMLStd is scanXML written on encoding/xml, its first implementation:
// the oracle the hand-written tokenizer is checked against.
func scanXMLStd(doc []byte, names ...string) ([]element, error) {
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = false
	type open struct {
		el    element
		want  bool
		texts strings.Builder
	}
	var stack []*open
	var out []element
	for {
		before := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
		after := int(dec.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			o := &open{el: element{name: t.Name.Local, depth: len(stack) + 1, start: before, contentStart: after}, want: len(names) == 0}
			for _, n := range names {
				o.want = o.want || n == t.Name.Local
			}
			stack = append(stack, o)
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1].want {
				stack[len(stack)-1].texts.Write(t)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				continue
			}
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if o.want {
				o.el.contentEnd, o.el.end = before, after
				o.el.text = o.texts.String()
				out = append(out, o.el)
			}
		}
	}
}

func bbbFixtures(t testing.TB) map[string][]byte {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "bbb-responses", "*.xml"))
	if len(paths) == 0 {
		t.Fatal("no BBB response fixtures in ../testdata/bbb-responses")
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// Every real BBB answer scans to exactly what encoding/xml sees: names,
// depths, byte offsets and texts.
func TestScanXMLMatchesEncodingXMLOnRealAnswers(t *testing.T) {
	extra := map[string][]byte{
		"entities":    []byte("<r><a x='1>2' y=\"&amp;\">A &amp; B &lt;c&gt; &#233;&#xE9; &unknown; &amp</a><b/><c:d>x</c:d></r>"),
		"cdata":       []byte("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ELEMENT r ANY>]><r><!-- c > d --><a><![CDATA[<not> &amp; a tag]]>tail</a></r>"),
		"crlf":        []byte("<r>\r\n<a>one\r\ntwo\rthree</a>\r\n</r>"),
		"nested text": []byte("<r>before<a>inner</a>after</r>"),
	}
	docs := bbbFixtures(t)
	for k, v := range extra {
		docs[k] = v
	}
	for name, doc := range docs {
		for _, names := range [][]string{nil, {"meetingID", "meeting", "returncode"}, {"a", "r"}} {
			want, werr := scanXMLStd(doc, names...)
			got, gerr := scanXML(doc, names...)
			if werr != nil || gerr != nil {
				t.Fatalf("%s: errors: encoding/xml %v, scanXML %v", name, werr, gerr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %v:\n got %+v\nwant %+v", name, names, got, want)
			}
		}
	}
}

func TestScanXMLRejectsMalformed(t *testing.T) {
	for _, doc := range []string{"<a>", "<a></b>", "<a><b></a>", "<a", "<a><!-- x</a>", "<a><![CDATA[x</a>", "</a>", "<>x</>"} {
		if _, err := scanXML([]byte(doc)); err == nil {
			t.Errorf("%q: no error", doc)
		}
	}
}

// FuzzScanXMLMatchesEncodingXML: whatever both accept, both read alike, and
// scanXML never panics or returns offsets outside the document.
func FuzzScanXMLMatchesEncodingXML(f *testing.F) {
	for _, doc := range bbbFixtures(f) {
		f.Add(doc)
	}
	f.Add([]byte("<r><a x='1>2'>A &amp; &#233; &x; &</a><b/><!--c--><![CDATA[d]]></r>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, gerr := scanXML(doc)
		for _, e := range got {
			if !(0 <= e.start && e.start <= e.contentStart && e.contentStart <= e.contentEnd && e.contentEnd <= e.end && e.end <= len(doc)) {
				t.Fatalf("offsets out of order: %+v (len %d)", e, len(doc))
			}
		}
		want, werr := scanXMLStd(doc)
		if werr == nil && gerr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", doc, got, want)
		}
	})
}

func BenchmarkScanGetMeetings(b *testing.B) {
	doc := bbbFixtures(b)["get_meetings.xml"]
	names := []string{"returncode", "messageKey", "meeting", "meetingID", "participantCount"}
	for _, impl := range []struct {
		name string
		fn   func([]byte, ...string) ([]element, error)
	}{{"scanXML", scanXML}, {"encoding/xml", scanXMLStd}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.fn(doc, names...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// parseAnswer reads the same envelope as encoding/xml (the gateway's first
// implementation) from every real answer, and refuses what is not a BBB
// <response>.
func TestParseAnswerMatchesEncodingXML(t *testing.T) {
	for name, doc := range bbbFixtures(t) {
		var want struct {
			XMLName xml.Name `xml:"response"`
			bbb.Envelope
		}
		werr := xml.Unmarshal(doc, &want)
		got, _, gerr := parseAnswer(doc)
		if (werr == nil) != (gerr == nil) || got != want.Envelope {
			t.Fatalf("%s: got %+v (%v), want %+v (%v)", name, got, gerr, want, werr)
		}
	}
	for _, doc := range []string{"<html><body>502</body></html>", "not xml", "<response><returncode>SUCCESS</returncode>"} {
		if _, _, err := parseAnswer([]byte(doc)); err == nil {
			t.Errorf("%q accepted", doc)
		}
	}
}

// A hostile answer nesting ID elements cannot make the rewrite cut the
// document out of order.
func TestShowMeetingIDsNestedIDElements(t *testing.T) {
	doc := []byte("<response><returncode>SUCCESS</returncode><meetingName>fe~m<meetingID>fe~m</meetingID></meetingName></response>")
	_, els, err := parseAnswer(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := string(showMeetingIDs(doc, els, "fe~m", "m"))
	if want := "<response><returncode>SUCCESS</returncode><meetingName>fe~m<meetingID>m</meetingID></meetingName></response>"; got != want {
		t.Fatalf("got %s", got)
	}
}
