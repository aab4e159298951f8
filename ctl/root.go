package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/auth"
)

// Environment variables conclavectl reads (a flag wins over its variable).
const (
	EnvAPI       = "CONCLAVE_API"
	EnvToken     = "CONCLAVE_API_TOKEN"
	EnvJWTSecret = "CONCLAVE_API_JWT_SECRET"
)

// options are the global flags, resolved against the environment.
type options struct {
	api, token, output string
}

// NewRootCommand builds conclavectl. version is printed by --version.
func NewRootCommand(version string) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "conclavectl",
		Short: "Operate a Conclave cluster: peers, backends, frontends, meetings",
		Long: `conclavectl talks to the admin API of any Conclave peer; writes are forwarded to the leader.

Environment:
  CONCLAVE_API             the peer to talk to (--api)
  CONCLAVE_API_TOKEN       bearer token (--token)
  CONCLAVE_API_JWT_SECRET  with no token given, mint a one-hour admin token from this secret`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return o.resolve(cmd)
		},
	}
	root.SetVersionTemplate("conclavectl {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&o.api, "api", DefaultAPI, "base URL of a peer's HTTP listener (env "+EnvAPI+")")
	pf.StringVar(&o.token, "token", "", "admin API bearer token (env "+EnvToken+")")
	pf.StringVarP(&o.output, "output", "o", "text", "output format: text or json")

	add := group("add", "Add a backend or frontend")
	set := group("set", "Change a backend's or frontend's settings (JSON merge patch; null unsets)")
	show := group("show", "Show backends, frontends, meetings or peers")
	del := group("delete", "Decommission a backend, or delete a frontend")
	enable := group("enable", "Enable a backend (AdminState ready)")
	disable := group("disable", "Disable (cordon) a backend: no new meetings, running ones go on")
	join := group("join", "Add a peer to the cluster")
	remove := group("remove", "Remove a peer from the cluster")
	root.AddCommand(add, set, show, del, enable, disable, join, remove, tokenCommand(), tlsCommand(), importCommand(o))

	add.AddCommand(o.addBackend(), o.addFrontend())
	set.AddCommand(o.setBackend(), o.setFrontend())
	show.AddCommand(o.showBackends(), o.showBackend(), o.showFrontends(), o.showMeetings(), o.showRecordings(), o.showPeers())
	del.AddCommand(o.deleteBackend(), o.deleteFrontend())
	enable.AddCommand(o.backendState("enable"))
	disable.AddCommand(o.backendState("disable"))
	join.AddCommand(o.joinPeer())
	remove.AddCommand(o.removePeer())
	return root
}

// resolve applies the environment to flags not given, and mints a token
// from the JWT secret when none is given.
func (o *options) resolve(cmd *cobra.Command) error {
	f := cmd.Flags()
	if !f.Changed("api") {
		if v := os.Getenv(EnvAPI); v != "" {
			o.api = v
		}
	}
	if !f.Changed("token") {
		o.token = os.Getenv(EnvToken)
	}
	if o.token == "" {
		if secret := os.Getenv(EnvJWTSecret); secret != "" {
			t, err := auth.Mint(secret, "conclavectl", []string{auth.ScopeAdmin}, time.Hour)
			if err != nil {
				return fmt.Errorf("minting a token from %s: %w", EnvJWTSecret, err)
			}
			o.token = t
		}
	}
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("-o must be text or json, not %q", o.output)
	}
	return nil
}

// group is a command word that only holds subcommands ("show", "add", ...).
// Without a subcommand it prints its help; an unknown one is an error.
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			sort.Strings(names)
			return fmt.Errorf("unknown command %q for %q (one of: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		},
	}
}

// nargs checks the number of positional arguments, naming the usage on error.
func nargs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d argument(s), got %d; usage: %s", cmd.CommandPath(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}

func (o *options) client() *Client { return NewClient(o.api, o.token) }

