// Command conclave-agent runs beside one BigBlueButton server: it reads
// the server's URL and secret from bbb-web's properties, polls its API for
// the load, gossips the load to the Conclave peers and, with -a, registers
// the server as a backend.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/agent"
	"github.com/conclave-lb/conclave/discovery"
	"github.com/conclave-lb/conclave/internal/cli"
	"github.com/conclave-lb/conclave/shipping"
)

var version = "dev"

type options struct {
	join                                      []string
	autoregister                              bool
	bbbAPI, gossipAddr, gossipAdvertise, name string
	poll                                      time.Duration
	recordingsDir                             string
	transferRate                              byteRate
	transferChunk                             byteSize
	recordingsScan, recordingsSettle          time.Duration
}

var envFlags = cli.EnvFlags{
	"join":              "CONCLAVE_GOSSIP_JOIN",
	"autoregister":      "CONCLAVE_AUTOREGISTER",
	"bbb-api":           "CONCLAVE_BBB_API",
	"gossip-addr":       "CONCLAVE_AGENT_GOSSIP_ADDR",
	"gossip-advertise":  "CONCLAVE_AGENT_GOSSIP_ADVERTISE",
	"name":              "CONCLAVE_AGENT_NAME",
	"poll":              "CONCLAVE_AGENT_POLL",
	"recordings-dir":    "CONCLAVE_RECORDINGS_DIR",
	"transfer-rate":     "CONCLAVE_TRANSFER_RATE",
	"transfer-chunk":    "CONCLAVE_TRANSFER_CHUNK",
	"recordings-scan":   "CONCLAVE_RECORDINGS_SCAN",
	"recordings-settle": "CONCLAVE_RECORDINGS_SETTLE",
}

// byteRate is a bytes-per-second flag that takes suffixes: 20M, 512k.
type byteRate int64

func (r *byteRate) String() string { return shipping.FormatBytes(int64(*r)) + "/s" }
func (r *byteRate) Type() string   { return "bytes/s" }
func (r *byteRate) Set(s string) error {
	n, err := shipping.ParseBytes(s)
	if err != nil {
		return err
	}
	*r = byteRate(n)
	return nil
}

// byteSize is a byte count flag that takes suffixes: 64k, 4M.
type byteSize int64

func (b *byteSize) String() string { return shipping.FormatBytes(int64(*b)) }
func (b *byteSize) Type() string   { return "bytes" }
func (b *byteSize) Set(s string) error {
	n, err := shipping.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func main() {
	if err := newCommand(nil).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "conclave-agent:", err)
		os.Exit(1)
	}
}

// newCommand builds the command; stop, when set, replaces the SIGTERM/
// SIGINT wait (for tests).
func newCommand(stop <-chan struct{}) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "conclave-agent",
		Short: "Conclave agent: gossips one BBB server's load to the Conclave peers",
		Long: `conclave-agent runs beside one BigBlueButton server. It reads the server's URL and
secret from bbb-web's properties, polls its API (a signed getMeetings) for meetings,
attendees and video streams, and gossips that load to the Conclave peers. With -a it
registers the server as a backend (AdminState init) through a peer's admin API.
When --recordings-dir exists, it ships every recording (with CONCLAVE_API_TOKEN when the peers have a JWT secret)
format BBB publishes there to the cluster's central storage, paced to --transfer-rate.

Environment-only settings:
  BBB_CONFIG            bbb-web properties (default ` + agent.DefaultConfigPath + `)
  BBB_CONFIG_OVERRIDE   overrides whose keys win (default ` + agent.DefaultOverridePath + `, if it exists)
  CONCLAVE_LOAD_FACTOR  this server's load factor (default 1.0). When set, the agent writes it into
                        its backend's load_factor setting through a peer's admin API on every start
                        (needs CONCLAVE_API_TOKEN when the peers have a JWT secret); an operator's
                        later conclavectl set backend holds until the agent restarts
  CONCLAVE_GOSSIP_KEY   base64 AES key (16/24/32 bytes), the same as the peers'
  CONCLAVE_API_TOKEN    agent token (scope conclave:agent, subject this BBB API's host:port): fetches
                        the key the load is signed with (peers with a JWT secret ignore unsigned
                        load) and autoregisters
  CONCLAVE_LOG_LEVEL, CONCLAVE_LOG_FORMAT`,
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := envFlags.Apply(cmd.Flags()); err != nil {
				return err
			}
			return run(o, cmd.ErrOrStderr(), stop)
		},
	}
	cmd.SetVersionTemplate("conclave-agent {{.Version}}\n")
	f := cmd.Flags()
	f.StringSliceVar(&o.join, "join", nil, "comma-separated gossip addresses of Conclave peers (its token and BBB secret go only to the peers at these addresses)")
	f.BoolVarP(&o.autoregister, "autoregister", "a", false, "register this BBB server as a backend (AdminState init) if unknown")
	f.StringVar(&o.bbbAPI, "bbb-api", "", "BBB API URL to poll (default: from BBB_CONFIG)")
	f.StringVar(&o.gossipAddr, "gossip-addr", "127.0.0.1:42356", "memberlist bind address (UDP+TCP)")
	f.StringVar(&o.gossipAdvertise, "gossip-advertise", "", "gossip address peers reach this agent on (default: --gossip-addr)")
	f.StringVar(&o.name, "name", "", "gossip member name (default: BBB host:gossip port)")
	f.DurationVar(&o.poll, "poll", agent.DefaultPoll, "how often to poll the BBB API")
	f.StringVar(&o.recordingsDir, "recordings-dir", shipping.DefaultPublishedDir, "BBB's published recordings, shipped to central storage when the directory exists (empty: off)")
	o.transferRate = 20 << 20
	f.Var(&o.transferRate, "transfer-rate", "bandwidth for shipping recordings, bytes per second (suffixes k, M, G: binary; 0: unlimited)")
	o.transferChunk = adminapi.TransferDefaultSize
	f.Var(&o.transferChunk, "transfer-chunk", "chunk size for shipping recordings (64k to 16M; an interrupted transfer resumes only with the same size)")
	f.DurationVar(&o.recordingsScan, "recordings-scan", agent.DefaultRecordingsScan, "how often to scan --recordings-dir")
	f.DurationVar(&o.recordingsSettle, "recordings-settle", agent.DefaultRecordingsSettle, "ship a recording format only when none of its files changed for this long")
	envFlags.Annotate(f)
	return cmd
}

