package raftnode_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/gateway"
	"github.com/conclave-lb/conclave/internal/peertls"
	"github.com/conclave-lb/conclave/internal/pki"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/raftnode"
	"github.com/conclave-lb/conclave/test/harness"
)

const testJWTSecret = "tls-test-secret-0123456789abcdef"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type testCA struct{ cert, key []byte }

func newTestCA(t *testing.T) testCA {
	t.Helper()
	c, k, err := pki.NewCA(1)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, k}
}

// peer makes a certificate for name and returns it as a peer TLS config.
func (a testCA) peer(t *testing.T, name string) *peertls.Config {
	t.Helper()
	c, k, err := pki.NewCert(a.cert, a.key, name, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := peertls.New(a.cert, c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// keyPair is name's certificate from this CA, for hand-made tls.Configs.
func (a testCA) keyPair(t *testing.T, name string) tls.Certificate {
	t.Helper()
	c, k, err := pki.NewCert(a.cert, a.key, name, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// tlsPeer is one in-process peer: a Raft node and the gateway on its HTTP
// port, both under mutual TLS, as conclaved runs them.
type tlsPeer struct {
	id, raftAddr, httpAddr string
	node                   *raftnode.Node
}

func startTLSPeer(t *testing.T, ca testCA, id string, join []string) *tlsPeer {
	t.Helper()
	tc := ca.peer(t, id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsPeer{id: id, raftAddr: harness.FreeAddr(t), httpAddr: ln.Addr().String()}
	p.node, err = raftnode.Open(raftnode.Config{
		ID: id, DataDir: t.TempDir(), RaftBind: p.raftAddr, HTTPAdvertise: p.httpAddr,
		Bootstrap: len(join) == 0, Join: join, PeerToken: auth.PeerTokenSource(testJWTSecret, id),
		TLS: tc, Logger: quiet,
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := gateway.New(gateway.Config{JWTSecret: testJWTSecret, Logger: quiet, PeerTLS: tc}, p.node)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Drain()
		p.node.HandOverLeadership()
		srv.Shutdown(ctx)
		p.node.Shutdown()
	})
	return p
}

// startTLSCluster starts three peers under one CA: p1 bootstraps, p2 and
// p3 join through p1's HTTP port (over mutual TLS), and waits until every
// peer sees three reachable voters and one leader.
func startTLSCluster(t *testing.T, ca testCA) []*tlsPeer {
	t.Helper()
	p1 := startTLSPeer(t, ca, "p1", nil)
	peers := []*tlsPeer{p1, startTLSPeer(t, ca, "p2", []string{p1.httpAddr}), startTLSPeer(t, ca, "p3", []string{p1.httpAddr})}
	testwait.Eventually(t, 30*time.Second, func() error {
		for _, p := range peers {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			infos, err := p.node.Peers(ctx)
			cancel()
			if err != nil {
				return err
			}
			if len(infos) != 3 {
				return fmt.Errorf("%s sees %d peers", p.id, len(infos))
			}
			for _, pi := range infos {
				if !pi.Voter || !pi.Reachable || pi.HTTPAddr == "" {
					return fmt.Errorf("%s sees %+v", p.id, pi)
				}
			}
			if st := p.node.Status(); st.LeaderID == "" || !st.Ready {
				return fmt.Errorf("%s: leader %q ready %v", p.id, st.LeaderID, st.Ready)
			}
		}
		return nil
	})
	return peers
}

func follower(t *testing.T, peers []*tlsPeer) *tlsPeer {
	t.Helper()
	for _, p := range peers {
		if p.node.Status().State == "Follower" {
			return p
		}
	}
	t.Fatal("no follower")
	return nil
}

// clusterView is what an attack must not change.
type clusterView struct {
	terms   map[string]uint64
	leaders map[string]string
}

func viewOf(peers []*tlsPeer) clusterView {
	v := clusterView{terms: map[string]uint64{}, leaders: map[string]string{}}
	for _, p := range peers {
		st := p.node.Status()
		v.terms[p.id], v.leaders[p.id] = st.Term, st.LeaderID
	}
	return v
}

// dialStream is a raft StreamLayer that only dials, with dial.
type dialStream struct {
	net.Listener
	dial func(addr string, timeout time.Duration) (net.Conn, error)
}

func (s dialStream) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(a), timeout)
}

// attacker is hashicorp/raft's own NetworkTransport, aimed at a peer.
type attacker struct {
	name  string
	trans *raft.NetworkTransport
}

func (a attacker) forgeAppendEntries(target *tlsPeer) (*raft.AppendEntriesResponse, error) {
	stats := target.node.RaftStats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	lastIdx, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
	lastTerm, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte(a.trans.LocalAddr())},
		Term:      term + 1, PrevLogEntry: lastIdx, PrevLogTerm: lastTerm,
		Entries: []*raft.Log{{Index: lastIdx + 1, Term: term + 1, Type: raft.LogCommand,
			Data: fsm.Encode(&fsm.AddFrontend{Key: "evil", Secret: "attacker-secret", Now: 1})}},
		LeaderCommitIndex: lastIdx + 1,
	}
	var resp raft.AppendEntriesResponse
	err := a.trans.AppendEntries(raft.ServerID(target.id), raft.ServerAddress(target.raftAddr), req, &resp)
	return &resp, err
}

func (a attacker) requestVote(target *tlsPeer, term uint64) (*raft.RequestVoteResponse, error) {
	req := &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(a.trans.LocalAddr())},
		Term:      term, LastLogIndex: 1 << 40, LastLogTerm: term,
	}
	var resp raft.RequestVoteResponse
	err := a.trans.RequestVote(raft.ServerID(target.id), raft.ServerAddress(target.raftAddr), req, &resp)
	return &resp, err
}

