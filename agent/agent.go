// Package agent is conclave-agent's engine: it runs beside one BBB server,
// polls that server's API for its load, gossips the load to the Conclave
// peers (package discovery) and, if asked, registers the server as a
// backend through a peer's admin API.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/shipping"
)

// Defaults.
const (
	DefaultPoll            = 2 * time.Second
	DefaultRegisterRetry   = 5 * time.Second  // between rounds over the peers
	DefaultRegisterBackoff = 60 * time.Second // after the token was refused
	bbbTimeout             = 2 * time.Second
	adminTimeout           = 5 * time.Second
	maxBBBResponse         = 32 << 20
)

// Config configures an agent.
type Config struct {
	APIURL     string   // the BBB API URL it polls (normalised by Start)
	Secret     string   // the BBB API secret (securitySalt); never gossiped or logged
	Algorithms []string // the BBB server's supportedChecksumAlgorithms; empty = all
	Poll       time.Duration
	LoadFactor float64 // 0 means 1
	// SetLoadFactor makes the agent write LoadFactor into its backend's
	// settings (load_factor) through a peer's admin API once per start, as
	// b3scale's node agent does: the last writer wins, so an operator's
	// later `conclavectl set backend` holds until the agent next starts.
	// conclave-agent sets it when CONCLAVE_LOAD_FACTOR is given.
	SetLoadFactor bool

	// Gossip: Name, BindAddr, AdvertiseAddr, Join, SecretKey, Fast. Start
	// fills in Meta and, if unset, Logger.
	Gossip discovery.Config

	Autoregister    bool          // register the server through a peer's admin API
	APIToken        string        // bearer token for the admin API; never logged
	RegisterRetry   time.Duration // default DefaultRegisterRetry
	RegisterBackoff time.Duration // after 401/403; default DefaultRegisterBackoff

	// Recordings: with RecordingsDir (BBB's published tree; the peers
	// take them with its APIToken), the agent ships every settled recording format found there
	// to the cluster's central storage (see recordings.go).
	RecordingsDir    string
	TransferRate     int64         // bytes per second; 0 = unlimited
	TransferChunk    int64         // chunk size; 0 = adminapi.TransferDefaultSize
	RecordingsScan   time.Duration // default DefaultRecordingsScan
	RecordingsSettle time.Duration // default DefaultRecordingsSettle

	HTTPClient *http.Client // for BBB and the admin API; default: net/http with timeouts
	Logger     *slog.Logger
}

