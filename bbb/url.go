package bbb

import (
	"fmt"
	"net/url"
	"strings"
)

// MaxAPIURLLen bounds a BBB API URL, so no backend URL can bloat the state.
const MaxAPIURLLen = 2048

// NormalizeAPIURL checks a BBB API URL and returns it ending in
// "/bigbluebutton/api/" (a bare host or ".../bigbluebutton" is completed;
// the scheme comes back lower-case). Conclave's peers, agents and gossip
// all compare backend URLs in this form.
func NormalizeAPIURL(raw string) (string, error) {
	if len(raw) > MaxAPIURLLen {
		return "", fmt.Errorf("backend URL longer than %d characters", MaxAPIURLLen)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a BBB API URL: want http(s)://host/bigbluebutton/api/", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q is not a BBB API URL: no query, fragment or credentials allowed", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
		p = "/bigbluebutton/api"
	case strings.HasSuffix(p, "/bigbluebutton"):
		p += "/api"
	case strings.HasSuffix(p, "/bigbluebutton/api"):
	default:
		return "", fmt.Errorf("%q is not a BBB API URL: the path must end in /bigbluebutton/api/", raw)
	}
	u.Path = p + "/"
	return u.String(), nil
}
