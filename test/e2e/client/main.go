// Command client is the e2e tests' BBB client (test/e2e). It runs in a
// container of its own on the compose network and behaves like an LMS that
// reaches Conclave through DNS round-robin: before every request it
// resolves the name (-host, default "conclave") afresh and picks one of the
// addresses at random.
//
// Loop mode (-op loop) runs -workers sequential workers, each repeating
//
//	create M → join M (302; the Location host is the backend) →
//	getMeetingInfo M → join of an earlier meeting of its own
//
// until -count iterations, -duration, or SIGTERM/SIGINT, whichever comes
// first. Single-request modes (-op create|join|info -meeting ID) serve the
// tests' probes of one peer (-target ADDR, e.g. from inside a partitioned
// peer's network namespace).
//
// It prints one JSON line per request on stdout:
//
//	{"at":"…","ms":12.3,"op":"create","meeting":"p1-w0-7","ok":true,"status":200,
//	 "key":"","err":"","backend":"","peer":"172.18.0.5:42353"}
//
// and a last line with "op":"summary". Checksums are computed here
// (sha256), independently of Conclave's own code.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Record is one request's outcome (the tests parse these).
type Record struct {
	At      time.Time `json:"at"`
	Ms      float64   `json:"ms"`
	Op      string    `json:"op"` // create, join, info, rejoin, summary
	Meeting string    `json:"meeting,omitempty"`
	OK      bool      `json:"ok"`
	Status  int       `json:"status,omitempty"`
	Key     string    `json:"key,omitempty"` // BBB messageKey of a FAILED answer
	Err     string    `json:"err,omitempty"`
	Backend string    `json:"backend,omitempty"` // join: the Location's host
	Peer    string    `json:"peer,omitempty"`    // the address the request went to
	// summary only
	Requests int `json:"requests,omitempty"`
	Failed   int `json:"failed,omitempty"`
}

type config struct {
	host, target, secret, prefix, op, meeting string
	port, count, workers                      int
	duration, interval, timeout               time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.host, "host", "conclave", "DNS name of the peers (resolved before every request)")
	flag.IntVar(&c.port, "port", 42353, "peers' HTTP port")
	flag.StringVar(&c.target, "target", "", "fixed address host:port instead of -host (no DNS)")
	flag.StringVar(&c.secret, "secret", "", "the frontend's secret")
	flag.StringVar(&c.prefix, "prefix", "m", "meeting ID prefix (loop mode)")
	flag.StringVar(&c.op, "op", "loop", "loop, create, join or info")
	flag.StringVar(&c.meeting, "meeting", "", "meeting ID (single-request modes)")
	flag.IntVar(&c.count, "count", 1000, "most iterations per worker (loop mode; at most 100000)")
	flag.IntVar(&c.workers, "workers", 2, "concurrent workers (loop mode; at most 16)")
	flag.DurationVar(&c.duration, "duration", time.Minute, "longest run (loop mode; at most 10m)")
	flag.DurationVar(&c.interval, "interval", 20*time.Millisecond, "pause between iterations")
	flag.DurationVar(&c.timeout, "timeout", 12*time.Second, "per-request timeout")
	flag.Parse()
	if c.secret == "" {
		fmt.Fprintln(os.Stderr, "client: -secret is required")
		os.Exit(2)
	}
	// Bounds: a loop always ends by itself.
	c.count = min(max(c.count, 1), 100000)
	c.workers = min(max(c.workers, 1), 16)
	c.duration = min(max(c.duration, time.Second), 10*time.Minute)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := &printer{enc: json.NewEncoder(os.Stdout)}
	cl := newClient(c)

	switch c.op {
	case "loop":
		ctx, cancel := context.WithTimeout(ctx, c.duration)
		defer cancel()
		var wg sync.WaitGroup
		for w := 0; w < c.workers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); cl.worker(ctx, w, out) }()
		}
		wg.Wait()
	case "create", "join", "info":
		if c.meeting == "" {
			fmt.Fprintln(os.Stderr, "client: -meeting is required with -op", c.op)
			os.Exit(2)
		}
		out.print(cl.do(context.Background(), c.op, c.meeting))
	default:
		fmt.Fprintln(os.Stderr, "client: unknown -op", c.op)
		os.Exit(2)
	}
	out.print(Record{At: time.Now(), Op: "summary", OK: true, Requests: out.requests, Failed: out.failed})
}

type printer struct {
	mu               sync.Mutex
	enc              *json.Encoder
	requests, failed int
}

