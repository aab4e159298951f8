package shipping

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// limiter is a token bucket over bytes: rate tokens a second, at most
// burst saved up. take(n) always succeeds and says how long to wait
// before using the n bytes (a debt model, like x/time/rate's
// reservations): over any span T, at most burst + rate·T bytes go out.
type limiter struct {
	mu     sync.Mutex
	rate   float64 // bytes per second; 0 = unlimited
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newLimiter(rate int64, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	l := &limiter{rate: float64(rate), burst: float64(max(rate/4, 32<<10)), now: now}
	l.tokens, l.last = l.burst, now()
	return l
}

// take reserves n bytes and returns the wait before they may be sent.
func (l *limiter) take(n int) time.Duration {
	if l == nil || l.rate <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if el := now.Sub(l.last); el > 0 {
		l.tokens = math.Min(l.burst, l.tokens+el.Seconds()*l.rate)
		l.last = now
	}
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// pacedReader is r with every read paid for at the limiter first.
type pacedReader struct {
	ctx   context.Context
	r     io.Reader
	l     *limiter
	sleep func(context.Context, time.Duration) error
}

// paceBlock bounds one read, so that pacing is smooth within a chunk.
const paceBlock = 32 << 10

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > paceBlock {
		b = b[:paceBlock]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		if d := p.l.take(n); d > 0 {
			if e := p.sleep(p.ctx, d); e != nil {
				return n, e
			}
		}
	}
	return n, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseBytes reads a byte count or rate such as 20M, 512k, 1.5G, 20MiB or
// 4096: the suffixes k, M, G, T (any case, optionally followed by B or
// iB) are binary multiples (1k = 1024). "0" is zero.
func ParseBytes(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	u = strings.TrimSuffix(u, "/S")
	if v, ok := strings.CutSuffix(u, "IB"); ok {
		u = v
	} else {
		u = strings.TrimSuffix(u, "B")
	}
	mult := 1.0
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(u), 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: want a byte count such as 20M, 512k or 1048576", s)
	}
	return int64(v * mult), nil
}

// FormatBytes writes n in binary units: 512 B, 4.0 KiB, 12.5 MiB, 1.2 GiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
