package auth

import (
	"bytes"
	"testing"
)

func TestHostPortCanonical(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://BBB1.example.org/bigbluebutton/api/":      "bbb1.example.org:443",
		"http://bbb1.example.org/bigbluebutton/api/":       "bbb1.example.org:80",
		"http://bbb1.example.org:8090/bigbluebutton/api/":  "bbb1.example.org:8090",
		"http://[::1]:8090/bigbluebutton/api/":             "[::1]:8090",
		"https://bbb1.example.org.:443/bigbluebutton/api/": "bbb1.example.org:443",
	} {
		if got, err := HostPort(in); err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"bbb1.example.org", "ftp://x/", "http://x:0/", "http://x:99999/"} {
		if got, err := HostPort(bad); err == nil {
			t.Errorf("HostPort(%q) = %q, want an error", bad, got)
		}
	}
}

// A token names host AND port: a bare host, or another port on the same
// host, does not match.
func TestAgentMayChangeNeedsHostAndPort(t *testing.T) {
	t.Parallel()
	u := "http://node1.example.org:8090/bigbluebutton/api/"
	for sub, want := range map[string]bool{
		"node1.example.org:8090": true,
		"NODE1.example.org:8090": true,
		"node1.example.org":      false, // bare host: any port would do
		"node1.example.org:8091": false,
		"node2.example.org:8090": false,
		"":                       false,
	} {
		if got := AgentMayChange(sub, u); got != want {
			t.Errorf("subject %q on %s: %v, want %v", sub, u, got, want)
		}
	}
	if !AgentMayChange("bbb.example.org:443", "https://bbb.example.org/bigbluebutton/api/") {
		t.Error("the default https port must match an explicit :443 subject")
	}
}

func TestAgentLoadKeyPerHostPortAndSecret(t *testing.T) {
	t.Parallel()
	a := AgentLoadKey("s1", "bbb1:443")
	if len(a) != 32 || bytes.Equal(a, AgentLoadKey("s1", "bbb1:444")) || bytes.Equal(a, AgentLoadKey("s2", "bbb1:443")) ||
		!bytes.Equal(a, AgentLoadKey("s1", "bbb1:443")) {
		t.Fatal("the load key must depend on the secret and the host:port, and only on them")
	}
}
