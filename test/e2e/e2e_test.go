//go:build e2e

// Package e2e runs Conclave in containers (deploy/docker-compose.yml):
// three conclaved peers and three fake BBB nodes on a private Docker
// network, a BBB client in a container of its own that reaches the peers
// through the shared DNS name "conclave" (round-robin), and faults injected
// one after another while the client's load runs: a follower killed and
// started again, the leader killed, the leader and then a follower cut off
// the network and healed, every peer restarted in turn.
//
// Run with `make e2e` (go test -tags e2e ./test/e2e/, CONCLAVE_BIN_DIR=./bin).
// Needs Docker and Compose (the v2 plugin or docker-compose 1.28+); images
// are built FROM scratch by scripts/images.sh when missing or stale, so
// nothing is pulled and no traffic leaves the machine.
//
// Environment: CONCLAVE_E2E_KEEP=1 keeps the containers after the run;
// CONCLAVE_E2E_REPORT=FILE writes the figures as Markdown there.
package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/test/harness"
)

const (
	frontendKey    = "moodle"
	frontendSecret = "e2e-moodle-secret"
	bbbPort        = "8090/tcp"
)

var bbbNodes = []string{"bbb1", "bbb2", "bbb3"}

func bbbSecret(node string) string { return node + "-secret" } // as in docker-compose.yml