// Agent is a running conclave-agent.
type Agent struct {
	cfg    Config
	algo   bbb.Algorithm
	log    *slog.Logger
	node   *discovery.Node
	bbbc   *http.Client
	adminc *http.Client

	mu   sync.Mutex
	load discovery.Meta // last polled load (Seq unset)

	registered atomic.Bool
	factorSet  atomic.Bool // SetLoadFactor has been applied
	signing    atomic.Bool // the load key is set: gossiped load is signed
	polls      atomic.Int64
	hostPort   string // the BBB server's host:port, as agent tokens name it
	shipped    shipping.Progress
	join       joinSet

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

// Start validates cfg, joins the gossip cluster and starts polling (and
// registering, with Autoregister). It fails on a bad API URL, an empty
// secret, an unusable load factor or checksum list, or gossip that
// cannot bind.
func Start(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	u, err := bbb.NormalizeAPIURL(cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("BBB API URL: %w", err)
	}
	cfg.APIURL = u
	if cfg.Secret == "" {
		return nil, errors.New("the BBB secret is empty: it would turn checksum checks off, so conclave-agent refuses it")
	}
	algo, err := chooseAlgorithm(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	if cfg.LoadFactor == 0 {
		cfg.LoadFactor = 1
	}
	if cfg.LoadFactor < 0 || cfg.LoadFactor != cfg.LoadFactor || cfg.LoadFactor > 1000 {
		return nil, fmt.Errorf("load factor %v: want a number above 0 and at most 1000", cfg.LoadFactor)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.RegisterRetry <= 0 {
		cfg.RegisterRetry = DefaultRegisterRetry
	}
	if cfg.RegisterBackoff <= 0 {
		cfg.RegisterBackoff = DefaultRegisterBackoff
	}
	if cfg.RecordingsScan <= 0 {
		cfg.RecordingsScan = DefaultRecordingsScan
	}
	if cfg.RecordingsSettle <= 0 {
		cfg.RecordingsSettle = DefaultRecordingsSettle
	}
	if cfg.TransferRate < 0 {
		return nil, fmt.Errorf("transfer rate %d: want 0 (unlimited) or more", cfg.TransferRate)
	}
	if c := cfg.TransferChunk; c != 0 && (c < adminapi.TransferMinChunk || c > adminapi.TransferMaxChunk) {
		return nil, fmt.Errorf("transfer chunk size %d: want %d to %d bytes", c, adminapi.TransferMinChunk, adminapi.TransferMaxChunk)
	}
	a := &Agent{cfg: cfg, algo: algo, log: cfg.Logger.With("component", "agent")}
	a.bbbc, a.adminc = cfg.HTTPClient, cfg.HTTPClient
	if a.bbbc == nil {
		a.bbbc = &http.Client{Timeout: bbbTimeout}
		a.adminc = &http.Client{Timeout: adminTimeout}
	}
	a.load = discovery.Meta{Role: discovery.RoleAgent, APIURL: u, LoadFactor: cfg.LoadFactor}
	a.hostPort, _ = auth.HostPort(u)

	g := cfg.Gossip
	g.Meta = a.load
	if g.Logger == nil {
		g.Logger = cfg.Logger
	}
	if a.node, err = discovery.Start(g); err != nil {
		return nil, err
	}
	a.log.Info("agent started", "bbb_api", u, "checksum_algorithm", string(algo), "poll", cfg.Poll.String(),
		"load_factor", cfg.LoadFactor, "gossip", a.node.Addr(), "name", a.node.Name(),
		"autoregister", cfg.Autoregister, "api_token", cfg.APIToken != "")

	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go a.pollLoop(ctx)
	if cfg.Autoregister {
		a.wg.Add(1)
		go a.registerLoop(ctx)
	}
	if cfg.SetLoadFactor {
		a.wg.Add(1)
		go a.loadFactorLoop(ctx)
	}
	if cfg.APIToken != "" {
		a.wg.Add(1)
		go a.loadKeyLoop(ctx)
	} else {
		a.log.Warn("no CONCLAVE_API_TOKEN: peers with a JWT secret ignore this agent's load (they need it signed with the key an agent token gets)",
			"token_subject", a.hostPort)
	}
	if cfg.RecordingsDir != "" {
		if cfg.APIToken == "" {
			// As registration: a cluster without a JWT secret takes it from
			// loopback (the demo); any other refuses it, logged by the loop.
			a.log.Warn("shipping recordings without CONCLAVE_API_TOKEN: only peers without a JWT secret, on this host, take them", "recordings_dir", cfg.RecordingsDir)
		}
		a.wg.Add(1)
		go a.recordingsLoop(ctx)
	}
	return a, nil
}

// Node is the agent's gossip member.
func (a *Agent) Node() *discovery.Node { return a.node }

// Load is the load from the last poll.
func (a *Agent) Load() discovery.Meta {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.load
}

// Registered reports whether autoregistration has succeeded.
func (a *Agent) Registered() bool { return a.registered.Load() }

// LoadFactorSet reports whether SetLoadFactor has reached the backend's settings.
func (a *Agent) LoadFactorSet() bool { return a.factorSet.Load() }

// Close leaves the gossip cluster (peers see the agent go at once rather
// than after failure detection), waiting up to leaveTimeout, then stops.
func (a *Agent) Close(leaveTimeout time.Duration) error {
	var err error
	a.closed.Do(func() {
		err = a.node.Leave(leaveTimeout)
		a.cancel()
		a.wg.Wait()
		if e := a.node.Shutdown(); err == nil {
			err = e
		}
		a.log.Info("agent stopped")
	})
	return err
}

// pollLoop polls BBB now and every Poll and reports the load each time.
func (a *Agent) pollLoop(ctx context.Context) {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	wasUp, first := false, true
	for {
		m, err := a.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		a.polls.Add(1)
		switch {
		case err != nil && (wasUp || first):
			a.log.Warn("BBB API unreachable; reporting it down", "bbb_api", a.cfg.APIURL, "err", err)
		case err == nil && !wasUp:
			a.log.Info("BBB API reachable", "bbb_api", a.cfg.APIURL, "meetings", m.Meetings, "attendees", m.Attendees)
		case err != nil:
			a.log.Debug("BBB API still unreachable", "err", err)
		}
		wasUp, first = err == nil, false

		a.mu.Lock()
		a.load = m
		a.mu.Unlock()
		// Every poll, changed or not: an unchanged load is a heartbeat that
		// goes to the peers only and keeps their view of it fresh.
		if err := a.node.UpdateMeta(m); err != nil {
			a.log.Error("cannot gossip load", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// meetingsResponse is the part of getMeetings the agent reads.
type meetingsResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	MessageKey string   `xml:"messageKey"`
	Message    string   `xml:"message"`
	Meetings   []struct {
		ParticipantCount      int `xml:"participantCount"`
		VideoCount            int `xml:"videoCount"`
		VoiceParticipantCount int `xml:"voiceParticipantCount"`
	} `xml:"meetings>meeting"`
}

// poll calls the signed getMeetings and sums the load. On any failure the
// returned meta says BBBUp=false with zero load.
func (a *Agent) poll(ctx context.Context) (discovery.Meta, error) {
	m := discovery.Meta{Role: discovery.RoleAgent, APIURL: a.cfg.APIURL, LoadFactor: a.cfg.LoadFactor}
	ctx, cancel := context.WithTimeout(ctx, bbbTimeout)
	defer cancel()
	u := a.cfg.APIURL + "getMeetings?" + bbb.SignQuery(a.algo, "getMeetings", "", a.cfg.Secret)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return m, err
	}
	resp, err := a.bbbc.Do(req)
	if err != nil {
		return m, stripQuery(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return m, fmt.Errorf("getMeetings: HTTP %d", resp.StatusCode)
	}
	var r meetingsResponse
	if err := xml.NewDecoder(io.LimitReader(resp.Body, maxBBBResponse)).Decode(&r); err != nil {
		return m, fmt.Errorf("getMeetings: unreadable response: %v", err)
	}
	if r.ReturnCode != "SUCCESS" {
		if r.MessageKey == bbb.KeyNoMeetings { // old BBB versions
			m.BBBUp = true
			return m, nil
		}
		if r.MessageKey == bbb.KeyChecksumError {
			return m, errors.New("getMeetings: BBB refused the checksum: check securitySalt and supportedChecksumAlgorithms")
		}
		return m, fmt.Errorf("getMeetings: %s %s: %s", r.ReturnCode, r.MessageKey, r.Message)
	}
	m.BBBUp = true
	m.Meetings = len(r.Meetings)
	for _, x := range r.Meetings {
		m.Attendees += x.ParticipantCount
		m.Videos += x.VideoCount
		m.Voice += x.VoiceParticipantCount
	}
	return m, nil
}

// stripQuery keeps the signed query (a checksum, not the secret, but no
// use in a log) out of net/http's URL errors.
func stripQuery(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("getMeetings: %w", ue.Err)
	}
	return err
}

// registerLoop registers this BBB server as a backend through the peers
// learned from gossip, in turn, until one answers 201 (registered) or 409
// (already known).
func (a *Agent) registerLoop(ctx context.Context) {
	defer a.wg.Done()
	waiting := false
	noPeers := func() {
		if !waiting {
			a.log.Info("autoregister: waiting for a Conclave peer to appear in the gossip cluster")
			waiting = true
		}
	}
	a.tryPeers(ctx, a.cfg.RegisterRetry, noPeers, func(peer string, wait *time.Duration) (stop, next bool) {
		waiting = false
		done, refused := a.register(ctx, peer)
		switch {
		case done:
			a.registered.Store(true)
			return true, false
		case refused:
			*wait = a.cfg.RegisterBackoff
			return false, false
		}
		return false, true
	})
}

// peerURL is path at a peer named by host:port or by a URL.
func peerURL(peer, path string) string {
	if strings.Contains(peer, "://") {
		return strings.TrimRight(peer, "/") + path
	}
	return "http://" + peer + path
}

// errBadPeerAddress: a request to a peer could not even be built.
var errBadPeerAddress = errors.New("bad peer address")

// callAdmin sends a JSON body to a peer's admin API, with the agent's
// token when it has one.
func (a *Agent) callAdmin(ctx context.Context, method, endpoint string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPeerAddress, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if a.cfg.APIToken != "" {
		req.Header.Set("Authorization", "Bearer "+a.cfg.APIToken)
	}
	return a.adminc.Do(req)
}

// register POSTs the backend to one peer. done: registered or already
// known; refused: the peer rejected the token or the request (retrying
// other peers now would not help).
func (a *Agent) register(ctx context.Context, peer string) (done, refused bool) {
	body, _ := json.Marshal(map[string]any{
		"url": a.cfg.APIURL, "secret": a.cfg.Secret,
		"settings": map[string]any{"load_factor": a.cfg.LoadFactor},
	})
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	resp, err := a.callAdmin(ctx, http.MethodPost, peerURL(peer, "/api/v1/backends"), body)
	if errors.Is(err, errBadPeerAddress) {
		a.log.Error("autoregister: bad peer address from gossip", "peer", peer, "err", err)
		return false, false
	}
	if err != nil {
		a.log.Warn("autoregister: peer unreachable", "peer", peer, "err", err)
		return false, false
	}
	defer resp.Body.Close()
	msg := errorMessage(resp.Body)
	switch resp.StatusCode {
	case http.StatusCreated:
		a.log.Info("autoregister: registered as a backend (AdminState init: enable it to take meetings)",
			"peer", peer, "bbb_api", a.cfg.APIURL)
		return true, false
	case http.StatusConflict:
		a.log.Info("autoregister: already registered", "peer", peer, "bbb_api", a.cfg.APIURL)
		return true, false
	case http.StatusUnauthorized, http.StatusForbidden:
		hint := "set CONCLAVE_API_TOKEN to a token with scope conclave:agent (subject: " + a.hostPort + ", this BBB server's host:port) or conclave:admin"
		if a.cfg.APIToken == "" {
			hint = "no CONCLAVE_API_TOKEN is set; " + hint
		}
		a.log.Error("autoregister: the admin API refused the token; retrying slowly", "peer", peer,
			"status", resp.StatusCode, "message", msg, "hint", hint, "retry_in", a.cfg.RegisterBackoff.String())
		return false, true
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		a.log.Error("autoregister: the admin API rejected the registration; retrying slowly", "peer", peer,
			"status", resp.StatusCode, "message", msg, "retry_in", a.cfg.RegisterBackoff.String())
		return false, true
	default:
		a.log.Warn("autoregister: peer failed; trying another", "peer", peer, "status", resp.StatusCode, "message", msg)
		return false, false
	}
}

// errorMessage reads a short error text from an admin API JSON answer.
func errorMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	var e struct {
		Error   any    `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil {
		var parts []string
		if s, ok := e.Error.(string); ok && s != "" {
			parts = append(parts, s)
		}
		if e.Message != "" {
			parts = append(parts, e.Message)
		}
		if len(parts) > 0 {
			return truncate(strings.Join(parts, ": "), 200)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