// The Raft port takes RPCs only from holders of a certificate from the
// cluster CA: a forged AppendEntries (next term, matching the follower's
// last entry, a real command adding a frontend) and a RequestVote with a
// huge term from an unknown ID are refused from raft's own plain TCP
// transport and from a TLS client with another CA's certificate, and leave
// term, leader and state as they were. A control RPC with a valid
// certificate is answered, so the refusals come from TLS.
func TestRaftPortRefusesPeersWithoutClusterCertificate(t *testing.T) {
	ca := newTestCA(t)
	peers := startTLSCluster(t, ca)
	target := follower(t, peers)

	plainTrans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plainTrans.Close()
	otherCA := newTestCA(t)
	foreign := otherCA.keyPair(t, target.id) // same name, wrong CA
	foreignTrans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		MaxPool: 1, Timeout: 2 * time.Second, Logger: nil,
		Stream: dialStream{Listener: mustListen(t), dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			// An attacker does not care who the server is: no verification.
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{
				Certificates: []tls.Certificate{foreign}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
			return d.Dial("tcp", addr)
		}},
	})
	defer foreignTrans.Close()

	before := viewOf(peers)
	for _, a := range []attacker{{"raft's plain TCP transport", plainTrans}, {"TLS with another CA's certificate", foreignTrans}} {
		if resp, err := a.forgeAppendEntries(target); err == nil {
			t.Errorf("%s: forged AppendEntries answered: %+v", a.name, resp)
		}
		if resp, err := a.requestVote(target, before.terms[target.id]+1_000_000); err == nil {
			t.Errorf("%s: RequestVote with a huge term answered: %+v", a.name, resp)
		}
	}

	// Positive control: the same port answers a holder of a cluster
	// certificate (a stale RequestVote that changes nothing). With TLS off
	// this handshake would fail and the test with it.
	valid := ca.peer(t, "control")
	validTrans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		MaxPool: 1, Timeout: 2 * time.Second,
		Stream: dialStream{Listener: mustListen(t), dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: valid.Client()}
			return d.Dial("tcp", addr)
		}},
	})
	defer validTrans.Close()
	resp, err := attacker{"control", validTrans}.requestVote(target, 0)
	if err != nil {
		t.Fatalf("control RPC with a cluster certificate: %v", err)
	}
	if resp.Granted || resp.Term != before.terms[target.id] {
		t.Fatalf("control RPC: %+v, want a refused vote at term %d", resp, before.terms[target.id])
	}

	// For the time a forged entry or term would need to show, none does.
	testwait.AssertUntil(t, time.Second, func() error {
		after := viewOf(peers)
		for _, p := range peers {
			if after.terms[p.id] != before.terms[p.id] || after.leaders[p.id] != before.leaders[p.id] {
				return fmt.Errorf("%s: term %d→%d, leader %q→%q", p.id, before.terms[p.id], after.terms[p.id], before.leaders[p.id], after.leaders[p.id])
			}
			if fe, ok := p.node.FSM().Frontend("evil"); ok {
				return fmt.Errorf("%s: forged frontend applied: %+v", p.id, fe)
			}
		}
		return nil
	})
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// Peer calls travel over mutual TLS: a follower's write is forwarded to
// the leader and applied; the same internal route in plain HTTP is refused
// (403, even with a valid peer token), as is TLS without a certificate
// from the CA. The public routes stay plain HTTP on the same port.
func TestPeerCallsOverMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	peers := startTLSCluster(t, ca)
	f := follower(t, peers)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.node.Apply(ctx, &fsm.AddFrontend{Key: "via-follower", Secret: "s", Now: 1})
	if err != nil || raftnode.ResultError(res) != nil {
		t.Fatalf("forwarded write from follower %s: %v %v", f.id, err, raftnode.ResultError(res))
	}
	for _, p := range peers {
		p := p
		testwait.Eventually(t, 10*time.Second, func() error {
			if _, ok := p.node.FSM().Frontend("via-follower"); !ok {
				return fmt.Errorf("%s lacks the forwarded frontend", p.id)
			}
			return nil
		})
	}

	token := auth.PeerTokenSource(testJWTSecret, "p9")()
	call := func(c *http.Client, url string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	status, body, err := call(plain, "http://"+f.httpAddr+raftnode.InternalPrefix+"status")
	if err != nil {
		t.Fatal(err)
	}
	var eb struct{ Error string }
	if status != http.StatusForbidden || json.Unmarshal([]byte(body), &eb) != nil || eb.Error == "" {
		t.Fatalf("internal call in plain HTTP: %d %s, want 403 with a JSON error", status, body)
	}
	// A forwarded write sent by hand in plain HTTP is refused too, and
	// changes nothing.
	status, body, _ = call(plain, "http://"+f.httpAddr+raftnode.InternalPrefix+"apply")
	if status != http.StatusForbidden {
		t.Fatalf("apply in plain HTTP: %d %s", status, body)
	}

	other := newTestCA(t)
	noCA := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, Certificates: []tls.Certificate{other.keyPair(t, "p9")}}}}
	if status, body, err := call(noCA, "https://"+f.httpAddr+raftnode.InternalPrefix+"status"); err == nil {
		t.Fatalf("internal call with another CA's certificate answered: %d %s", status, body)
	}

	// Control: with a cluster certificate and the token, the call works.
	member := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.peer(t, "p9").Client()}}
	status, body, err = call(member, "https://"+f.httpAddr+raftnode.InternalPrefix+"status")
	if err != nil || status != http.StatusOK || !strings.Contains(body, `"id":"`+f.id+`"`) {
		t.Fatalf("internal call over mutual TLS: %d %s %v", status, body, err)
	}
	// The TLS side answers peer routes only; the public API stays plain.
	if resp, err := member.Get("https://" + f.httpAddr + "/healthz"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/healthz over peer TLS: %v %v", resp, err)
	}
	if resp, err := plain.Get("http://" + f.httpAddr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz in plain HTTP: %v %v", resp, err)
	}
}
