package testwait

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatal ends only the goroutine it runs in.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(a ...any) {
	r.msg = fmt.Sprint(a...)
	panic(r)
}
func (r *recorder) Fatalf(f string, a ...any) { r.Fatal(fmt.Sprintf(f, a...)) }

// run calls f with a recorder and returns the Fatal message ("" if none).
func run(f func(t testing.TB)) (msg string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		msg = r.msg
	}()
	f(r)
	return ""
}

func TestEventually(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	if msg := run(func(t testing.TB) {
		Eventually(t, 5*time.Second, func() error {
			if n.Add(1) < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	}); msg != "" || n.Load() != 3 {
		t.Fatalf("Eventually: %q after %d calls", msg, n.Load())
	}
	start := time.Now()
	msg := run(func(t testing.TB) {
		Eventually(t, 100*time.Millisecond, func() error { return errors.New("never") })
	})
	if !strings.Contains(msg, "never") || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("Eventually that times out: %q after %v", msg, time.Since(start))
	}
}

func TestAssertUntil(t *testing.T) {
	t.Parallel()
	start := time.Now()
	var n atomic.Int32
	if msg := run(func(t testing.TB) {
		AssertUntil(t, 100*time.Millisecond, func() error { n.Add(1); return nil })
	}); msg != "" || time.Since(start) < 100*time.Millisecond || n.Load() < 3 {
		t.Fatalf("AssertUntil that holds: %q, %v, %d checks", msg, time.Since(start), n.Load())
	}
	start = time.Now()
	msg := run(func(t testing.TB) {
		AssertUntil(t, 5*time.Second, func() error {
			if time.Since(start) > 50*time.Millisecond {
				return errors.New("it happened")
			}
			return nil
		})
	})
	if !strings.Contains(msg, "it happened") || time.Since(start) > 2*time.Second {
		t.Fatalf("AssertUntil that breaks: %q after %v (must fail at once)", msg, time.Since(start))
	}
}

func TestPollReturnsLastError(t *testing.T) {
	t.Parallel()
	err := Poll(30*time.Millisecond, 5*time.Millisecond, func() error { return errors.New("down") })
	if err == nil || !strings.Contains(err.Error(), "down") {
		t.Fatalf("Poll = %v", err)
	}
	if err := Until(time.Second, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
