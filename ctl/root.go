package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/auth"
)

// options are the global flags.
type options struct {
	api, token, output string
}

// NewRootCommand builds conclavectl.
func NewRootCommand(version string) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "conclavectl",
		Short: "Operate a Conclave cluster: peers, backends, frontends, meetings",
		Long: `conclavectl talks to any Conclave peer's admin API; writes are forwarded to the leader.

Environment: CONCLAVE_API (--api), CONCLAVE_API_TOKEN (--token). With neither token
set but CONCLAVE_API_JWT_SECRET set, an admin token is minted for each call.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("api") {
				if v := os.Getenv("CONCLAVE_API"); v != "" {
					o.api = v
				}
			}
			if !f.Changed("token") {
				o.token = os.Getenv("CONCLAVE_API_TOKEN")
			}
			if o.token == "" {
				if secret := os.Getenv("CONCLAVE_API_JWT_SECRET"); secret != "" {
					t, err := auth.Mint(secret, "conclavectl", []string{auth.ScopeAdmin}, time.Hour)
					if err != nil {
						return err
					}
					o.token = t
				}
			}
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("-o must be text or json, not %q", o.output)
			}
			return nil
		},
	}
	root.SetVersionTemplate("conclavectl {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&o.api, "api", "http://127.0.0.1:42353", "a peer's HTTP address (env CONCLAVE_API)")
	pf.StringVar(&o.token, "token", "", "admin API bearer token (env CONCLAVE_API_TOKEN)")
	pf.StringVarP(&o.output, "output", "o", "text", "output format: text or json")

	add := &cobra.Command{Use: "add", Short: "Add a backend or frontend"}
	set := &cobra.Command{Use: "set", Short: "Change a backend's or frontend's settings (JSON merge; null unsets)"}
	show := &cobra.Command{Use: "show", Short: "Show backends, frontends, meetings or peers"}
	del := &cobra.Command{Use: "delete", Short: "Delete (decommission) a backend, or delete a frontend"}
	enable := &cobra.Command{Use: "enable", Short: "Enable a backend (AdminState ready)"}
	disable := &cobra.Command{Use: "disable", Short: "Disable (cordon) a backend: no new meetings"}
	join := &cobra.Command{Use: "join", Short: "Add a peer to the cluster"}
	remove := &cobra.Command{Use: "remove", Short: "Remove a peer from the cluster"}
	root.AddCommand(add, set, show, del, enable, disable, join, remove, tokenCommand())

	add.AddCommand(o.addBackend(), o.addFrontend())
	set.AddCommand(o.setBackend(), o.setFrontend())
	show.AddCommand(o.showBackends(), o.showBackend(), o.showFrontends(), o.showMeetings(), o.showPeers())
	del.AddCommand(o.deleteBackend(), o.deleteFrontend())
	enable.AddCommand(o.backendState("enable"))
	disable.AddCommand(o.backendState("disable"))
	join.AddCommand(o.joinPeer())
	remove.AddCommand(o.removePeer())
	return root
}

func (o *options) client() *Client { return NewClient(o.api, o.token) }

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// jsonObject validates a -j argument locally, before anything is sent.
func jsonObject(s string) (json.RawMessage, error) {
	if s == "" {
		return json.RawMessage("{}"), nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("-j must be a JSON object: %v", err)
	}
	return json.RawMessage(s), nil
}

// emit prints v as indented JSON (-o json) or calls text.
func (o *options) emit(w io.Writer, v any, text func()) error {
	if o.output == "json" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
		return nil
	}
	text()
	return nil
}

func (o *options) addBackend() *cobra.Command {
	var secret, settings string
	cmd := &cobra.Command{
		Use: "backend URL --secret S [-j JSON]", Short: "Register a BBB server (AdminState init until enabled)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secret == "" {
				return errors.New("--secret is required (the BBB server's securitySalt)")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			c, cancel := ctx()
			defer cancel()
			var b Backend
			body := map[string]any{"url": args[0], "secret": secret, "settings": js}
			if err := o.client().Do(c, "POST", "/api/v1/backends", body, &b); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "backend %s added: %s (AdminState %s; enable it to place meetings)\n", b.ID, b.URL, b.AdminState)
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
		Use: "backend -j JSON URL|ID|HOST", Short: "Merge settings into a backend's (null unsets a key)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if settings == "" {
				return errors.New("-j JSON is required")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			c, cancel := ctx()
			defer cancel()
			var b Backend
			if err := o.client().Do(c, "PATCH", "/api/v1/backends/"+ref(args[0]), js, &b); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "backend %s settings: %s\n", b.ID, compact(b.Settings))
			})
		},
	}
	cmd.Flags().StringVarP(&settings, "json", "j", "", "JSON merge patch of the settings")
	return cmd
}

func (o *options) backendState(action string) *cobra.Command {
	return &cobra.Command{
		Use: "backend URL|ID|HOST", Short: action + " a backend", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			var b Backend
			if err := o.client().Do(c, "POST", "/api/v1/backends/"+ref(args[0])+"/"+action, nil, &b); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "backend %s: AdminState %s\n", b.ID, b.AdminState)
			})
		},
	}
}

func (o *options) deleteBackend() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "backend URL|ID|HOST [--force]", Short: "Decommission a backend (removed when its last meeting ends; --force: now)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			path := "/api/v1/backends/" + ref(args[0])
			if force {
				path += "?force=true"
			}
			var res struct {
				Removed bool    `json:"removed"`
				Backend Backend `json:"backend"`
			}
			if err := o.client().Do(c, "DELETE", path, nil, &res); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), res, func() {
				if res.Removed {
					fmt.Fprintf(cmd.OutOrStdout(), "backend %s removed\n", res.Backend.ID)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "backend %s decommissioned: no new meetings; removed when its %d meeting(s) end\n", res.Backend.ID, res.Backend.BoundMeetings)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove now, forgetting its meetings")
	return cmd
}

// FormatBackend writes one backend in the block format b3scale users know.
func FormatBackend(w io.Writer, b Backend) {
	ratio := 0.0
	if b.Meetings > 0 {
		ratio = float64(b.Attendees) / float64(b.Meetings)
	}
	fmt.Fprintf(w, "%s\n", b.ID)
	fmt.Fprintf(w, "  Host:        %s\n", b.URL)
	fmt.Fprintf(w, "  Settings:    %s\n", compact(b.Settings))
	fmt.Fprintf(w, "  NodeState:   %-8s AdminState:  %s\n", b.NodeState, b.AdminState)
	fmt.Fprintf(w, "  MC/AC/R:     %d/%d/%.2f\n", b.Meetings, b.Attendees, ratio)
	fmt.Fprintf(w, "  LoadFactor:  %v\n", b.LoadFactor)
	fmt.Fprintf(w, "  Latency:     %v\n", time.Duration(b.LatencyNs))
	if b.NodeState == "error" && b.LastError != "" {
		fmt.Fprintf(w, "  LastError:   %s\n", b.LastError)
	}
}

func compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (o *options) showBackends() *cobra.Command {
	return &cobra.Command{
		Use: "backends", Short: "List backends with their states and load", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			var bs []Backend
			if err := o.client().Do(c, "GET", "/api/v1/backends", nil, &bs); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), bs, func() {
				if len(bs) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no backends; add one with: conclavectl add backend URL --secret S")
				}
				for i, b := range bs {
					if i > 0 {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					FormatBackend(cmd.OutOrStdout(), b)
				}
			})
		},
	}
}

func (o *options) showBackend() *cobra.Command {
	return &cobra.Command{
		Use: "backend URL|ID|HOST", Short: "Show one backend", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			var b Backend
			if err := o.client().Do(c, "GET", "/api/v1/backends/"+ref(args[0]), nil, &b); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), b, func() { FormatBackend(cmd.OutOrStdout(), b) })
		},
	}
}

func (o *options) addFrontend() *cobra.Command {
	var secret, settings string
	cmd := &cobra.Command{
		Use: "frontend KEY --secret S [-j JSON]", Short: "Add a frontend (tenant)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secret == "" {
				return errors.New("--secret is required (the secret the LMS will use)")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			c, cancel := ctx()
			defer cancel()
			var f Frontend
			body := map[string]any{"key": args[0], "secret": secret, "settings": js}
			if err := o.client().Do(c, "POST", "/api/v1/frontends", body, &f); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), f, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "frontend %s added: BBB API at /bigbluebutton/api/ (by secret) or /bbb/%s/bigbluebutton/api/\n", f.Key, f.Key)
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
		Use: "frontend -j JSON KEY", Short: "Merge settings into a frontend's (null unsets a key)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if settings == "" {
				return errors.New("-j JSON is required")
			}
			js, err := jsonObject(settings)
			if err != nil {
				return err
			}
			c, cancel := ctx()
			defer cancel()
			var f Frontend
			if err := o.client().Do(c, "PATCH", "/api/v1/frontends/"+ref(args[0]), js, &f); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), f, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "frontend %s settings: %s\n", f.Key, compact(f.Settings))
			})
		},
	}
	cmd.Flags().StringVarP(&settings, "json", "j", "", "JSON merge patch of the settings")
	return cmd
}

func (o *options) showFrontends() *cobra.Command {
	return &cobra.Command{
		Use: "frontends", Short: "List frontends", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			var fs []Frontend
			if err := o.client().Do(c, "GET", "/api/v1/frontends", nil, &fs); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), fs, func() {
				for i, f := range fs {
					if i > 0 {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s\n  Secret:      %s\n  Settings:    %s\n  Meetings:    %d\n", f.Key, f.Secret, compact(f.Settings), f.Meetings)
				}
			})
		},
	}
}

func (o *options) deleteFrontend() *cobra.Command {
	return &cobra.Command{
		Use: "frontend KEY", Short: "Delete a frontend and forget its meetings", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			var res map[string]any
			if err := o.client().Do(c, "DELETE", "/api/v1/frontends/"+ref(args[0]), nil, &res); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), res, func() { fmt.Fprintf(cmd.OutOrStdout(), "frontend %s deleted\n", args[0]) })
		},
	}
}

func (o *options) showMeetings() *cobra.Command {
	var frontend string
	cmd := &cobra.Command{
		Use: "meetings [--frontend KEY]", Short: "List meetings and the backend each runs on", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			path := "/api/v1/meetings"
			if frontend != "" {
				path += "?frontend=" + ref(frontend)
			}
			var ms []Meeting
			if err := o.client().Do(c, "GET", path, nil, &ms); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), ms, func() {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FRONTEND\tMEETING ID\tBACKEND\tCREATED")
				for _, m := range ms {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Frontend, m.MeetingID, m.BackendID, time.Unix(0, m.CreatedAt).UTC().Format(time.RFC3339))
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&frontend, "frontend", "", "only this frontend's meetings")
	return cmd
}

func (o *options) showPeers() *cobra.Command {
	return &cobra.Command{
		Use: "peers", Short: "List the Raft peers: ID, addresses, voter, leader, last contact, applied index", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cancel := ctx()
			defer cancel()
			var ps []Peer
			if err := o.client().Do(c, "GET", "/api/v1/peers", nil, &ps); err != nil {
				return err
			}
			return o.emit(cmd.OutOrStdout(), ps, func() {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tHTTP ADDRESS\tVOTER\tLEADER\tSTATE\tLAST CONTACT\tAPPLIED")
				for _, p := range ps {
					state := p.State
					if !p.Reachable {
						state = "unreachable"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\t%d\n", p.ID, p.RaftAddr, p.HTTPAddr, p.Voter, p.Leader, state, p.LastContact, p.AppliedIndex)
				}
				tw.Flush()
			})
		},
	}
}

func (o *options) joinPeer() *cobra.Command {
	var httpAddr string
	cmd := &cobra.Command{
		Use: "peer ID RAFT_ADDR", Short: "Add a voter (a conclaved started without --bootstrap or --join)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			body := map[string]string{"id": args[0], "raft_addr": args[1]}
			if httpAddr != "" {
				body["http_addr"] = httpAddr
			}
			if err := o.client().Do(c, "POST", "/api/v1/peers", body, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peer %s (%s) added as a voter\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http-addr", "", "the peer's HTTP address (it also announces it itself)")
	return cmd
}

func (o *options) removePeer() *cobra.Command {
	return &cobra.Command{
		Use: "peer ID", Short: "Remove a peer (a leader hands leadership over first)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cancel := ctx()
			defer cancel()
			if err := o.client().Do(c, "DELETE", "/api/v1/peers/"+ref(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peer %s removed; wipe its data dir before it joins again\n", args[0])
			return nil
		},
	}
}

func tokenCommand() *cobra.Command {
	var scope, subject string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use: "token [--scope S] [--ttl D]", Short: "Mint an admin API token from CONCLAVE_API_JWT_SECRET", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := os.Getenv("CONCLAVE_API_JWT_SECRET")
			if secret == "" {
				return errors.New("CONCLAVE_API_JWT_SECRET is not set: tokens are signed with it")
			}
			switch scope {
			case auth.ScopeAdmin, auth.ScopeAgent:
			default:
				return fmt.Errorf("unknown scope %q (want %s or %s)", scope, auth.ScopeAdmin, auth.ScopeAgent)
			}
			if scope == auth.ScopeAgent && subject == "conclavectl" {
				return errors.New("an agent token must name its node: --subject HOST (the backend URL's host)")
			}
			t, err := auth.Mint(secret, subject, []string{scope}, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t)
			return nil
		},
	}
	cmd.Flags().StringVar(&scope, "scope", auth.ScopeAdmin, "conclave:admin or conclave:agent")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime (0: no expiry)")
	cmd.Flags().StringVar(&subject, "subject", "conclavectl", "who the token is for (agents: their node's host)")
	return cmd
}
