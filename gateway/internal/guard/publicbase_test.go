package guard

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestParsePublicURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://bbb.example.org":       "https://bbb.example.org",
		"https://bbb.example.org/":      "https://bbb.example.org",
		"http://10.0.0.5:8080":          "http://10.0.0.5:8080",
		"https://bbb.example.org/path":  "",
		"ftp://bbb.example.org":         "",
		"https://user:pw@example.org":   "",
		"https://bbb.example.org/?q=1":  "",
		"bbb.example.org":               "",
		"https://bbb<x>.example.org":    "",
		"https://bbb.example.org/#frag": "",
	} {
		got, err := ParsePublicURL(in)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}

// The configured public URL wins over whatever the request says; without
// one, the host is the request's (a trusted proxy's X-Forwarded-* only),
// and a host that is not a plain name is refused.
func TestPublicBase(t *testing.T) {
	t.Parallel()
	req := func(host string, hdr map[string]string) *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetHost(host)
		for k, v := range hdr {
			ctx.Request.Header.Set(k, v)
		}
		return &ctx
	}
	fixed := New(Config{PublicURL: "https://bbb.example.org"})
	if b, ok := fixed.PublicBase(req("internal:42353", nil)); !ok || b != "https://bbb.example.org" {
		t.Fatalf("configured: %q %v", b, ok)
	}
	open := New(Config{})
	if b, ok := open.PublicBase(req("peer1:42353", map[string]string{"X-Forwarded-Host": "evil.example.org", "X-Forwarded-Proto": "https"})); !ok || b != "http://peer1:42353" {
		t.Fatalf("an untrusted sender's X-Forwarded-*: %q %v", b, ok)
	}
	if _, ok := open.PublicBase(req("a\"><x", nil)); ok {
		t.Fatal("a host that would break the XML")
	}
}
