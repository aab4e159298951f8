package xmlscan

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/internal/fixtures"
)

// scanStd is Scan written on encoding/xml, its first implementation:
// the oracle the hand-written tokenizer is checked against.
func scanStd(doc []byte, names ...string) ([]Element, error) {
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = false
	type open struct {
		el    Element
		want  bool
		texts strings.Builder
	}
	var stack []*open
	var out []Element
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
			o := &open{el: Element{Name: t.Name.Local, Depth: len(stack) + 1, Start: before, ContentStart: after}, want: len(names) == 0}
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
				o.el.ContentEnd, o.el.End = before, after
				o.el.Text = o.texts.String()
				out = append(out, o.el)
			}
		}
	}
}

// Every real BBB answer scans to exactly what encoding/xml sees: names,
// depths, byte offsets and texts.
func TestScanXMLMatchesEncodingXMLOnRealAnswers(t *testing.T) {
	t.Parallel()
	extra := map[string][]byte{
		"entities":    []byte("<r><a x='1>2' y=\"&amp;\">A &amp; B &lt;c&gt; &#233;&#xE9; &unknown; &amp</a><b/><c:d>x</c:d></r>"),
		"cdata":       []byte("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ELEMENT r ANY>]><r><!-- c > d --><a><![CDATA[<not> &amp; a tag]]>tail</a></r>"),
		"crlf":        []byte("<r>\r\n<a>one\r\ntwo\rthree</a>\r\n</r>"),
		"nested text": []byte("<r>before<a>inner</a>after</r>"),
	}
	docs := fixtures.BBBResponses(t)
	for k, v := range extra {
		docs[k] = v
	}
	for name, doc := range docs {
		for _, names := range [][]string{nil, {"meetingID", "meeting", "returncode"}, {"a", "r"}} {
			want, werr := scanStd(doc, names...)
			got, gerr := Scan(doc, names...)
			if werr != nil || gerr != nil {
				t.Fatalf("%s: errors: encoding/xml %v, Scan %v", name, werr, gerr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %v:\n got %+v\nwant %+v", name, names, got, want)
			}
		}
	}
}

func TestScanXMLRejectsMalformed(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"<a>", "<a></b>", "<a><b></a>", "<a", "<a><!-- x</a>", "<a><![CDATA[x</a>", "</a>", "<>x</>"} {
		if _, err := Scan([]byte(doc)); err == nil {
			t.Errorf("%q: no error", doc)
		}
	}
}

// FuzzScanXMLMatchesEncodingXML: whatever both accept, both read alike, and
// Scan never panics or returns offsets outside the document.
func FuzzScanXMLMatchesEncodingXML(f *testing.F) {
	for _, doc := range fixtures.BBBResponses(f) {
		f.Add(doc)
	}
	f.Add([]byte("<r><a x='1>2'>A &amp; &#233; &x; &</a><b/><!--c--><![CDATA[d]]></r>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, gerr := Scan(doc)
		for _, e := range got {
			if !(0 <= e.Start && e.Start <= e.ContentStart && e.ContentStart <= e.ContentEnd && e.ContentEnd <= e.End && e.End <= len(doc)) {
				t.Fatalf("offsets out of order: %+v (len %d)", e, len(doc))
			}
		}
		want, werr := scanStd(doc)
		if werr == nil && gerr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", doc, got, want)
		}
	})
}

func BenchmarkScanGetMeetings(b *testing.B) {
	doc := fixtures.BBBResponses(b)["get_meetings.xml"]
	names := []string{"returncode", "messageKey", "meeting", "meetingID", "participantCount"}
	for _, impl := range []struct {
		name string
		fn   func([]byte, ...string) ([]Element, error)
	}{{"Scan", Scan}, {"encoding/xml", scanStd}} {
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
