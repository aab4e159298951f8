//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/internal/testwait"
)

// noRedirect reads a join's 302 instead of following it to the node.
var noRedirect = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// joinHost asks one peer (from the host, through its published port) for a
// join of mid and returns the host of the node it redirects to.
func (c *cluster) joinHost(peer, mid string) (string, error) {
	a, err := c.addr(peer, peerPort)
	if err != nil {
		return "", err
	}
	u := bbb.SignedURL("http://"+a+"/bigbluebutton/api/", "join",
		url.Values{"meetingID": {mid}, "fullName": {"Failover E2E"}, "password": {"ap"}}, frontendSecret)
	resp, err := noRedirect.Get(u)
	if err != nil {
		c.forget(peer)
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("join %s on %s: HTTP %d", mid, peer, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host == "" {
		return "", fmt.Errorf("join %s on %s: bad Location %q", mid, peer, resp.Header.Get("Location"))
	}
	return loc.Host, nil
}

// createOK sends one create of mid through a peer (from the host) and
// reports whether it was acknowledged (SUCCESS).
func (c *cluster) createOK(peer, mid string) bool {
	a, err := c.addr(peer, peerPort)
	if err != nil {
		return false
	}
	u := bbb.SignedURL("http://"+a+"/bigbluebutton/api/", "create",
		url.Values{"meetingID": {mid}, "name": {mid}, "attendeePW": {"ap"}, "moderatorPW": {"mp"}}, frontendSecret)
	resp, err := noRedirect.Get(u)
	if err != nil {
		c.forget(peer)
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "<returncode>SUCCESS</returncode>")
}

// firstCreateAfter sends creates of new meetings through the peers in via,
// one after another, from the moment it is called, and returns how long
// after since the first was acknowledged (-1 if none within limit).
func (c *cluster) firstCreateAfter(since time.Time, via []string, prefix string, limit time.Duration) time.Duration {
	for i := 0; time.Since(since) < limit; i++ {
		if c.createOK(via[i%len(via)], fmt.Sprintf("%s-%d", prefix, i)) {
			return time.Since(since)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}

// failoverResult is what one node kill measured.
type failoverResult struct {
	node        string
	meetings    int
	unacked     int           // bound to the node, create never acknowledged
	toError     time.Duration // kill → the leader's NodeState error
	toRedirect  time.Duration // kill → first join redirected to a live node
	movedTo     map[string]int
	notMovedYet int // joins still sent to the dead node before the first move
}

// nodeFailover kills the fake BBB node holding the most acknowledged
// meetings, and joins one of them through the peers in turn until a join
// lands on a live node: the time from the kill is the figure users feel.
// Then every acknowledged meeting of the dead node must be joined, through
// every peer, on one live node each. A meeting bound there whose create
// was never acknowledged (the answer was lost in a fault: it may never have
// reached the node) must at least never send a join to the dead node. The
// node is started again (empty) at the end.
func (c *cluster) nodeFailover(acked map[string]bool) (failoverResult, error) {
	binds, err := c.bindings("peer1")
	if err != nil {
		return failoverResult{}, err
	}
	perHost := map[string][]string{}
	unacked := map[string][]string{}
	for m, h := range binds {
		if acked[m] {
			perHost[h] = append(perHost[h], m)
		} else {
			unacked[h] = append(unacked[h], m)
		}
	}
	victimHost := ""
	for h, ms := range perHost {
		if victimHost == "" || len(ms) > len(perHost[victimHost]) {
			victimHost = h
		}
	}
	if victimHost == "" {
		return failoverResult{}, fmt.Errorf("no acknowledged meeting bound to any node")
	}
	victims := perHost[victimHost]
	sort.Strings(victims)
	node, _, _ := strings.Cut(victimHost, ":")
	res := failoverResult{node: node, meetings: len(victims), unacked: len(unacked[victimHost]), movedTo: map[string]int{}}
	probe := victims[0]

	if err := c.kill(node); err != nil {
		return res, err
	}
	killed := time.Now()
	errorSeen := make(chan time.Duration, 1)
	go func() { // when the leader's replica calls the node dead
		err := testwait.Poll(60*time.Second, 50*time.Millisecond, func() error {
			var bs []adminapi.Backend
			if err := c.api("peer1", "GET", "/api/v1/backends", nil, &bs); err != nil {
				return err
			}
			for _, b := range bs {
				if strings.Contains(b.URL, "//"+victimHost+"/") && b.NodeState == "error" {
					return nil
				}
			}
			return fmt.Errorf("%s not in NodeState error yet", victimHost)
		})
		if err != nil {
			errorSeen <- -1
			return
		}
		errorSeen <- time.Since(killed)
	}()

	i := 0
	err = testwait.Poll(60*time.Second, 50*time.Millisecond, func() error {
		p := peers[i%len(peers)]
		i++
		h, err := c.joinHost(p, probe)
		if err != nil {
			return err
		}
		if h == victimHost {
			res.notMovedYet++
			return fmt.Errorf("join through %s still sent to the dead %s", p, victimHost)
		}
		res.toRedirect = time.Since(killed)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("no join of %s reached a live node after killing %s: %w", probe, node, err)
	}
	res.toError = <-errorSeen

	// Every meeting of the dead node, through every peer: one live node each.
	for _, m := range victims {
		where := map[string]bool{}
		for _, p := range peers {
			var h string
			err := eventually(15*time.Second, func() error {
				var err error
				h, err = c.joinHost(p, m)
				if err == nil && h == victimHost {
					err = fmt.Errorf("join of %s through %s still goes to the dead %s", m, p, victimHost)
				}
				return err
			})
			if err != nil {
				return res, err
			}
			where[h] = true
		}
		if len(where) != 1 {
			return res, fmt.Errorf("meeting %s re-created on several nodes: %v", m, where)
		}
		for h := range where {
			res.movedTo[h]++
		}
	}
	for _, m := range unacked[victimHost] {
		for _, p := range peers {
			err := eventually(15*time.Second, func() error {
				h, err := c.joinHost(p, m)
				if err == nil && h == victimHost {
					return fmt.Errorf("join of unacknowledged %s through %s still goes to the dead %s", m, p, victimHost)
				}
				return nil // a live node, or a FAILED answer: the meeting may never have existed
			})
			if err != nil {
				return res, err
			}
		}
	}

	// The node comes back empty, as BBB does after a restart.
	if err := c.start(node); err != nil {
		return res, err
	}
	return res, eventually(60*time.Second, func() error {
		var bs []adminapi.Backend
		if err := c.api("peer1", "GET", "/api/v1/backends", nil, &bs); err != nil {
			return err
		}
		for _, b := range bs {
			if b.NodeState != "ready" {
				return fmt.Errorf("backend %s is %s after its restart", b.URL, b.NodeState)
			}
		}
		return nil
	})
}

func (r failoverResult) String() string {
	return fmt.Sprintf("killed %s under %d meetings: NodeState error after %v; first join redirected to a live node after %v "+
		"(%d joins still sent to the dead node before); the %d meetings re-created on %v; %d unacknowledged bindings checked",
		r.node, r.meetings, r.toError.Round(10*time.Millisecond), r.toRedirect.Round(10*time.Millisecond),
		r.notMovedYet, r.meetings, r.movedTo, r.unacked)
}
