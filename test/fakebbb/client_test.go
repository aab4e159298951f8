package fakebbb_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"github.com/conclave-lb/conclave/test/harness"
	"io"
	"mime/multipart"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/test/fakebbb"
)

// client is an LMS-like BBB client for these tests. It computes checksums
// itself (not with the bbb package the fake verifies with), so a bug shared
// by signer and verifier cannot hide.
type client struct {
	t      *testing.T
	base   string // http://host:port/bigbluebutton/api
	secret string
	algo   string // sha1, sha256 (default), sha384, sha512
}

// startNode runs a fake node on a loopback port for the test's lifetime.
func startNode(t *testing.T, secret string) (*fakebbb.Server, client) {
	t.Helper()
	s := fakebbb.New(secret)
	api, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !strings.HasSuffix(api, "/bigbluebutton/api/") {
		t.Fatalf("Start returned %q", api)
	}
	return s, client{t: t, base: strings.TrimSuffix(api, "/"), secret: secret}
}

// checksum is computed independently of the bbb package under test.
func checksum(algo, call, query, secret string) string {
	return harness.BBBClient{Secret: secret, Algo: algo}.Sum(call, query)
}

// url is call's URL with query signed.
func (c client) url(call, query string) string {
	sum := checksum(c.algo, call, query, c.secret)
	if query == "" {
		return c.base + "/" + call + "?checksum=" + sum
	}
	return c.base + "/" + call + "?" + query + "&checksum=" + sum
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// answer is one HTTP answer; tree is its XML, parsed, when it is XML.
type answer struct {
	status int
	header http.Header
	body   string
	tree   *node
}

func (a answer) get(path string) string { return a.tree.get(path) }
func (a answer) returncode() string     { return a.get("returncode") }
func (a answer) key() string            { return a.get("messageKey") }

func (c client) get(call, query string) answer {
	c.t.Helper()
	return fetch(c.t, "GET", c.url(call, query), "", "")
}

func (c client) post(call, query, contentType, body string) answer {
	c.t.Helper()
	return fetch(c.t, "POST", c.url(call, query), contentType, body)
}

// mustOK fails the test unless the call answered SUCCESS.
func (c client) mustOK(call, query string) answer {
	c.t.Helper()
	a := c.get(call, query)
	if a.returncode() != "SUCCESS" {
		c.t.Fatalf("%s?%s: %s", call, query, a.body)
	}
	return a
}

// fetch makes one request without following redirects. Every XML answer
// must be well-formed, and BBB answers are HTTP 200 even when FAILED.
func fetch(t *testing.T, method, u, contentType, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(data)}
	if strings.Contains(resp.Header.Get("Content-Type"), "xml") {
		a.tree, err = parseTree(data)
		if err != nil {
			t.Fatalf("%s %s: malformed XML (%v): %s", method, u, err, data)
		}
	}
	return a
}

// multipartBody builds a multipart/form-data body with one file field.
func multipartBody(t *testing.T, field, filename, content string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if field != "" {
		fw, err := w.CreateFormFile(field, filename)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(fw, content)
	}
	w.Close()
	return w.FormDataContentType(), buf.String()
}

// node is a generic XML element tree, to compare answers with BBB's real
// ones field for field without knowing their schema.
type node struct {
	name  string
	attrs map[string]string
	text  string
	kids  []*node
}

func parseTree(data []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []*node
	var root *node
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			n := &node{name: tk.Name.Local, attrs: map[string]string{}}
			for _, a := range tk.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.kids = append(p.kids, n)
			} else if root == nil {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(tk)
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("no root element")
	}
	return root, nil
}

// all returns the elements at a slash path below n ("meetings/meeting").
func (n *node) all(path string) []*node {
	if n == nil {
		return nil
	}
	cur := []*node{n}
	for _, part := range strings.Split(path, "/") {
		var next []*node
		for _, c := range cur {
			for _, k := range c.kids {
				if k.name == part {
					next = append(next, k)
				}
			}
		}
		cur = next
	}
	return cur
}

// get is the trimmed text of the first element at path, "" if none.
func (n *node) get(path string) string {
	if all := n.all(path); len(all) > 0 {
		return strings.TrimSpace(all[0].text)
	}
	return ""
}

func (n *node) has(path string) bool { return len(n.all(path)) > 0 }

// paths lists every element path (and attribute, as path/@name) below and
// including n. Repeated elements collapse into one path, so lists compare
// by the structure of their items, not by their number.
func (n *node) paths() map[string]bool {
	out := map[string]bool{}
	var walk func(prefix string, n *node)
	walk = func(prefix string, n *node) {
		p := prefix + n.name
		out[p] = true
		for a := range n.attrs {
			out[p+"/@"+a] = true
		}
		for _, k := range n.kids {
			walk(p+"/", k)
		}
	}
	walk("", n)
	return out
}

// jsonPaths lists every key path of a JSON document; array items collapse
// into "[]".
func jsonPaths(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("malformed JSON (%v): %s", err, data)
	}
	out := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				out[prefix+k] = true
				walk(prefix+k+"/", c)
			}
		case []any:
			for _, c := range x {
				out[prefix+"[]"] = true
				walk(prefix+"[]/", c)
			}
		}
	}
	walk("", v)
	return out
}

// missing lists the paths of want absent from got, sorted.
func missing(want, got map[string]bool) []string {
	var out []string
	for p := range want {
		if !got[p] {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// jsonResponse decodes a text-track answer's "response" object.
func jsonResponse(t *testing.T, a answer) map[string]any {
	t.Helper()
	if !strings.Contains(a.header.Get("Content-Type"), "json") {
		t.Fatalf("not JSON (%s): %s", a.header.Get("Content-Type"), a.body)
	}
	var v struct {
		Response map[string]any `json:"response"`
	}
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("malformed JSON (%v): %s", err, a.body)
	}
	return v.Response
}
