package auth

import (
	"net"
	"strings"
)

// SameHostPort compares a canonical host:port with a peer address; two
// loopback or unspecified hosts count as one.
func SameHostPort(hp, addr string) bool {
	c, err := CanonicalHostPort(addr)
	if err != nil {
		return false
	}
	if c == hp {
		return true
	}
	h1, p1, _ := net.SplitHostPort(hp)
	h2, p2, _ := net.SplitHostPort(c)
	return p1 == p2 && localHost(h1) && localHost(h2)
}

func localHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}
