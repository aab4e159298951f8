package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// An agent token (scope conclave:agent) names one BBB server by host AND
// port: its subject is "host:port", the backend URL's host and port (the
// scheme's default port when the URL names none). A bare host is refused,
// so a token for one server cannot change another on the same host.

// HostPort is the canonical "host:port" of an http(s) URL: host in lower
// case (IPv6 in brackets), port explicit (80 or 443 when the URL has none).
func HostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", errors.New("auth: not an absolute URL")
	}
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return "", errors.New("auth: URL scheme is not http or https")
		}
	}
	return CanonicalHostPort(net.JoinHostPort(u.Hostname(), port))
}

// CanonicalHostPort checks "host:port" (port required, 1-65535) and
// returns it with the host in lower case.
func CanonicalHostPort(s string) (string, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil || host == "" {
		return "", errors.New("auth: want host:port")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", errors.New("auth: bad port in host:port")
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), strconv.Itoa(p)), nil
}

// AgentMayChange reports whether an agent token's subject names the
// backend at backendURL: both must be the same host:port. Admin tokens
// are not this function's business (callers check HasScope(ScopeAdmin)).
func AgentMayChange(subject, backendURL string) bool {
	sub, err := CanonicalHostPort(subject)
	if err != nil {
		return false
	}
	hp, err := HostPort(backendURL)
	return err == nil && sub == hp
}

// AgentLoadKey is the key an agent signs its gossiped load with:
// HMAC-SHA256(jwtSecret, "conclave-agent-load\x00" + host:port). Every peer
// derives it from its own JWT secret to verify a report for a backend on
// hostPort; an agent gets it, once, from a peer's admin API by showing an
// agent token for that host:port. It never travels in gossip.
func AgentLoadKey(jwtSecret, hostPort string) []byte {
	m := hmac.New(sha256.New, []byte(jwtSecret))
	m.Write([]byte("conclave-agent-load\x00"))
	m.Write([]byte(hostPort))
	return m.Sum(nil)
}
