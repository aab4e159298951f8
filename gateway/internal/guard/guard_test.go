package guard

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestParseTrustedProxies(t *testing.T) {
	ps, err := ParseTrustedProxies(" 10.0.0.0/8, 192.168.1.7 ,::1,2001:db8::/32,,::ffff:172.16.0.0/108")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "::1/128", "2001:db8::/32", "172.16.0.0/12"}
	if len(ps) != len(want) {
		t.Fatalf("%v", ps)
	}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Errorf("%d: %s, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.org", "10.0.0.1/8/2", "1.2.3"} {
		if _, err := ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestClientAddrTrustsOnlyTrustedProxies(t *testing.T) {
	trusted, _ := ParseTrustedProxies("10.0.0.0/8")
	behind := New(Config{ReverseProxy: true, TrustedProxies: trusted})
	loopOnly := New(Config{ReverseProxy: true})
	direct := New(Config{})
	cases := []struct {
		g      *Guard
		remote string
		xff    []string
		want   string
	}{
		{direct, "10.0.0.5", []string{"1.2.3.4"}, "10.0.0.5"},                                   // not in proxy mode
		{behind, "198.51.100.7", []string{"127.0.0.1"}, "198.51.100.7"},                         // direct caller: ignored
		{behind, "10.0.0.5", []string{"1.2.3.4"}, "1.2.3.4"},                                    // from the proxy
		{behind, "10.0.0.5", []string{"127.0.0.1, 1.2.3.4, 10.0.0.7"}, "1.2.3.4"},               // right-most untrusted
		{behind, "10.0.0.5", []string{"127.0.0.1", "1.2.3.4"}, "1.2.3.4"},                       // two header lines
		{behind, "10.0.0.5", []string{"10.0.0.9, 10.1.1.1"}, "10.0.0.9"},                        // all trusted: left-most
		{behind, "10.0.0.5", []string{"1.2.3.4, bogus"}, "10.0.0.5"},                            // garbage from the proxy's side
		{behind, "10.0.0.5", []string{"bogus, 1.2.3.4"}, "1.2.3.4"},                             // garbage to the left is the client's
		{behind, "10.0.0.5", []string{"[2001:db8::1]:443"}, "2001:db8::1"},                      // with a port
		{behind, "::ffff:10.0.0.5", []string{"::ffff:203.0.113.1"}, "203.0.113.1"},              // mapped IPv4
		{behind, "10.0.0.5", nil, "10.0.0.5"},                                                   // no header
		{loopOnly, "127.0.0.1", []string{"203.0.113.9"}, "203.0.113.9"},                         // default: loopback proxy
		{loopOnly, "192.0.2.1", []string{"127.0.0.1"}, "192.0.2.1"},                             // default: nobody else
		{loopOnly, "::1", []string{"203.0.113.9, ::1"}, "203.0.113.9"},                          // IPv6 loopback proxy
		{behind, "10.0.0.5", []string{" 127.0.0.1 ,, 198.51.100.1 ,10.2.2.2 "}, "198.51.100.1"}, // spacing, empty entries
	}
	for _, c := range cases {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI("/")
		for _, h := range c.xff {
			req.Header.Add("X-Forwarded-For", h)
		}
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(c.remote), Port: 5000}, nil)
		if got := c.g.ClientAddr(&ctx); got != netip.MustParseAddr(c.want) {
			t.Errorf("remote %s, X-Forwarded-For %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestBodyGateBounds(t *testing.T) {
	g := newBodyGate(100, 3)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	h1, ok1 := g.acquire(a, 30)
	h2, ok2 := g.acquire(a, 20)
	if !ok1 || !ok2 {
		t.Fatal("within the bounds")
	}
	if _, ok := g.acquire(a, 1); ok { // over half the budget for one client
		t.Fatal("one client took more than half the budget")
	}
	hb, okb := g.acquire(b, 40)
	if !okb {
		t.Fatal("another client refused")
	}
	if _, ok := g.acquire(netip.MustParseAddr("192.0.2.3"), 11); ok { // 101 in all
		t.Fatal("over the global budget")
	}
	g.release(&h1)
	g.release(&h1) // twice: a no-op
	if _, ok := g.acquire(a, 30); !ok {
		t.Fatal("released bytes not reusable")
	}
	g.release(&h2)
	g.release(&hb)
	c := newBodyGate(1<<30, 2)
	c.acquire(a, SmallBody+1)
	c.acquire(a, SmallBody+1)
	if _, ok := c.acquire(a, SmallBody+1); ok {
		t.Fatal("over the per-client count")
	}
	// Small bodies count against the bytes only: a client's parallel
	// admin writes or slides lists are not refused by the count.
	var small []Hold
	for i := 0; i < 3*MaxBodiesPerClient; i++ {
		h, ok := c.acquire(a, SmallBody)
		if !ok {
			t.Fatalf("small body %d refused", i)
		}
		small = append(small, h)
	}
	for i := range small {
		c.release(&small[i])
	}
	if c.bytes != 2*(SmallBody+1) || c.inFlight(a) != 2 {
		t.Fatalf("after releasing the small bodies: %d bytes, %d large in flight", c.bytes, c.inFlight(a))
	}
}
