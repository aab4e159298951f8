package bbb

import (
	"strings"
	"testing"
)

func TestNormalizeAPIURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://a.example":                         "https://a.example/bigbluebutton/api/",
		"https://a.example/":                        "https://a.example/bigbluebutton/api/",
		"https://a.example/bigbluebutton":           "https://a.example/bigbluebutton/api/",
		"https://a.example/bigbluebutton/api":       "https://a.example/bigbluebutton/api/",
		"https://a.example/bigbluebutton/api/":      "https://a.example/bigbluebutton/api/",
		"https://a.example/bigbluebutton/api//":     "https://a.example/bigbluebutton/api/",
		"  http://a.example:8090/bigbluebutton/  ":  "http://a.example:8090/bigbluebutton/api/",
		"HTTPS://a.example/bigbluebutton":           "https://a.example/bigbluebutton/api/",
		"https://a.example/sub/bigbluebutton/api/":  "https://a.example/sub/bigbluebutton/api/",
		"https://[2001:db8::1]:8443/bigbluebutton/": "https://[2001:db8::1]:8443/bigbluebutton/api/",
	} {
		got, err := NormalizeAPIURL(raw)
		if err != nil || got != want {
			t.Errorf("NormalizeAPIURL(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{
		"", "nonsense", "a.example/bigbluebutton/api/", "ftp://x/bigbluebutton/api/", "https:///bigbluebutton/api/",
		"https://x/other/", "https://x/bigbluebutton/api/join", "https://x/bigbluebutton/api/?a=1",
		"https://x/bigbluebutton/api/#f", "https://u:p@x/bigbluebutton/api/",
		"https://x/" + strings.Repeat("a", MaxAPIURLLen) + "/bigbluebutton/api/",
	} {
		if got, err := NormalizeAPIURL(raw); err == nil {
			t.Errorf("NormalizeAPIURL(%q) = %q, want an error", raw, got)
		}
	}
}
