package fakebbb

import (
	"net/url"
	"testing"
)

// StartTest runs a fake node on a free loopback port until the test ends
// and returns it with its API URL and its host:port (a backend's ID).
func StartTest(t testing.TB, secret string) (s *Server, api, host string) {
	t.Helper()
	return StartTestWith(t, Config{Secret: secret})
}

// StartTestWith is StartTest for a node set up by c (a published dir, say).
func StartTestWith(t testing.TB, c Config) (s *Server, api, host string) {
	t.Helper()
	s = NewWithConfig(c)
	api, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	u, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	return s, api, u.Host
}