func run(o options, stderr io.Writer, stop <-chan struct{}) error {
	logger, err := cli.NewLogger(stderr)
	if err != nil {
		return err
	}
	if o.poll <= 0 {
		return fmt.Errorf("--poll %v: want a positive duration", o.poll)
	}
	lf, setLF := 1.0, false
	if s := strings.TrimSpace(os.Getenv("CONCLAVE_LOAD_FACTOR")); s != "" {
		setLF = true
		if lf, err = strconv.ParseFloat(s, 64); err != nil || !(lf > 0) || lf > 1000 {
			return fmt.Errorf("CONCLAVE_LOAD_FACTOR=%q: want a number above 0 and at most 1000 (the backend setting's range)", s)
		}
	}
	if o.recordingsScan <= 0 {
		return fmt.Errorf("--recordings-scan %v: want a positive duration", o.recordingsScan)
	}
	if c := int64(o.transferChunk); c < adminapi.TransferMinChunk || c > adminapi.TransferMaxChunk {
		return fmt.Errorf("--transfer-chunk %s: want 64k to 16M", o.transferChunk.String())
	}
	if o.recordingsSettle < 0 {
		return fmt.Errorf("--recordings-settle %v: want a duration of 0 or more", o.recordingsSettle)
	}
	recordings := ""
	if o.recordingsDir != "" {
		if fi, err := os.Stat(o.recordingsDir); err == nil && fi.IsDir() {
			recordings = o.recordingsDir
		}
	}
	var key []byte
	if s := os.Getenv("CONCLAVE_GOSSIP_KEY"); s != "" {
		if key, err = discovery.ParseKey(s); err != nil {
			return fmt.Errorf("CONCLAVE_GOSSIP_KEY: %w", err)
		}
	}

	paths := []string{agent.DefaultConfigPath}
	if p := os.Getenv("BBB_CONFIG"); p != "" {
		paths[0] = p
	}
	if p := os.Getenv("BBB_CONFIG_OVERRIDE"); p != "" {
		paths = append(paths, p) // named explicitly: it must be readable
	} else if _, err := os.Stat(agent.DefaultOverridePath); err == nil {
		paths = append(paths, agent.DefaultOverridePath)
	}
	props, err := agent.LoadProperties(paths...)
	if err != nil {
		return err
	}
	apiURL, secret, algos, err := agent.BBBSettings(props, o.bbbAPI)
	if err != nil {
		return err
	}

	if _, _, err := net.SplitHostPort(o.gossipAddr); err != nil {
		return fmt.Errorf("--gossip-addr %q: %w", o.gossipAddr, err)
	}
	if o.gossipAdvertise != "" {
		if _, _, err := net.SplitHostPort(o.gossipAdvertise); err != nil {
			return fmt.Errorf("--gossip-advertise %q: %w", o.gossipAdvertise, err)
		}
	}
	if o.name == "" {
		o.name = defaultName(apiURL, o.gossipAddr)
	}

	switch {
	case recordings != "":
		logger.Info("recording shipping on", "recordings_dir", recordings, "transfer_rate", o.transferRate.String())
	case o.recordingsDir == "":
		logger.Info("recording shipping off: --recordings-dir is empty")
	default:
		logger.Info("recording shipping off: no such directory", "recordings_dir", o.recordingsDir)
	}
	a, err := agent.Start(agent.Config{
		APIURL: apiURL, Secret: secret, Algorithms: algos, Poll: o.poll, LoadFactor: lf, SetLoadFactor: setLF,
		Gossip: discovery.Config{
			Name: o.name, BindAddr: o.gossipAddr, AdvertiseAddr: o.gossipAdvertise,
			Join: o.join, SecretKey: key,
		},
		Autoregister: o.autoregister, APIToken: os.Getenv("CONCLAVE_API_TOKEN"),
		RecordingsDir: recordings, TransferRate: int64(o.transferRate), TransferChunk: int64(o.transferChunk),
		RecordingsScan: o.recordingsScan, RecordingsSettle: o.recordingsSettle,
		Logger: logger.With("agent", o.name),
	})
	if err != nil {
		return err
	}
	if len(o.join) == 0 {
		logger.Warn("no --join given: this agent gossips with no one until a peer joins it")
	}
	if key == nil && !loopback(o.gossipAddr) {
		logger.Warn("gossip is not encrypted outside loopback: set CONCLAVE_GOSSIP_KEY")
	}

	if stop == nil {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		s := <-sigs
		logger.Info("shutting down", "signal", s.String())
	} else {
		<-stop
	}
	if err := a.Close(5 * time.Second); err != nil && !errors.Is(err, net.ErrClosed) {
		logger.Warn("leaving the gossip cluster", "err", err)
	}
	return nil
}

// defaultName is the BBB host plus the gossip port: unique per agent, and
// readable in member lists.
func defaultName(apiURL, gossipAddr string) string {
	host := "agent"
	if u, err := url.Parse(apiURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	_, port, _ := net.SplitHostPort(gossipAddr)
	return host + ":" + port
}

func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
