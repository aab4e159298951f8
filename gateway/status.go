package gateway

import (
	"bytes"
	"context"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/auth"
	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/raftnode"
)

// The status page: read-only, server-rendered, refreshed by the browser
// every few seconds. It shows IDs, URLs, states and counts — never secrets.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"join": strings.Join,
	"dur":  func(ns int64) string { return time.Duration(ns).Round(time.Microsecond).String() },
	"ago": func(ns int64) string {
		if ns == 0 {
			return "-"
		}
		return time.Since(time.Unix(0, ns)).Round(time.Second).String() + " ago"
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Conclave — {{.Self.ID}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left} th{background:#f0f0f0}
.ready{color:#137333;font-weight:600} .error{color:#b3261e;font-weight:600} .other{color:#8a6d00;font-weight:600}
.muted{color:#777}
</style></head><body>
<h1>Conclave cluster</h1>
<div class="muted">peer <b id="self">{{.Self.ID}}</b> · {{.Self.State}} · leader <b id="leader">{{.Self.LeaderID}}</b> · term {{.Self.Term}} · applied {{.Self.AppliedIndex}} · {{if .Self.Ready}}<span class="ready">ready</span>{{else}}<span class="error">not ready: {{.Self.NotReady}}</span>{{end}} · {{.Now}}</div>

<h2>Peers</h2>
<table id="peers"><tr><th>ID</th><th>Raft address</th><th>HTTP address</th><th>Role</th><th>State</th><th>Last contact</th><th>Applied</th></tr>
{{range .Peers}}<tr class="peer"><td>{{.ID}}</td><td>{{.RaftAddr}}</td><td>{{.HTTPAddr}}</td><td>{{if .Leader}}<b>leader</b>{{else if .Voter}}voter{{else}}non-voter{{end}}</td>
<td>{{if .Reachable}}{{.State}}{{else}}<span class="error">unreachable</span>{{end}}</td><td>{{.LastContact}}</td><td>{{.AppliedIndex}}</td></tr>
{{end}}</table>

<h2>Backends</h2>
<table id="backends"><tr><th>ID</th><th>Host</th><th>NodeState</th><th>AdminState</th><th>Meetings (bound)</th><th>Attendees</th><th>Load factor</th><th>Tags</th><th>Latency</th><th>Since</th></tr>
{{range .Backends}}<tr class="backend"><td>{{.B.ID}}</td><td>{{.B.URL}}</td>
<td class="{{.NodeClass}}">{{.B.NodeState}}</td><td class="{{.AdminClass}}">{{.B.AdminState}}</td>
<td>{{.B.Meetings}} ({{.Bound}})</td><td>{{.B.Attendees}}</td><td>{{.B.LoadFactor}}</td><td>{{join .B.Settings.Tags ", "}}</td><td>{{dur .B.LatencyNs}}</td><td>{{ago .B.StateChangedAt}}</td></tr>
{{else}}<tr><td colspan="10" class="muted">no backends yet: conclavectl add backend URL --secret S</td></tr>{{end}}</table>

<h2>Meetings per frontend</h2>
<table id="frontends"><tr><th>Frontend</th><th>Meetings</th><th>Required tags</th></tr>
{{range .Frontends}}<tr class="frontend"><td>{{.Key}}</td><td>{{.Meetings}}</td><td>{{join .Tags ", "}}</td></tr>
{{else}}<tr><td colspan="3" class="muted">no frontends yet</td></tr>{{end}}</table>
</body></html>`))

type statusBackend struct {
	B                     fsm.Backend
	Bound                 int
	NodeClass, AdminClass string
}

type statusFrontend struct {
	Key      string
	Meetings int
	Tags     []string
}

type statusData struct {
	Refresh   int
	Now       string
	Self      raftnode.Status
	Peers     []raftnode.PeerInfo
	Backends  []statusBackend
	Frontends []statusFrontend
}

func stateClass(s string) string {
	switch s {
	case "ready":
		return "ready"
	case "error":
		return "error"
	}
	return "other"
}

// serveStatus renders the status page. Like the admin API it is open on
// loopback when no JWT secret is set; otherwise it takes an admin token as
// a bearer header or a `token` query parameter (for a browser).
func (s *Server) serveStatus(ctx *fasthttp.RequestCtx) {
	if tok := ctx.QueryArgs().Peek("token"); len(tok) > 0 && len(ctx.Request.Header.Peek("Authorization")) == 0 {
		ctx.Request.Header.Set("Authorization", "Bearer "+string(tok))
	}
	if _, ok := s.authorize(ctx, auth.ScopeAdmin); !ok {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st := s.cluster.FSM()
	d := statusData{Refresh: 5, Now: time.Now().UTC().Format(time.RFC3339), Self: s.cluster.Status()}
	d.Peers, _ = s.cluster.Peers(rctx)
	counts := st.MeetingCounts()
	for _, b := range st.Backends() {
		d.Backends = append(d.Backends, statusBackend{B: b, Bound: counts[b.ID],
			NodeClass: stateClass(string(b.NodeState)), AdminClass: stateClass(string(b.AdminState))})
	}
	perFrontend := map[string]int{}
	for _, m := range st.Meetings("") {
		perFrontend[m.Frontend]++
	}
	for _, f := range st.Frontends() {
		d.Frontends = append(d.Frontends, statusFrontend{Key: f.Key, Meetings: perFrontend[f.Key], Tags: f.Settings.RequiredTags})
	}
	sort.Slice(d.Frontends, func(i, j int) bool { return d.Frontends[i].Key < d.Frontends[j].Key })
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, d); err != nil {
		ctx.Error("status page: "+err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(buf.Bytes())
}
