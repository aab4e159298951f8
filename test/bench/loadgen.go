// Package bench holds Conclave's load generator and the scenario runner
// behind `make bench`. All traffic goes to loopback; every run is bounded
// by a request count and a duration and stops by itself.
package bench

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Load describes one bounded run.
type Load struct {
	Name     string
	URLs     []string      // requests to send, in order, each used once at most per cycle
	Cycle    bool          // reuse URLs round-robin (reads); false: each URL once (creates)
	Conns    int           // concurrent connections (workers)
	Duration time.Duration // stop after this long …
	MaxReqs  int           // … or after this many requests, whichever first
	// Rate, when set, paces requests to this many per second in all (an
	// open loop, as wrk2 does): request i is due at start + i/Rate; when no
	// connection was free by then its latency counts from the due time, so a
	// stall is charged to every request it delays rather than hidden by the
	// connections waiting on it. Unset,
	// every connection sends its next request as soon as the last returns,
	// which measures the most the server can do.
	Rate float64
	// Check validates a response; nil accepts any 2xx/3xx.
	Check func(status int, body []byte) bool
	// CountShed counts 503 answers (a peer shedding load) apart, not as
	// errors; their latencies, from when each left (not when it was due:
	// how fast the peer sheds), are in Result.ShedP99, not the others'.
	CountShed bool
}

// Result is what a run measured.
type Result struct {
	Name                string
	Requests, Errors    int
	Elapsed             time.Duration
	RPS                 float64
	P50, P99, P999, Max time.Duration
	// ErrorSamples holds the first few failures, to say what went wrong.
	ErrorSamples []string
	// Shed answers (Load.CountShed) and their p99.
	Shed    int
	ShedP99 time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("| %s | %d | %d | %.0f | %s | %s | %s |", r.Name, r.Requests, r.Errors, r.RPS,
		ms(r.P50), ms(r.P99), ms(r.P999))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// TableHeader matches Result.String.
const TableHeader = "| scenario | requests | errors | req/s | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|---:|---:|"

// Run executes a load and reports latency percentiles over all requests.
func Run(l Load) Result {
	client := &fasthttp.Client{MaxConnsPerHost: l.Conns * 2, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		NoDefaultUserAgentHeader: true, MaxIdleConnDuration: time.Minute}
	var next atomic.Int64
	var errs atomic.Int64
	var samplesMu sync.Mutex
	var samples []string
	lat := make([][]time.Duration, l.Conns)
	shedLat := make([][]time.Duration, l.Conns)
	deadline := time.Now().Add(l.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < l.Conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= l.MaxReqs || (!l.Cycle && i >= len(l.URLs)) {
					return
				}
				req.SetRequestURI(l.URLs[i%len(l.URLs)])
				t0 := time.Now()
				if l.Rate > 0 {
					due := start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
					if due.After(deadline) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						// Early: the clock starts when the request leaves (a
						// sleep overshoots by up to a millisecond here, which
						// is the generator's lateness, not the server's).
						time.Sleep(wait)
						t0 = time.Now()
					} else {
						// Every connection was busy past the due time: the
						// server's queueing, charged from when it was due.
						t0 = due
					}
				}
				sent := time.Now()
				err := client.DoTimeout(req, resp, 10*time.Second)
				d := time.Since(t0)
				if l.CountShed && err == nil && resp.StatusCode() == http.StatusServiceUnavailable {
					shedLat[w] = append(shedLat[w], time.Since(sent))
					continue
				}
				lat[w] = append(lat[w], d)
				ok := err == nil && resp.StatusCode() < 400
				if ok && l.Check != nil {
					ok = l.Check(resp.StatusCode(), resp.Body())
				}
				if !ok {
					errs.Add(1)
					samplesMu.Lock()
					if len(samples) < 5 {
						samples = append(samples, fmt.Sprintf("status %d, err %v: %.200s", resp.StatusCode(), err, resp.Body()))
					}
					samplesMu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	all, shed := sorted(lat), sorted(shedLat)
	pct := percentiles(all)
	r := Result{Name: l.Name, Requests: len(all), Errors: int(errs.Load()), Elapsed: elapsed,
		P50: pct(.5), P99: pct(.99), P999: pct(.999), Max: pct(1), ErrorSamples: samples,
		Shed: len(shed), ShedP99: percentiles(shed)(.99)}
	if elapsed > 0 {
		r.RPS = float64(len(all)) / elapsed.Seconds()
	}
	return r
}

// sorted merges the per-connection latencies, sorted.
func sorted(per [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all
}

// percentiles returns the p-th percentile of sorted latencies.
func percentiles(all []time.Duration) func(p float64) time.Duration {
	return func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
}
