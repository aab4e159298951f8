package gateway

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// element is where one XML element sits in a document, so responses from
// backends can be cut and patched as bytes: everything we do not touch
// reaches the client exactly as BBB wrote it (no lossy re-serialisation).
type element struct {
	name                     string
	depth                    int // 1 = root
	start, end               int // the whole element, tags included
	contentStart, contentEnd int // between the tags
	text                     string
}

// scanXML lists the elements of doc whose local name is in names (every
// element when names is empty).
func scanXML(doc []byte, names ...string) ([]element, error) {
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

// escapeText renders s as XML character data.
func escapeText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// rewriteTexts replaces the content of every element named one of names
// whose text fn maps to a new value. Elements fn declines are left as they were.
func rewriteTexts(doc []byte, names []string, fn func(string) (string, bool)) []byte {
	els, err := scanXML(doc, names...)
	if err != nil || len(els) == 0 {
		return doc
	}
	var out []byte
	last := 0
	for _, e := range els {
		v, ok := fn(e.text)
		if !ok {
			continue
		}
		out = append(out, doc[last:e.contentStart]...)
		out = append(out, escapeText(v)...)
		last = e.contentEnd
	}
	if out == nil {
		return doc
	}
	return append(out, doc[last:]...)
}