func (p *printer) print(r Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Op != "summary" {
		p.requests++
		if !r.OK {
			p.failed++
		}
	}
	_ = p.enc.Encode(r)
}

type client struct {
	c    config
	http *http.Client
	res  *net.Resolver
}

func newClient(c config) *client {
	tr := &http.Transport{
		// A new connection per request, to the address just resolved: no
		// pooled connection outlives a peer's death or a partition.
		DisableKeepAlives:     true,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		ResponseHeaderTimeout: c.timeout,
	}
	return &client{
		c: c,
		http: &http.Client{
			Transport:     tr,
			Timeout:       c.timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		res: &net.Resolver{PreferGo: true},
	}
}

func (cl *client) worker(ctx context.Context, w int, out *printer) {
	var acked []string
	for i := 0; i < cl.c.count && ctx.Err() == nil; i++ {
		mid := fmt.Sprintf("%s-w%d-%d", cl.c.prefix, w, i)
		r := cl.do(ctx, "create", mid)
		out.print(r)
		if r.OK {
			acked = append(acked, mid)
			out.print(cl.do(ctx, "join", mid))
			out.print(cl.do(ctx, "info", mid))
		}
		if len(acked) > 1 {
			old := acked[rand.IntN(len(acked)-1)]
			out.print(cl.do(ctx, "rejoin", old))
		}
		select {
		case <-ctx.Done():
		case <-time.After(cl.c.interval):
		}
	}
}

// addr resolves the peers' name afresh and picks one address.
func (cl *client) addr(ctx context.Context) (string, error) {
	if cl.c.target != "" {
		return cl.c.target, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := cl.res.LookupHost(rctx, cl.c.host)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", cl.c.host, err)
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("resolve %s: no address", cl.c.host)
	}
	return net.JoinHostPort(ips[rand.IntN(len(ips))], strconv.Itoa(cl.c.port)), nil
}

// do runs one BBB call on a freshly resolved peer. A request started before
// ctx ended runs to its own timeout (its outcome is part of the record).
func (cl *client) do(ctx context.Context, op, mid string) Record {
	r := Record{At: time.Now(), Op: op, Meeting: mid}
	addr, err := cl.addr(context.WithoutCancel(ctx))
	if err != nil {
		r.Err = err.Error()
		return finish(r)
	}
	r.Peer = addr
	var call, query string
	switch op {
	case "create":
		call, query = "create", "meetingID="+url.QueryEscape(mid)+"&name="+url.QueryEscape("E2E "+mid)+"&moderatorPW=mp&attendeePW=ap"
	case "join", "rejoin":
		call, query = "join", "meetingID="+url.QueryEscape(mid)+"&fullName=Ann+E2E&password=ap"
	case "info":
		call, query = "getMeetingInfo", "meetingID="+url.QueryEscape(mid)
	}
	u := "http://" + addr + "/bigbluebutton/api/" + call + "?" + query + "&checksum=" + checksum(call, query, cl.c.secret)
	resp, err := cl.http.Get(u)
	if err != nil {
		r.Err = err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			r.Err = ue.Err.Error()
		}
		return finish(r)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	r.Status = resp.StatusCode
	if err != nil {
		r.Err = "read body: " + err.Error()
		return finish(r)
	}
	if call == "join" && resp.StatusCode == http.StatusFound {
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Host == "" {
			r.Err = fmt.Sprintf("join: bad Location %q", resp.Header.Get("Location"))
			return finish(r)
		}
		r.Backend, r.OK = loc.Host, true
		return finish(r)
	}
	var a struct {
		ReturnCode string `xml:"returncode"`
		MessageKey string `xml:"messageKey"`
	}
	if err := xml.Unmarshal(body, &a); err != nil {
		r.Err = fmt.Sprintf("HTTP %d, not BBB XML: %.200q", resp.StatusCode, body)
		return finish(r)
	}
	r.Key = a.MessageKey
	switch {
	case resp.StatusCode != http.StatusOK:
		r.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	case call == "join":
		r.Err = "join answered " + a.ReturnCode + " " + a.MessageKey + " instead of a redirect"
	case a.ReturnCode == "SUCCESS":
		r.OK = true
	default:
		r.Err = a.ReturnCode + " " + a.MessageKey
	}
	return finish(r)
}

func finish(r Record) Record {
	r.Ms = float64(time.Since(r.At).Microseconds()) / 1000
	return r
}

// checksum is BBB's: sha256 over call name, query and secret.
func checksum(call, query, secret string) string {
	h := sha256.Sum256([]byte(call + query + secret))
	return hex.EncodeToString(h[:])
}