// jsonObject validates a -j argument locally, before anything is sent.
func jsonObject(s string) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		if err == nil {
			err = errors.New("got null")
		}
		return nil, fmt.Errorf("-j must be a JSON object, e.g. '{\"tags\":[\"bbb_30\"]}': %v", err)
	}
	return json.RawMessage(s), nil
}

// optionalJSON is jsonObject for an optional -j (nil when not given).
func optionalJSON(cmd *cobra.Command, s string) (json.RawMessage, error) {
	if !cmd.Flags().Changed("json") {
		return nil, nil
	}
	return jsonObject(s)
}

// emit prints v as indented JSON (-o json) or runs text.
func (o *options) emit(w io.Writer, v any, text func(w io.Writer)) error {
	if o.output == "json" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	text(w)
	return nil
}

func (o *options) addBackend() *cobra.Command {
	var secret, settings string
	cmd := &cobra.Command{
		Use:   "backend URL --secret S [-j JSON]",
		Short: "Register a BBB server (AdminState init: no meetings until enabled)",
		Long: `Register a BBB server by its API URL (…/bigbluebutton/api/ is added when missing).
It starts in AdminState init and gets no meetings until "conclavectl enable backend".
Settings (-j): {"tags":["bbb_30"],"load_factor":1.5}`,
		Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secret == "" {
				return errors.New("--secret is required (the BBB server's shared secret, `bbb-conf --secret`)")
			}
			js, err := optionalJSON(cmd, settings)
			if err != nil {
				return err
			}
			b, err := o.client().AddBackend(cmd.Context(), args[0], secret, js)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func(w io.Writer) {
				fmt.Fprintf(w, "backend %s added (AdminState %s): %s\n", b.ID, b.AdminState, b.URL)
				if b.AdminState == "init" {
					fmt.Fprintf(w, "enable it to place meetings on it: conclavectl enable backend %s\n", b.ID)
				}
			})
		},
	}
	cmd.Flags().StringVar(&secret, "secret", "", "the BBB server's shared secret")
	cmd.Flags().StringVarP(&settings, "json", "j", "", `settings, e.g. '{"tags":["bbb_30"],"load_factor":1.5}'`)
	return cmd
}

func (o *options) setBackend() *cobra.Command {
	var settings string
	cmd := &cobra.Command{
		Use:   "backend -j JSON URL|ID|HOST",
		Short: "Merge settings into a backend's (null unsets a key)",
		Args:  nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("json") {
				return errors.New("-j JSON is required, e.g. -j '{\"tags\":[\"bbb_30\"]}'")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			b, err := o.client().SetBackend(cmd.Context(), args[0], js)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func(w io.Writer) {
				fmt.Fprintf(w, "backend %s settings: %s\n", b.ID, compact(b.Settings))
			})
		},
	}
	cmd.Flags().StringVarP(&settings, "json", "j", "", "JSON merge patch of the settings")
	return cmd
}

func (o *options) backendState(action string) *cobra.Command {
	short := "Enable a backend: AdminState ready, it takes new meetings"
	if action == "disable" {
		short = "Disable (cordon) a backend: AdminState stopped, no new meetings, running ones go on"
	}
	return &cobra.Command{
		Use: "backend URL|ID|HOST", Short: short, Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := o.client()
			do := c.EnableBackend
			if action == "disable" {
				do = c.DisableBackend
			}
			b, err := do(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func(w io.Writer) {
				fmt.Fprintf(w, "backend %s %sd (AdminState %s, NodeState %s)\n", b.ID, action, b.AdminState, b.NodeState)
			})
		},
	}
}