// configure registers the three fake nodes and the frontend through one
// peer's admin API, then waits until every replica has them and the
// leader's prober has seen the nodes answer.
func (c *cluster) configure() {
	t := c.t
	via := "peer2"
	for _, n := range bbbNodes {
		if err := c.api(via, "POST", "/api/v1/backends", adminapi.AddBackendRequest{
			URL: "http://" + n + ":8090/bigbluebutton/api/", Secret: bbbSecret(n),
		}, nil); err != nil {
			t.Fatalf("add backend %s: %v", n, err)
		}
		if err := c.api(via, "POST", "/api/v1/backends/"+url.PathEscape(n+":8090")+"/enable", nil, nil); err != nil {
			t.Fatalf("enable backend %s: %v", n, err)
		}
	}
	if err := c.api(via, "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: frontendKey, Secret: frontendSecret}, nil); err != nil {
		t.Fatalf("add frontend: %v", err)
	}
	err := eventually(30*time.Second, func() error {
		for _, p := range peers {
			var bs []adminapi.Backend
			if err := c.api(p, "GET", "/api/v1/backends", nil, &bs); err != nil {
				return err
			}
			if len(bs) != 3 {
				return fmt.Errorf("%s knows %d backends", p, len(bs))
			}
			for _, b := range bs {
				if b.NodeState != "ready" || b.AdminState != "ready" {
					return fmt.Errorf("%s: backend %s is %s/%s", p, b.URL, b.NodeState, b.AdminState)
				}
			}
			if err := c.api(p, "GET", "/api/v1/frontends/"+frontendKey, nil, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("backends and frontend not ready on every peer: %v", err)
	}
}

// backendHosts maps backend IDs to their URL's host (what a join's
// Location points at).
func (c *cluster) backendHosts(svc string) (map[string]string, error) {
	var bs []adminapi.Backend
	if err := c.api(svc, "GET", "/api/v1/backends", nil, &bs); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, b := range bs {
		u, err := url.Parse(b.URL)
		if err != nil {
			return nil, err
		}
		out[b.ID] = u.Host
	}
	return out, nil
}

// bindings maps each meeting ID to the host of the backend it is bound to,
// as one peer's replica says.
func (c *cluster) bindings(svc string) (map[string]string, error) {
	hosts, err := c.backendHosts(svc)
	if err != nil {
		return nil, err
	}
	ms, err := c.meetings(svc)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for m, b := range ms {
		out[m] = hosts[b]
	}
	return out, nil
}

// saveRecords writes a phase's records as JSON lines (CONCLAVE_E2E_RECORDS).
func saveRecords(t *testing.T, path string, recs []Record) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range recs {
		_ = enc.Encode(r)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Logf("records: %v", err)
	}
}

// notes collects what a fault did, for the report.
type notes []string

func (n *notes) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

// runPhase runs the client's load loop, applies fault while it runs, lets
// the load go on a little after recovery, then waits for a healthy,
// converged cluster.
func (c *cluster) runPhase(name, prefix string, fault func(n *notes) error) (phaseResult, []Record) {
	t := c.t
	t.Logf("=== %s", name)
	t.Logf("peer addresses: %s", c.ips())
	id, err := c.startClient(prefix, "-prefix", prefix, "-workers", "4", "-interval", "80ms",
		"-count", "5000", "-duration", "150s", "-timeout", "12s")
	if err != nil {
		t.Fatalf("%s: start client: %v", name, err)
	}
	time.Sleep(3 * time.Second) // load before the fault
	var n notes
	ferr := fault(&n)
	time.Sleep(3 * time.Second) // load after recovery
	recs, err := c.stopClient(id)
	if dir := os.Getenv("CONCLAVE_E2E_RECORDS"); dir != "" && len(recs) > 0 {
		saveRecords(t, filepath.Join(dir, prefix+".jsonl"), recs)
	}
	if ferr != nil {
		t.Fatalf("%s: %v", name, ferr)
	}
	if err != nil {
		t.Fatalf("%s: client: %v", name, err)
	}
	if err := c.waitHealthy(60 * time.Second); err != nil {
		t.Fatalf("%s: cluster not healthy afterwards: %v", name, err)
	}
	healed := time.Now()
	if err := c.waitConverged(30 * time.Second); err != nil {
		t.Fatalf("%s: peers did not converge: %v", name, err)
	}
	n.add("converged %v after the load stopped", time.Since(healed).Round(10*time.Millisecond))
	res := summarize(name, recs)
	res.Notes = n
	t.Logf("%s: %d requests, %d failed, longest unavailability %s (creates %s); %s",
		name, res.Requests, res.Failed, ms(res.Longest), ms(res.LongestCreate), strings.Join(n, "; "))
	if res.Failed > 0 {
		t.Logf("%s failures: %s", name, res.Reasons)
	}
	return res, recs
}

// partition cuts target off the network for about 8 s. Meanwhile it checks
// the minority side from inside target's own network namespace: a create
// must fail with a BBB FAILED answer within ~10 s, and a join of a meeting
// it already knows must still redirect to that meeting's backend.
func (c *cluster) partition(n *notes, target, role, known, knownHost string) error {
	t := c.t
	if err := c.disconnect(target); err != nil {
		return err
	}
	cut := time.Now()
	n.add("cut %s (%s) off the network", target, role)
	var newLeader string
	var elected time.Duration
	done := make(chan error, 1)
	go func() { // the majority's new leader, while the probes run
		l, err := c.leader(others(peers, target), 20*time.Second)
		newLeader, elected = l, time.Since(cut)
		done <- err
	}()
	time.Sleep(2 * time.Second)

	mid := "minority-" + target + "-" + role
	r, err := c.probe(target, "create", mid)
	switch {
	case err != nil:
		t.Errorf("minority create on %s: %v", target, err)
	case r.OK || r.Status != 200 || r.Key == "":
		t.Errorf("minority create on %s: want a BBB FAILED answer, got ok=%v status=%d key=%q err=%q", target, r.OK, r.Status, r.Key, r.Err)
	case r.Ms > 10500:
		t.Errorf("minority create on %s took %.0f ms (want ≤ ~10 s)", target, r.Ms)
	default:
		n.add("its create answered FAILED/%s in %.2f s", r.Key, r.Ms/1000)
	}
	r, err = c.probe(target, "join", known)
	switch {
	case err != nil:
		t.Errorf("minority join on %s: %v", target, err)
	case !r.OK || r.Backend != knownHost:
		t.Errorf("minority join of known meeting %s on %s: want a redirect to %s, got ok=%v backend=%q key=%q err=%q",
			known, target, knownHost, r.OK, r.Backend, r.Key, r.Err)
	default:
		n.add("its join of a known meeting redirected to %s in %.0f ms", r.Backend, r.Ms)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("the majority has no leader: %v", err)
	}
	if role == "leader" {
		n.add("majority leader %s ready %v after the cut", newLeader, elected.Round(10*time.Millisecond))
	}
	time.Sleep(time.Until(cut.Add(8 * time.Second)))
	if err := c.connect(target); err != nil {
		return err
	}
	healed := time.Now()
	if err := c.waitReady(target, 30*time.Second); err != nil {
		return err
	}
	n.add("healed after %v; %s ready %v later", healed.Sub(cut).Round(100*time.Millisecond), target, time.Since(healed).Round(10*time.Millisecond))
	return nil
}

func TestFaultsUnderLoad(t *testing.T) {
	began := time.Now()
	requireDocker(t)
	compose := composeCommand(t)
	reapStale(t, compose)
	ensureImages(t)
	buildClientImage(t)
	c := newCluster(t, compose)
	t.Logf("compose project %s (%s)", c.project, strings.Join(compose, " "))
	c.up()
	if err := c.waitHealthy(90 * time.Second); err != nil {
		t.Fatalf("the cluster did not form: %v", err)
	}
	c.configure()
	t.Logf("cluster up and configured %v after start", time.Since(began).Round(time.Second))
	for _, p := range peers { // the peers talk mutual TLS
		serial, err := c.mountedSerial(p)
		if err == nil {
			err = c.checkPeerTLS(p, serial)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	var results []phaseResult
	var all []Record
	record := func(res phaseResult, recs []Record) {
		results = append(results, res)
		all = append(all, recs...)
	}
	leaderNow := func() string {
		l, err := c.leader(peers, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	record(c.runPhase("no fault (baseline)", "base", func(n *notes) error {
		time.Sleep(3 * time.Second)
		n.add("leader %s", leaderNow())
		return nil
	}))

	// A meeting every peer knows, for the minority's join checks.
	binds, err := c.bindings("peer1")
	if err != nil {
		t.Fatal(err)
	}
	known, knownHost := "", ""
	for m, h := range binds {
		if strings.HasPrefix(m, "base-") && (known == "" || m < known) {
			known, knownHost = m, h
		}
	}
	if known == "" {
		t.Fatal("the baseline created no meeting")
	}

	record(c.runPhase("kill a follower, start it again", "killf", func(n *notes) error {
		l := leaderNow()
		f := others(peers, l)[0]
		if err := c.kill(f); err != nil {
			return err
		}
		n.add("docker kill %s (follower)", f)
		time.Sleep(5 * time.Second)
		if err := c.start(f); err != nil {
			return err
		}
		started := time.Now()
		if err := c.waitReady(f, 30*time.Second); err != nil {
			return err
		}
		ready := time.Since(started)
		if err := c.waitCaughtUp(f, 30*time.Second); err != nil {
			return err
		}
		n.add("started after 5 s: /readyz 200 %v later, replica caught up with the leader %v later",
			ready.Round(10*time.Millisecond), time.Since(started).Round(10*time.Millisecond))
		return nil
	}))

	record(c.runPhase("kill the leader, start it again", "killl", func(n *notes) error {
		l := leaderNow()
		if err := c.kill(l); err != nil {
			return err
		}
		killed := time.Now()
		firstCreate := make(chan time.Duration, 1)
		go func() { firstCreate <- c.firstCreateAfter(killed, others(peers, l), "afterkill", 20*time.Second) }()
		nl, err := c.leader(others(peers, l), 20*time.Second)
		if err != nil {
			return err
		}
		n.add("docker kill %s (leader); %s leads and is ready %v later", l, nl, time.Since(killed).Round(10*time.Millisecond))
		n.add("first create acknowledged %v after the kill", (<-firstCreate).Round(10*time.Millisecond))
		time.Sleep(time.Until(killed.Add(5 * time.Second)))
		if err := c.start(l); err != nil {
			return err
		}
		started := time.Now()
		if err := c.waitReady(l, 30*time.Second); err != nil {
			return err
		}
		ready := time.Since(started)
		if err := c.waitCaughtUp(l, 30*time.Second); err != nil {
			return err
		}
		n.add("started after 5 s: /readyz 200 %v later, replica caught up with the leader %v later",
			ready.Round(10*time.Millisecond), time.Since(started).Round(10*time.Millisecond))
		return nil
	}))

	record(c.runPhase("partition the leader, heal", "partl", func(n *notes) error {
		return c.partition(n, leaderNow(), "leader", known, knownHost)
	}))

	record(c.runPhase("partition a follower, heal", "partf", func(n *notes) error {
		return c.partition(n, others(peers, leaderNow())[0], "follower", known, knownHost)
	}))

	// Certificates are replaced by a rolling restart: each peer in turn gets
	// a new certificate and key from the same CA and is restarted.
	record(c.runPhase("restart every peer in turn, each with a new certificate", "roll", func(n *notes) error {
		for _, p := range peers {
			role := "follower"
			if st, err := c.status(p); err == nil && st.State == "Leader" {
				role = "leader"
			}
			serial, err := c.replaceCert(p)
			if err != nil {
				return err
			}
			began := time.Now()
			if err := c.restart(p); err != nil {
				return err
			}
			restarted := time.Now()
			if err := c.waitReady(p, 30*time.Second); err != nil {
				return err
			}
			ready := time.Since(restarted)
			if err := c.waitCaughtUp(p, 30*time.Second); err != nil {
				return err
			}
			caught := time.Since(restarted)
			if err := c.waitHealthy(30 * time.Second); err != nil {
				return err
			}
			if err := c.checkPeerTLS(p, serial); err != nil {
				return err
			}
			n.add("%s (%s): new certificate; docker restart took %v, /readyz 200 %v later, caught up %v later", p, role,
				restarted.Sub(began).Round(10*time.Millisecond), ready.Round(10*time.Millisecond), caught.Round(10*time.Millisecond))
		}
		return nil
	}))

	acked := c.checkSemantics(all)
	acked[known] = true

	// A create answered FAILED leaves no meeting behind, even when its
	// request reaches the leader after the partition heals.
	if binds, err := c.bindings("peer1"); err != nil {
		t.Error(err)
	} else {
		for m, h := range binds {
			if strings.HasPrefix(m, "minority-") {
				t.Errorf("meeting %s is bound to %s, though its create (on a cut-off peer) answered FAILED", m, h)
			}
		}
	}

	// A BBB node dies under running meetings (after the semantics check:
	// its meetings move, legitimately, to live nodes).
	fo, err := c.nodeFailover(acked)
	if err != nil {
		t.Errorf("node failover: %v (%s)", err, fo)
	}
	t.Logf("node failover: %s", fo)

	report := table(results) + "\nNode failover: " + fo.String() + "\n"
	t.Logf("e2e: %d requests in %d phases; the whole run took %v\n\n%s", len(all), len(results),
		time.Since(began).Round(time.Second), report)
	if err := writeReport(fmt.Sprintf("<!-- %s, %s -->\n%s\nTotal run (images present): %v\n",
		time.Now().UTC().Format(time.RFC3339), strings.Join(compose, " "), report, time.Since(began).Round(time.Second))); err != nil {
		t.Error(err)
	}
}

// checkSemantics checks, after every fault, what the client was promised:
// no acknowledged create lost, one backend per meeting, joins always to it,
// read-your-writes, and identical replicas.
// It returns the acknowledged meetings.
func (c *cluster) checkSemantics(all []Record) map[string]bool {
	t := c.t
	acked := map[string]bool{}
	joinHosts := map[string]map[string]int{} // meeting → Location host → joins
	var staleReads []string
	for _, r := range all {
		switch {
		case r.Op == "create" && r.OK:
			acked[r.Meeting] = true
		case (r.Op == "join" || r.Op == "rejoin") && r.OK:
			if joinHosts[r.Meeting] == nil {
				joinHosts[r.Meeting] = map[string]int{}
			}
			joinHosts[r.Meeting][r.Backend]++
		case !r.OK && r.Key == "notFound":
			// join/info run only after their create succeeded: "not found"
			// anywhere is a lost or not-yet-visible acknowledged meeting.
			staleReads = append(staleReads, fmt.Sprintf("%s %s on %s at %s", r.Op, r.Meeting, r.Peer, r.At.Format("15:04:05.000")))
		}
	}
	if len(staleReads) > 0 {
		t.Errorf("read-your-writes broken: %d requests for acknowledged meetings answered notFound, e.g. %s",
			len(staleReads), strings.Join(staleReads[:min(5, len(staleReads))], "; "))
	}
	// Under faults a valid request may fail for want of a peer or a quorum
	// (serverUnavailable, a transport error), never with another answer.
	wrong := map[string]int{}
	var examples []string
	for _, r := range all {
		if wrongAnswer(r) && r.Key != "notFound" {
			wrong[r.Key]++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s %s on %s at %s after %.0f ms", r.Op, r.Meeting, r.Peer, r.At.Format("15:04:05.000"), r.Ms))
			}
		}
	}
	if len(wrong) > 0 {
		t.Errorf("valid requests answered with FAILED other than serverUnavailable: %v, e.g. %s "+
			"(checksumError right after a peer starts: its replica has not caught up with the log yet and does not know the frontend)",
			wrong, strings.Join(examples, "; "))
	}
	t.Logf("checking %d acknowledged meetings, %d with joins", len(acked), len(joinHosts))

	// Every acknowledged meeting is on every peer, bound to the same backend.
	var ref map[string]string
	for _, p := range peers {
		b, err := c.bindings(p)
		if err != nil {
			t.Fatalf("meetings on %s: %v", p, err)
		}
		var lost []string
		for m := range acked {
			if _, ok := b[m]; !ok {
				lost = append(lost, m)
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			t.Errorf("%d acknowledged creates missing from GET /api/v1/meetings on %s, e.g. %v", len(lost), p, lost[:min(5, len(lost))])
		}
		if ref == nil {
			ref = b
		} else if fmt.Sprint(b) != fmt.Sprint(ref) {
			t.Errorf("%s's meetings (%d) differ from peer1's (%d)", p, len(b), len(ref))
		}
	}

	// Joins: one backend per meeting, the one it is bound to.
	bad := 0
	for m, hosts := range joinHosts {
		if len(hosts) > 1 || ref[m] == "" {
			bad++
			if bad <= 5 {
				t.Errorf("meeting %s: joins went to %v, bound to %q", m, hosts, ref[m])
			}
			continue
		}
		for h := range hosts {
			if h != ref[m] {
				bad++
				if bad <= 5 {
					t.Errorf("meeting %s: joins went to %s, bound to %s", m, h, ref[m])
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("… %d meetings whose joins went astray", bad)
	}

	// The fake nodes: no meeting on two of them; each acknowledged one on
	// the node it is bound to.
	holders := map[string][]string{}
	for _, node := range bbbNodes {
		a, err := c.addr(node, bbbPort)
		if err != nil {
			t.Fatal(err)
		}
		cl := harness.BBBClient{Base: "http://" + a + "/bigbluebutton/api", Secret: bbbSecret(node)}
		ans, err := cl.TryGet("getMeetings", "")
		if err != nil || ans.ReturnCode != "SUCCESS" {
			t.Fatalf("getMeetings on %s: %v %s", node, err, ans.Raw)
		}
		for _, m := range ans.Meetings {
			if mid, ok := strings.CutPrefix(m.MeetingID, frontendKey+"~"); ok {
				holders[mid] = append(holders[mid], node+":8090")
			}
		}
	}
	misplaced := 0
	for m, hs := range holders {
		if len(hs) > 1 {
			t.Errorf("meeting %s runs on %d backends: %v", m, len(hs), hs)
		}
	}
	for m := range acked {
		if hs := holders[m]; len(hs) != 1 || hs[0] != ref[m] {
			misplaced++
			if misplaced <= 5 {
				t.Errorf("acknowledged meeting %s runs on %v, bound to %q", m, hs, ref[m])
			}
		}
	}

	// getMeetingInfo finds every acknowledged meeting, through every peer.
	ids := make([]string, 0, len(acked))
	for m := range acked {
		ids = append(ids, m)
	}
	sort.Strings(ids)
	clients := map[string]harness.BBBClient{}
	for _, p := range peers {
		a, err := c.addr(p, peerPort)
		if err != nil {
			t.Fatal(err)
		}
		clients[p] = harness.BBBClient{Base: "http://" + a + "/bigbluebutton/api", Secret: frontendSecret}
	}
	var missing []string
	for i, m := range ids {
		p := peers[i%len(peers)]
		ans, err := clients[p].TryGet("getMeetingInfo", "meetingID="+url.QueryEscape(m))
		if err != nil || ans.ReturnCode != "SUCCESS" {
			missing = append(missing, fmt.Sprintf("%s via %s: %v %s", m, p, err, ans.MessageKey))
		}
	}
	if len(missing) > 0 {
		t.Errorf("getMeetingInfo failed for %d of %d acknowledged meetings, e.g. %s", len(missing), len(ids),
			strings.Join(missing[:min(5, len(missing))], "; "))
	}
	if err := c.waitConverged(30 * time.Second); err != nil {
		t.Errorf("peers not converged at the end: %v", err)
	}
	return acked
}
