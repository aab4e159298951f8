// Package testwait is how Conclave's tests wait: Eventually (a condition
// comes true within a time) and AssertUntil (a condition stays true for a
// whole period, the "nothing happens" check), instead of hand-written
// deadline loops and bare sleeps.
//
// Every duration given to it is multiplied by CONCLAVE_TEST_TIMEOUT_SCALE
// (a positive number, default 1), so a slow or loaded machine can run the
// tests with, say, CONCLAVE_TEST_TIMEOUT_SCALE=3. The package depends on
// the standard library only, so any test, harness or helper may use it.
package testwait

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// ScaleEnv names the environment variable that multiplies every wait.
const ScaleEnv = "CONCLAVE_TEST_TIMEOUT_SCALE"

// DefaultInterval is how often Eventually and AssertUntil check.
const DefaultInterval = 20 * time.Millisecond

var scale = sync.OnceValue(func() float64 {
	v := os.Getenv(ScaleEnv)
	if v == "" {
		return 1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || f > 1000 {
		panic(fmt.Sprintf("%s=%q: want a positive number such as 1 or 2.5", ScaleEnv, v))
	}
	return f
})

// Scale returns the multiplier from CONCLAVE_TEST_TIMEOUT_SCALE (1 when
// unset). An unusable value panics with a message naming the variable.
func Scale() float64 { return scale() }

// Scaled returns d times Scale.
func Scaled(d time.Duration) time.Duration {
	if s := scale(); s != 1 {
		return time.Duration(float64(d) * s)
	}
	return d
}

// Poll calls fn every interval until it returns nil, and returns nil; or,
// once Scaled(timeout) has passed (fn is checked once more then), fn's
// last error. It is for helpers that return an error instead of failing.
func Poll(timeout, interval time.Duration, fn func() error) error {
	timeout = Scaled(timeout)
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(min(interval, left))
	}
}

// Until is Poll at DefaultInterval.
func Until(timeout time.Duration, fn func() error) error {
	return Poll(timeout, DefaultInterval, fn)
}

// Eventually fails t (Fatal) unless fn returns nil within Scaled(timeout),
// checking every DefaultInterval; the failure carries fn's last error.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	EventuallyEvery(t, timeout, DefaultInterval, fn)
}

// EventuallyEvery is Eventually checking every interval.
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	if err := Poll(timeout, interval, fn); err != nil {
		t.Fatal(err)
	}
}

// EventuallyTrue is Eventually for a condition without an error to tell;
// what describes the awaited condition in the failure.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still not %s", what)
	})
}

// AssertUntil fails t (Fatal) as soon as fn returns an error during
// Scaled(period), checking every DefaultInterval and once more at its end:
// the condition holds for the whole period. It is the "nothing happens"
// check (Gomega's Consistently): use it where a test would sleep and then
// assert that something did not happen.
func AssertUntil(t testing.TB, period time.Duration, fn func() error) {
	t.Helper()
	AssertUntilEvery(t, period, DefaultInterval, fn)
}

// AssertUntilEvery is AssertUntil checking every interval.
func AssertUntilEvery(t testing.TB, period, interval time.Duration, fn func() error) {
	t.Helper()
	period = Scaled(period)
	start := time.Now()
	deadline := start.Add(period)
	for {
		if err := fn(); err != nil {
			t.Fatalf("after %v of %v: %v", time.Since(start).Round(time.Millisecond), period, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		time.Sleep(min(interval, left))
	}
}

// Sleep sleeps Scaled(d): for a pause that is not a check (letting a
// background step start, spacing requests), where there is nothing to poll.
func Sleep(d time.Duration) { time.Sleep(Scaled(d)) }