func (o *options) deleteBackend() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "backend URL|ID|HOST [--force]",
		Short: "Decommission a backend: removed when its last meeting ends (--force: now)",
		Args:  nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := o.client().DeleteBackend(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), res, func(w io.Writer) {
				if res.Removed {
					fmt.Fprintf(w, "backend %s removed\n", res.Backend.ID)
				} else if n := res.Backend.BoundMeetings; n > 0 {
					fmt.Fprintf(w, "backend %s decommissioned: no new meetings; removed when its %d meeting(s) end (--force removes it now)\n", res.Backend.ID, n)
				} else {
					fmt.Fprintf(w, "backend %s decommissioned: no new meetings; removed when its last meeting ends (--force removes it now)\n", res.Backend.ID)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it now and forget its meetings")
	return cmd
}

// FormatBackend writes one backend in the block format b3scale users know:
//
//	<id>
//	  Host:        https://node22.bbb.example.org/bigbluebutton/api/
//	  Settings:    {"tags":["bbb_25"]}
//	  NodeState:   ready    AdminState:  ready
//	  MC/AC/R:     0/0/0.00
//	  LoadFactor:  1
//	  Latency:     92.5466361ms
//
// plus a LastError line when the node is in error.
func FormatBackend(w io.Writer, b *Backend) {
	fmt.Fprintf(w, "%s\n", b.ID)
	fmt.Fprintf(w, "  Host:        %s\n", b.URL)
	fmt.Fprintf(w, "  Settings:    %s\n", compact(b.Settings))
	fmt.Fprintf(w, "  NodeState:   %-8s AdminState:  %s\n", b.NodeState, b.AdminState)
	fmt.Fprintf(w, "  MC/AC/R:     %d/%d/%.2f\n", b.Meetings, b.Attendees, b.Ratio())
	fmt.Fprintf(w, "  LoadFactor:  %v\n", b.LoadFactor)
	fmt.Fprintf(w, "  Latency:     %v\n", time.Duration(b.LatencyNs))
	if b.NodeState == "error" && b.LastError != "" {
		fmt.Fprintf(w, "  LastError:   %s\n", b.LastError)
	}
}

// compact is raw JSON on one line, keys in the server's order ({} when
// absent or null).
func compact(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, t) != nil {
		return string(t)
	}
	return buf.String()
}

func (o *options) showBackends() *cobra.Command {
	return &cobra.Command{
		Use: "backends", Short: "List backends with their states and load", Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			bs, err := o.client().Backends(cmd.Context())
			if err != nil {
				return err
			}
			if bs == nil {
				bs = []Backend{}
			}
			return o.emit(cmd.OutOrStdout(), bs, func(w io.Writer) {
				if len(bs) == 0 {
					fmt.Fprintln(w, "no backends; add one with: conclavectl add backend URL --secret S")
				}
				for i := range bs {
					if i > 0 {
						fmt.Fprintln(w)
					}
					FormatBackend(w, &bs[i])
				}
			})
		},
	}
}

func (o *options) showBackend() *cobra.Command {
	return &cobra.Command{
		Use: "backend URL|ID|HOST", Short: "Show one backend", Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := o.client().Backend(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func(w io.Writer) { FormatBackend(w, b) })
		},
	}
}

func (o *options) addFrontend() *cobra.Command {
	var secret, settings string
	cmd := &cobra.Command{
		Use:   "frontend KEY --secret S [-j JSON]",
		Short: "Add a frontend (tenant: an LMS or portal with its own secret)",
		Long: `Add a frontend. Its BBB API is /bigbluebutton/api/ (found by its secret) or
/bbb/KEY/bigbluebutton/api/. Settings (-j): required_tags, default_presentation
({"url":…}), create_default_params, create_override_params.`,
		Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secret == "" {
				return errors.New("--secret is required (the shared secret the frontend will use)")
			}
			js, err := optionalJSON(cmd, settings)
			if err != nil {
				return err
			}
			f, err := o.client().AddFrontend(cmd.Context(), args[0], secret, js)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), f, func(w io.Writer) {
				fmt.Fprintf(w, "frontend %s added: BBB API at /bigbluebutton/api/ (by its secret) or /bbb/%s/bigbluebutton/api/\n", f.Key, f.Key)
			})
		},
	}
	cmd.Flags().StringVar(&secret, "secret", "", "the frontend's shared secret")
	cmd.Flags().StringVarP(&settings, "json", "j", "", `settings, e.g. '{"required_tags":["bbb_30"]}'`)
	return cmd
}

