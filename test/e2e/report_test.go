//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// phaseResult is what one fault did to the client's requests.
type phaseResult struct {
	Name          string
	Duration      time.Duration // the client's run
	Requests      int
	Failed        int
	Wrong         int           // failures that are not unavailability: a wrong answer to a valid request
	Longest       time.Duration // longest unavailability, any request
	LongestCreate time.Duration // longest unavailability of creates alone
	SlowestOK     time.Duration
	SlowestFailed time.Duration // the longest a failed request kept its caller waiting
	Reasons       string
	Notes         []string
}

func summarize(name string, recs []Record) phaseResult {
	res := phaseResult{Name: name, Requests: len(recs)}
	if len(recs) == 0 {
		return res
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
	first, last := recs[0].At, recs[0].end()
	reasons := map[string]int{}
	for _, r := range recs {
		if r.end().After(last) {
			last = r.end()
		}
		d := time.Duration(r.Ms * float64(time.Millisecond))
		if !r.OK {
			res.Failed++
			if wrongAnswer(r) {
				res.Wrong++
			}
			reasons[reason(r)]++
			res.SlowestFailed = max(res.SlowestFailed, d)
		} else {
			res.SlowestOK = max(res.SlowestOK, d)
		}
	}
	res.Duration = last.Sub(first)
	res.Longest = unavailability(recs, func(Record) bool { return true })
	res.LongestCreate = unavailability(recs, func(r Record) bool { return r.Op == "create" })
	type kv struct {
		k string
		n int
	}
	var rs []kv
	for k, n := range reasons {
		rs = append(rs, kv{k, n})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || (rs[i].n == rs[j].n && rs[i].k < rs[j].k) })
	var parts []string
	for i, r := range rs {
		if i == 4 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", r.k, r.n))
	}
	res.Reasons = strings.Join(parts, "; ")
	return res
}

// wrongAnswer tells a wrong answer from unavailability. The client sends
// only valid requests (correct checksums; join and getMeetingInfo only for
// meetings whose create succeeded), so the only acceptable failures are a
// transport error, a timeout, or BBB's FAILED/serverUnavailable.
func wrongAnswer(r Record) bool {
	return !r.OK && r.Key != "" && r.Key != "serverUnavailable"
}

var (
	reAddr   = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
	reNumber = regexp.MustCompile(`\d+`)
)

// reason is a failure's cause without addresses and numbers, to count alike ones.
func reason(r Record) string {
	if r.Key != "" {
		return r.Op + ": " + r.Key
	}
	e := reAddr.ReplaceAllString(r.Err, "ADDR")
	e = reNumber.ReplaceAllString(e, "N")
	if len(e) > 60 {
		e = e[:60] + "…"
	}
	return r.Op + ": " + e
}

// unavailability is the longest run of consecutive failed requests (those
// keep selects, in order of their start), measured from the start of the
// run's first request to the start of the next request that succeeded, or
// to the end of the run's last request when none followed.
func unavailability(recs []Record, keep func(Record) bool) time.Duration {
	var longest time.Duration
	var start, end time.Time
	in := false
	for _, r := range recs {
		if !keep(r) {
			continue
		}
		if r.OK {
			if in {
				longest = max(longest, r.At.Sub(start))
			}
			in = false
			continue
		}
		if !in {
			in, start, end = true, r.At, r.end()
		} else if r.end().After(end) {
			end = r.end()
		}
	}
	if in {
		longest = max(longest, end.Sub(start))
	}
	return longest
}

func ms(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// table renders the results as Markdown (for the log and docs/RELIABILITY.md).
func table(results []phaseResult) string {
	var b strings.Builder
	b.WriteString("| fault | load run | requests | failed | of which wrong answers | longest unavailability (any request) | longest create unavailability | slowest failed request | slowest successful request |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.0f s | %d | %d | %d | %s | %s | %s | %s |\n", r.Name, r.Duration.Seconds(), r.Requests, r.Failed,
			r.Wrong, ms(r.Longest), ms(r.LongestCreate), ms(r.SlowestFailed), ms(r.SlowestOK))
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- **%s**: %s", r.Name, strings.Join(r.Notes, "; "))
		if r.Reasons != "" {
			fmt.Fprintf(&b, ". Failures: %s", r.Reasons)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// writeReport saves the table where CONCLAVE_E2E_REPORT points, if set.
func writeReport(text string) error {
	path := os.Getenv("CONCLAVE_E2E_REPORT")
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
