// Package xmlscan reads BBB's XML answers as byte ranges: a small
// tokenizer that lists where elements sit, so answers can be patched as
// bytes instead of re-serialised (see Scan).
package xmlscan

import (
	"bytes"
	"encoding/xml"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Element is where one XML element sits in a document, so responses from
// backends can be cut and patched as bytes: everything we do not touch
// reaches the client exactly as BBB wrote it (no lossy re-serialisation).
type Element struct {
	Name                     string
	Depth                    int // 1 = root
	Start, End               int // the whole element, tags included
	ContentStart, ContentEnd int // between the tags
	Text                     string
}

// Scan lists the elements of doc whose local name is in names (every
// element when names is empty). It is a small tokenizer of its own rather
// than encoding/xml: the leader reads every backend's getMeetings answer each
// second and every forwarded answer is scanned for meeting IDs, and
// encoding/xml spent a third of a busy leader's CPU on it. For documents
// encoding/xml reads, the result is the same (FuzzScanXMLMatchesEncodingXML).
// Malformed input (unclosed or mismatched tags, an unterminated construct)
// is an error; text keeps unknown entities as written, like a non-strict
// encoding/xml.Decoder.
func Scan(doc []byte, names ...string) ([]Element, error) {
	type open struct {
		name []byte // in doc: no copy for elements nobody asked for
		el   Element
		want bool
		text []byte
	}
	var stack []open
	var out []Element
	i := 0
	for i < len(doc) {
		lt := bytes.IndexByte(doc[i:], '<')
		if lt < 0 {
			lt = len(doc) - i
		}
		if lt > 0 && len(stack) > 0 && stack[len(stack)-1].want {
			top := &stack[len(stack)-1]
			top.text = appendUnescaped(top.text, doc[i:i+lt])
		}
		i += lt
		if i >= len(doc) {
			break
		}
		rest := doc[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<?")):
			n := bytes.Index(rest, []byte("?>"))
			if n < 0 {
				return out, errXMLSyntax("unterminated processing instruction", i)
			}
			i += n + 2
		case bytes.HasPrefix(rest, []byte("<!--")):
			n := bytes.Index(rest[4:], []byte("-->"))
			if n < 0 {
				return out, errXMLSyntax("unterminated comment", i)
			}
			i += 4 + n + 3
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			n := bytes.Index(rest[9:], []byte("]]>"))
			if n < 0 {
				return out, errXMLSyntax("unterminated CDATA section", i)
			}
			if len(stack) > 0 && stack[len(stack)-1].want {
				top := &stack[len(stack)-1]
				top.text = appendNewlines(top.text, rest[9:9+n])
			}
			i += 9 + n + 3
		case bytes.HasPrefix(rest, []byte("<!")): // DOCTYPE and friends
			n := markupEnd(rest, true)
			if n < 0 {
				return out, errXMLSyntax("unterminated declaration", i)
			}
			i += n
		case bytes.HasPrefix(rest, []byte("</")):
			n := bytes.IndexByte(rest, '>')
			if n < 0 {
				return out, errXMLSyntax("unterminated end tag", i)
			}
			name := localName(bytes.TrimRight(rest[2:n], " \t\r\n"))
			if len(stack) == 0 || !bytes.Equal(stack[len(stack)-1].name, name) {
				return out, errXMLSyntax("unexpected end tag </"+string(name)+">", i)
			}
			o := &stack[len(stack)-1]
			if o.want {
				o.el.ContentEnd, o.el.End = i, i+n+1
				o.el.Text = string(o.text)
				out = append(out, o.el)
			}
			stack = stack[:len(stack)-1]
			i += n + 1
		default:
			n := markupEnd(rest, false)
			if n < 0 {
				return out, errXMLSyntax("unterminated start tag", i)
			}
			nameEnd := 1
			for nameEnd < n && !isXMLSpace(rest[nameEnd]) && rest[nameEnd] != '/' && rest[nameEnd] != '>' {
				nameEnd++
			}
			if nameEnd == 1 {
				return out, errXMLSyntax("start tag without a name", i)
			}
			name := localName(rest[1:nameEnd])
			el := Element{Depth: len(stack) + 1, Start: i, ContentStart: i + n}
			want := len(names) == 0
			for _, w := range names {
				want = want || w == string(name)
			}
			if want {
				el.Name = string(name)
			}
			if rest[n-2] == '/' { // <empty/>
				if want {
					el.ContentEnd, el.End = i+n, i+n
					out = append(out, el)
				}
			} else {
				stack = append(stack, open{name: name, el: el, want: want})
			}
			i += n
		}
	}
	if len(stack) > 0 {
		return out, errXMLSyntax("unexpected EOF: <"+string(stack[len(stack)-1].name)+"> not closed", len(doc))
	}
	return out, nil
}

type xmlSyntaxError struct {
	msg    string
	offset int
}

func (e *xmlSyntaxError) Error() string {
	return "XML syntax error at byte " + strconv.Itoa(e.offset) + ": " + e.msg
}

func errXMLSyntax(msg string, offset int) error { return &xmlSyntaxError{msg, offset} }

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// localName drops a namespace prefix (x:name → name), as encoding/xml does.
func localName(b []byte) []byte {
	if c := bytes.IndexByte(b, ':'); c > 0 && c < len(b)-1 && bytes.IndexByte(b[c+1:], ':') < 0 {
		b = b[c+1:]
	}
	return b
}

// markupEnd returns the length of the markup at the start of b (a start
// tag, or a <!…> declaration when inDecl) through its closing '>': quoted
// values may hold '>', and a declaration nests angle brackets (its
// internal subset: <!DOCTYPE x [<!ENTITY …>]>), skipping comments inside,
// as encoding/xml reads it (its first byte never ends or nests it). It returns -1 when b ends first.
func markupEnd(b []byte, inDecl bool) int {
	depth := 0
	var quote byte
	start := 1
	if inDecl {
		start = 3 // encoding/xml takes the byte after "<!" as the declaration's, whatever it is
	}
	for j := start; j < len(b); j++ {
		c := b[j]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case inDecl && c == '<':
			if bytes.HasPrefix(b[j:], []byte("<!--")) {
				n := bytes.Index(b[j+4:], []byte("-->"))
				if n < 0 {
					return -1
				}
				j += 4 + n + 2
				continue
			}
			depth++
		case c == '>' && depth > 0:
			depth--
		case c == '>':
			return j + 1
		}
	}
	return -1
}