func (o *options) setFrontend() *cobra.Command {
	var settings string
	cmd := &cobra.Command{
		Use:   "frontend -j JSON KEY",
		Short: "Merge settings into a frontend's (null unsets a key)",
		Args:  nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("json") {
				return errors.New("-j JSON is required, e.g. -j '{\"required_tags\":[\"bbb_30\"]}'")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			f, err := o.client().SetFrontend(cmd.Context(), args[0], js)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), f, func(w io.Writer) {
				fmt.Fprintf(w, "frontend %s settings: %s\n", f.Key, compact(f.Settings))
			})
		},
	}
	cmd.Flags().StringVarP(&settings, "json", "j", "", "JSON merge patch of the settings")
	return cmd
}

func (o *options) showFrontends() *cobra.Command {
	return &cobra.Command{
		Use: "frontends", Short: "List frontends", Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs, err := o.client().Frontends(cmd.Context())
			if err != nil {
				return err
			}
			if fs == nil {
				fs = []Frontend{}
			}
			return o.emit(cmd.OutOrStdout(), fs, func(w io.Writer) {
				if len(fs) == 0 {
					fmt.Fprintln(w, "no frontends; add one with: conclavectl add frontend KEY --secret S")
				}
				for i, f := range fs {
					if i > 0 {
						fmt.Fprintln(w)
					}
					fmt.Fprintf(w, "%s\n", f.Key)
					fmt.Fprintf(w, "  Secret:      %s\n", f.Secret)
					fmt.Fprintf(w, "  Settings:    %s\n", compact(f.Settings))
					fmt.Fprintf(w, "  Meetings:    %d\n", f.Meetings)
				}
			})
		},
	}
}

func (o *options) deleteFrontend() *cobra.Command {
	return &cobra.Command{
		Use: "frontend KEY", Short: "Delete a frontend and forget its meetings", Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().DeleteFrontend(cmd.Context(), args[0]); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), map[string]bool{"removed": true}, func(w io.Writer) {
				fmt.Fprintf(w, "frontend %s deleted\n", args[0])
			})
		},
	}
}

func (o *options) showMeetings() *cobra.Command {
	var frontend string
	cmd := &cobra.Command{
		Use: "meetings [--frontend KEY]", Short: "List meetings and the backend each runs on", Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := o.client().Meetings(cmd.Context(), frontend)
			if err != nil {
				return err
			}
			if ms == nil {
				ms = []Meeting{}
			}
			return o.emit(cmd.OutOrStdout(), ms, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FRONTEND\tMEETING ID\tBACKEND\tCREATED\tINTERNAL ID")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Frontend, m.MeetingID, m.BackendID, stamp(m.CreatedAt), m.InternalID)
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&frontend, "frontend", "", "only this frontend's meetings")
	return cmd
}

func (o *options) showRecordings() *cobra.Command {
	var frontend string
	cmd := &cobra.Command{
		Use: "recordings [--frontend KEY]", Short: "List the recordings index", Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/api/v1/recordings"
			if frontend != "" {
				path += "?" + url.Values{"frontend": {frontend}}.Encode()
			}
			rs, err := call[[]Recording](cmd.Context(), o.client(), http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), rs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FRONTEND\tMEETING ID\tRECORD ID\tSTATE\tBACKEND\tSTARTED")
				for _, r := range rs {
					be := r.BackendID
					if !r.BackendPresent {
						be += " (removed)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Frontend, r.MeetingID, r.RecordID, r.State, be, time.UnixMilli(r.StartTime).UTC().Format(time.RFC3339))
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&frontend, "frontend", "", "only this frontend's recordings")
	return cmd
}

// stamp formats unix nanoseconds as UTC RFC 3339 ("-" for 0).
func stamp(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (o *options) showPeers() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the Raft peers: ID, addresses, voter, leader, state, last contact, applied index",
		Args:  nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := o.client().Peers(cmd.Context())
			if err != nil {
				return err
			}
			if ps == nil {
				ps = []Peer{}
			}
			return o.emit(cmd.OutOrStdout(), ps, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tHTTP ADDRESS\tVOTER\tLEADER\tSTATE\tLAST CONTACT\tAPPLIED INDEX")
				for _, p := range ps {
					state := dash(p.State)
					if !p.Reachable {
						state = "unreachable"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\t%d\n", p.ID, dash(p.RaftAddr), dash(p.HTTPAddr),
						p.Voter, p.Leader, state, dash(p.LastContact), p.AppliedIndex)
				}
				tw.Flush()
				for _, p := range ps {
					if p.Error != "" {
						fmt.Fprintf(w, "%s: %s\n", p.ID, p.Error)
					}
				}
			})
		},
	}
}

