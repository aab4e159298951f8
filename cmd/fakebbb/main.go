// Command fakebbb serves an in-memory BigBlueButton API (package
// test/fakebbb) for demos, tests and benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/conclave-lb/conclave/test/fakebbb"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `fakebbb serves a fake BigBlueButton API: checksums, meetings, joins, recordings.

Usage:
  fakebbb --listen 127.0.0.1:PORT --secret SECRET [--properties PATH]
          [--published-dir DIR [--recording-bytes N]]

Flags (each has an environment variable; a flag wins):
  --listen ADDR       FAKEBBB_LISTEN      address to serve on (default 127.0.0.1:8090)
  --secret S          FAKEBBB_SECRET      the API secret (securitySalt); required
  --properties PATH   FAKEBBB_PROPERTIES  write a bigbluebutton.properties there, for an agent
  --published-dir DIR FAKEBBB_PUBLISHED_DIR
                      write each published recording's files as BBB does:
                      DIR/video/<recordID>/ (video-0.m4v, index.html, then
                      metadata.xml), served at /playback/video/<recordID>/;
                      unpublished and deleted ones move to DIR/../unpublished
                      and DIR/../deleted, as in /var/bigbluebutton
  --recording-bytes N FAKEBBB_RECORDING_BYTES
                      size of a recording's video-0.m4v (default 262144)
  --version                               print the version and exit
  --help                                  print this help and exit

Signals: SIGHUP restarts the node empty (every meeting forgotten, same
address); SIGSTOP hangs it (connections accepted, nothing answered) until
SIGCONT; SIGINT or SIGTERM stop it.
`

// run is main without the process: it serves until ctx ends and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakebbb", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, once
	listen := fs.String("listen", envOr("FAKEBBB_LISTEN", "127.0.0.1:8090"), "")
	secret := fs.String("secret", os.Getenv("FAKEBBB_SECRET"), "")
	props := fs.String("properties", os.Getenv("FAKEBBB_PROPERTIES"), "")
	published := fs.String("published-dir", os.Getenv("FAKEBBB_PUBLISHED_DIR"), "")
	recBytes := fs.String("recording-bytes", envOr("FAKEBBB_RECORDING_BYTES", strconv.Itoa(fakebbb.DefaultRecordingBytes)), "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "fakebbb: %v\nRun fakebbb --help for usage.\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fakebbb: unexpected argument %q\nRun fakebbb --help for usage.\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "fakebbb %s\n", version)
		return 0
	}
	// An empty securitySalt turns checks off on a real node; never here.
	if *secret == "" {
		fmt.Fprintln(stderr, "fakebbb: a secret is required (--secret or FAKEBBB_SECRET)")
		return 2
	}

	mediaBytes, err := strconv.Atoi(*recBytes)
	if err != nil || mediaBytes < 1 {
		fmt.Fprintf(stderr, "fakebbb: --recording-bytes must be a positive number of bytes, not %q\n", *recBytes)
		return 2
	}
	if *published != "" {
		if err := os.MkdirAll(*published, 0o755); err != nil {
			fmt.Fprintf(stderr, "fakebbb: published dir: %v\n", err)
			return 1
		}
	}

	srv := fakebbb.NewWithConfig(fakebbb.Config{
		Secret:         *secret,
		PublishedDir:   *published,
		RecordingBytes: mediaBytes,
		ErrorLog:       log.New(stderr, "", 0),
	})
	api, err := srv.Start(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "fakebbb: cannot listen on %s: %v\n", *listen, err)
		return 1
	}
	defer srv.Close()
	if *props != "" {
		if err := writeProperties(*props, api, *secret); err != nil {
			fmt.Fprintf(stderr, "fakebbb: %v\n", err)
			return 1
		}
	}
	// SIGHUP restarts the node empty, as a BBB server loses its meetings
	// on a restart; SIGSTOP and SIGCONT hang and resume it (test/fakebbb's
	// Process). Caught before the address is printed: whoever reads the
	// address may send SIGHUP at once, and Go's default for it is to exit.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fmt.Fprintf(stdout, "fakebbb %s: BBB API at %s\n", version, api)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "fakebbb: shutting down")
			return 0
		case <-hup:
			if err := srv.Restart(); err != nil {
				fmt.Fprintf(stderr, "fakebbb: restart: %v\n", err)
				return 1
			}
			fmt.Fprintln(stdout, "fakebbb: restarted empty")
		}
	}
}

// writeProperties writes what an agent reads from bigbluebutton.properties.
// serverURL is the node's base URL; a wildcard listen address is given as
// loopback, which is where an agent beside the node reaches it.
func writeProperties(path, api, secret string) error {
	u, err := url.Parse(api)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	text := "# Written by fakebbb.\n" +
		"bigbluebutton.web.serverURL=http://" + net.JoinHostPort(host, port) + "\n" +
		"securitySalt=" + secret + "\n" +
		"supportedChecksumAlgorithms=sha1,sha256,sha384,sha512\n"
	// Written whole then renamed, so a reader never sees half a file; 0600
	// because it holds the secret.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fakebbb-properties-*")
	if err != nil {
		return fmt.Errorf("properties: %w", err)
	}
	_, werr := tmp.WriteString(text)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("properties: %w", errors.Join(werr, cerr))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("properties: %w", err)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
