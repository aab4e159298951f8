// Package listings keeps each BBB node's latest getMeetings answer for a
// short while, so that the getMeetings calls of clients cost the nodes one
// listing per node, per peer and per MaxAge, whatever the client rate: a
// BBB node builds that answer from every meeting it runs, and a fan-out per
// client call made the nodes do N times the work of one server.
package listings

import (
	"sync"
	"time"
)

// DefaultMaxAge is how old a listing may be when it is served. Meetings
// created since are still answered (the caller merges the replicated
// state, asking the node for those the listing cannot know yet).
const DefaultMaxAge = time.Second

// MaxBytes bounds the listings kept in all; past it, a listing is used by
// the calls that wait for it and not kept.
const MaxBytes = 64 << 20

// Listing is one node's getMeetings answer, cut into its meetings once
// (every call served from it only picks its frontend's), and when its call
// was sent.
type Listing struct {
	Started time.Time
	// Order lists the meetings' internal IDs as the node listed them;
	// Meetings holds each one's <meeting> element, ready to answer.
	Order    []string
	Meetings map[string][]byte
	// Size is the bytes held, for the cache's bound.
	Size int
}

// Cache holds the latest listing per node (by backend ID). The zero value
// is not ready: use New.
type Cache struct {
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex
	nodes map[string]*entry
	bytes int
	swept time.Time
}

type entry struct {
	l     Listing
	err   error
	ready chan struct{} // closed when the call that fills l ends
}

// New returns a cache serving listings up to maxAge old (DefaultMaxAge
// when ≤ 0).
func New(maxAge time.Duration) *Cache {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return &Cache{maxAge: maxAge, now: time.Now, nodes: map[string]*entry{}}
}

// MaxAge is the oldest listing Get serves.
func (c *Cache) MaxAge() time.Duration { return c.maxAge }

// Get returns node id's listing, at most MaxAge old, calling fetch when
// there is none that fresh; callers arriving while a call is out share
// its answer, so a node gets at most one listing call at a time from this
// peer. A failed call is not kept: the next Get tries again. fetch
// reports the time its call was sent with the answer.
func (c *Cache) Get(id string, fetch func() (Listing, error)) (Listing, error) {
	c.mu.Lock()
	now := c.now()
	c.sweep(now)
	if e, ok := c.nodes[id]; ok {
		select {
		case <-e.ready:
			if e.err == nil && now.Sub(e.l.Started) <= c.maxAge {
				c.mu.Unlock()
				return e.l, nil
			}
		default: // a call is out: wait for it
			c.mu.Unlock()
			<-e.ready
			return e.l, e.err
		}
	}
	e := &entry{ready: make(chan struct{})}
	if old, ok := c.nodes[id]; ok {
		c.bytes -= old.l.Size
	}
	c.nodes[id] = e
	c.mu.Unlock()

	l, err := fetch()
	c.mu.Lock()
	e.l, e.err = l, err
	switch {
	case err != nil, c.bytes+l.Size > MaxBytes:
		delete(c.nodes, id) // not kept; waiting callers still get it through e
	default:
		c.bytes += l.Size
	}
	close(e.ready)
	c.mu.Unlock()
	return l, err
}

// sweep drops listings no call could serve any more (a node removed,
// or no getMeetings for a while), at most once per ten MaxAge.
func (c *Cache) sweep(now time.Time) {
	if now.Sub(c.swept) < 10*c.maxAge {
		return
	}
	c.swept = now
	for id, e := range c.nodes {
		select {
		case <-e.ready:
			if now.Sub(e.l.Started) > c.maxAge {
				c.bytes -= e.l.Size
				delete(c.nodes, id)
			}
		default:
		}
	}
}

// Bytes is the size of the listings kept.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