func (o *options) joinPeer() *cobra.Command {
	var httpAddr string
	cmd := &cobra.Command{
		Use:   "peer ID RAFT_ADDR [--http-addr HOST:PORT]",
		Short: "Add a voter (a conclaved started without --bootstrap or --join)",
		Args:  nargs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().JoinPeer(cmd.Context(), args[0], args[1], httpAddr); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), map[string]bool{"ok": true}, func(w io.Writer) {
				fmt.Fprintf(w, "peer %s (%s) added as a voter\n", args[0], args[1])
			})
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "the peer's HTTP address (it also announces it itself)")
	return cmd
}

func (o *options) removePeer() *cobra.Command {
	return &cobra.Command{
		Use: "peer ID", Short: "Remove a peer (a leader hands leadership over first)", Args: nargs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.client().RemovePeer(cmd.Context(), args[0]); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), map[string]bool{"ok": true}, func(w io.Writer) {
				fmt.Fprintf(w, "peer %s removed; wipe its data dir before it joins again\n", args[0])
			})
		},
	}
}

func tokenCommand() *cobra.Command {
	var scope, subject string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token [--scope S] [--ttl D] [--subject NAME]",
		Short: "Print a JWT for the admin API, signed with " + EnvJWTSecret,
		Long: `Print a JWT for the admin API, signed with ` + EnvJWTSecret + ` (HS256).
Scopes: conclave:admin (everything) or conclave:agent (register a backend and
change its own; --subject must be the backend URL's host:port, e.g.
bbb1.example.org:443 for https://bbb1.example.org/bigbluebutton/api/).`,
		Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := os.Getenv(EnvJWTSecret)
			if secret == "" {
				return errors.New(EnvJWTSecret + " is not set: tokens are signed with it")
			}
			switch scope {
			case auth.ScopeAdmin, auth.ScopeAgent:
			default:
				return fmt.Errorf("unknown scope %q (want %s or %s)", scope, auth.ScopeAdmin, auth.ScopeAgent)
			}
			if scope == auth.ScopeAgent {
				if !cmd.Flags().Changed("subject") {
					return errors.New("an agent token must name its node: --subject HOST:PORT (the backend URL's host and port)")
				}
				hp, err := auth.CanonicalHostPort(subject)
				if err != nil {
					return fmt.Errorf("--subject %q: an agent token names its node's host AND port, e.g. bbb1.example.org:443", subject)
				}
				subject = hp
			}
			if ttl < 0 {
				return errors.New("--ttl must not be negative (0: no expiry)")
			}
			t, err := auth.Mint(secret, subject, []string{scope}, ttl)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), t)
			return err
		},
	}
	cmd.Flags().StringVar(&scope, "scope", auth.ScopeAdmin, "conclave:admin or conclave:agent")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime (0: no expiry)")
	cmd.Flags().StringVar(&subject, "subject", "conclavectl", "who the token is for (agents: their node's host:port)")
	return cmd
}