var xmlEntities = map[string]string{"lt": "<", "gt": ">", "amp": "&", "quot": `"`, "apos": "'"}

// appendUnescaped appends character data with entities and character
// references resolved; an unknown or malformed reference stays as written.
func appendUnescaped(dst, text []byte) []byte {
	for {
		amp := bytes.IndexByte(text, '&')
		if amp < 0 {
			return appendNewlines(dst, text)
		}
		dst = appendNewlines(dst, text[:amp])
		text = text[amp:]
		semi := bytes.IndexByte(text, ';')
		if semi > 1 && semi < 12 {
			ref := string(text[1:semi])
			if r, ok := xmlEntities[ref]; ok {
				dst = append(dst, r...)
				text = text[semi+1:]
				continue
			}
			if r, ok := charRef(ref); ok {
				dst = utf8.AppendRune(dst, r)
				text = text[semi+1:]
				continue
			}
		}
		dst = append(dst, '&')
		text = text[1:]
	}
}

// charRef reads #123 or #x7B.
func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	var n uint64
	var err error
	if ref[1] == 'x' {
		n, err = strconv.ParseUint(ref[2:], 16, 32)
	} else {
		n, err = strconv.ParseUint(ref[1:], 10, 32)
	}
	if err != nil || !isXMLChar(rune(n)) {
		return 0, false
	}
	return rune(n), true
}

// isXMLChar is XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// appendNewlines appends text with line ends normalised to \n, as XML
// parsers do.
func appendNewlines(dst, text []byte) []byte {
	for {
		cr := bytes.IndexByte(text, '\r')
		if cr < 0 {
			return append(dst, text...)
		}
		dst = append(dst, text[:cr]...)
		dst = append(dst, '\n')
		text = text[cr+1:]
		if len(text) > 0 && text[0] == '\n' {
			text = text[1:]
		}
	}
}

// EscapeText renders s as XML character data.
func EscapeText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// RewriteTexts replaces the content of every element named one of names
// whose text fn maps to a new value. Elements fn declines are left as they were.
func RewriteTexts(doc []byte, names []string, fn func(string) (string, bool)) []byte {
	els, err := Scan(doc, names...)
	if err != nil {
		return doc
	}
	return RewriteElements(doc, els, names, fn)
}

// RewriteElements is RewriteTexts on a document already scanned into els
// (which may list more names than the ones to rewrite).
func RewriteElements(doc []byte, els []Element, names []string, fn func(string) (string, bool)) []byte {
	var out []byte
	last := 0
	for _, e := range els {
		// els are in closing order: an element holding one already rewritten
		// (nested wanted names, only in a hostile answer) is left alone.
		if e.ContentStart < last || !slices.Contains(names, e.Name) {
			continue
		}
		v, ok := fn(e.Text)
		if !ok {
			continue
		}
		out = append(out, doc[last:e.ContentStart]...)
		out = append(out, EscapeText(v)...)
		last = e.ContentEnd
	}
	if out == nil {
		return doc
	}
	return append(out, doc[last:]...)
}
