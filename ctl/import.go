package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/shipping"
)

// ImportResult is one recording format of `conclavectl import recordings`.
type ImportResult struct {
	Format   string `json:"format"`
	RecordID string `json:"record_id"`
	State    string `json:"state,omitempty"` // central on success
	Bytes    int64  `json:"bytes"`
	Sent     int64  `json:"sent"`
	Resumed  int64  `json:"resumed"`
	Error    string `json:"error,omitempty"`
}

// ImportSummary is the outcome of `conclavectl import recordings` (-o json).
type ImportSummary struct {
	From     string         `json:"from"`
	Backend  string         `json:"backend"`
	Units    int            `json:"units"`
	Shipped  int            `json:"shipped"`
	Failed   int            `json:"failed"`
	Skipped  int            `json:"skipped"` // not tried: the import stopped early
	Bytes    int64          `json:"bytes"`
	Sent     int64          `json:"sent"`
	Resumed  int64          `json:"resumed"`
	Duration string         `json:"duration"`
	Results  []ImportResult `json:"results"`
}

func importCommand(o *options) *cobra.Command {
	imp := group("import", "Ship recordings already on a BBB server to the cluster's central storage")
	imp.AddCommand(o.importRecordings())
	return imp
}

func (o *options) importRecordings() *cobra.Command {
	var from, backend, frontend, rate, chunk string
	cmd := &cobra.Command{
		Use:   "recordings --from DIR --backend URL|ID [--frontend KEY] [--rate 20M]",
		Short: "Ship a published recordings tree (DIR/<format>/<recordID>/) to central storage",
		Long: `Ship every recording format under DIR (a BBB published tree: DIR/<format>/<recordID>/
with a metadata.xml, e.g. /var/bigbluebutton/published) to the cluster's central storage
through the admin API (--api), as the agent does for new recordings. --backend names the
BBB server that made them (its API URL or backend ID). An interrupted import resumes
where it stopped when run again: only the chunks the cluster is missing are sent.

Recordings made through Conclave are in its index already. Recordings made before
(on the BBB server used directly, or behind Scalelite) are not: --frontend KEY makes
their index entries from their metadata.xml, owned by that frontend (admin token).`,
		Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || backend == "" {
				return errors.New("--from DIR and --backend URL|ID are required")
			}
			bps, err := shipping.ParseBytes(rate)
			if err != nil {
				return fmt.Errorf("--rate %w", err)
			}
			cs, err := shipping.ParseBytes(chunk)
			if err != nil {
				return fmt.Errorf("--chunk %w", err)
			}
			if cs < adminapi.TransferMinChunk || cs > adminapi.TransferMaxChunk {
				return fmt.Errorf("--chunk %s: want 64k to 16M", chunk)
			}
			units, err := shipping.Scan(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.runImport(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), from, importJob{Backend: backend, Frontend: frontend, Rate: bps, ChunkSize: cs}, units)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the published recordings directory, e.g. "+shipping.DefaultPublishedDir)
	f.StringVar(&backend, "backend", "", "the BBB server the recordings come from: its API URL or backend ID")
	f.StringVar(&frontend, "frontend", "", "recordings made before Conclave: the frontend whose index entries they become (made from their metadata.xml)")
	f.StringVar(&rate, "rate", "20M", "bandwidth, bytes per second (suffixes k, M, G: binary; 0: unlimited)")
	f.StringVar(&chunk, "chunk", "4M", "chunk size, 64k to 16M (an interrupted import resumes only with the same size, as the agent's --transfer-chunk)")
	return cmd
}

// importJob is what an import ships as: the offers' backend and frontend,
// the bandwidth and the chunk size.
type importJob struct {
	Backend, Frontend string
	Rate, ChunkSize   int64
}

// runImport ships units as job says, through the CLI's API.
func (o *options) runImport(ctx context.Context, stdout, stderr io.Writer, from string, job importJob, units []shipping.Unit) error {
	c := o.client()
	hc := &http.Client{} // each transfer request has its own deadline
	if c.HTTP != nil {
		hc.Transport = c.HTTP.Transport
	}
	sh := &shipping.Shipper{
		Peers: func() []string { return []string{c.API} }, Token: c.Token, Backend: job.Backend, Frontend: job.Frontend,
		Client: hc, Rate: job.Rate, ChunkSize: job.ChunkSize, Progress: &shipping.Progress{},
	}
	sum := ImportSummary{From: from, Backend: job.Backend, Units: len(units), Results: []ImportResult{}}
	bar := newProgressBar(stderr)
	start := time.Now()
	var stopErr error
	for i, u := range units {
		if ctx.Err() != nil || stopErr != nil {
			sum.Skipped = len(units) - i
			break
		}
		label := fmt.Sprintf("[%d/%d] %s", i+1, len(units), u)
		before := sh.Progress.Snapshot()
		stopBar := bar.track(label, func() shipping.Snapshot { return sh.Progress.Snapshot().Sub(before) })
		st, err := sh.Ship(ctx, u)
		stopBar()
		d := sh.Progress.Snapshot().Sub(before)
		r := ImportResult{Format: u.Format, RecordID: u.RecordID, State: st.State, Bytes: d.Offered, Sent: d.Sent, Resumed: d.Resumed}
		sum.Bytes, sum.Sent, sum.Resumed = sum.Bytes+d.Offered, sum.Sent+d.Sent, sum.Resumed+d.Resumed
		if err != nil {
			r.State, r.Error = "", err.Error()
			sum.Failed++
			bar.line(fmt.Sprintf("%s FAILED: %v", label, err), true)
			switch status := shipping.ErrorStatus(err); {
			case ctx.Err() != nil:
				stopErr = errors.New("interrupted: run the same command again to resume")
			case shipping.NoCentralStore(err):
				stopErr = fmt.Errorf("the cluster has no central recording store: %w", err)
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				stopErr = fmt.Errorf("the admin API refused the token (conclavectl needs an admin token): %w", err)
			case shipping.Unreachable(err):
				stopErr = fmt.Errorf("the admin API at %s does not answer: %w", c.API, err)
			}
		} else {
			sum.Shipped++
			bar.line(fmt.Sprintf("%s %s shipped (%s resumed)", label, shipping.FormatBytes(d.Offered), shipping.FormatBytes(d.Resumed)), false)
		}
		sum.Results = append(sum.Results, r)
	}
	bar.clear()
	sum.Duration = time.Since(start).Round(time.Millisecond).String()
	err := o.emit(stdout, sum, func(w io.Writer) {
		if len(units) == 0 {
			fmt.Fprintf(w, "no recordings under %s (want %s/<format>/<recordID>/metadata.xml)\n", from, from)
			return
		}
		fmt.Fprintf(w, "%d of %d recording formats shipped to central storage in %s: %s, %s sent, %s resumed",
			sum.Shipped, sum.Units, sum.Duration, shipping.FormatBytes(sum.Bytes), shipping.FormatBytes(sum.Sent), shipping.FormatBytes(sum.Resumed))
		if sum.Failed > 0 {
			fmt.Fprintf(w, "; %d failed", sum.Failed)
		}
		if sum.Skipped > 0 {
			fmt.Fprintf(w, "; %d not tried", sum.Skipped)
		}
		fmt.Fprintln(w)
	})
	if err != nil {
		return err
	}
	if stopErr != nil {
		return stopErr
	}
	if sum.Failed > 0 {
		return fmt.Errorf("%d of %d recording formats failed (run again to retry; what was sent is kept)", sum.Failed, sum.Units)
	}
	return nil
}

// progressBar draws on stderr: on a terminal, one line redrawn while the
// units ship (failures stay on their own lines); elsewhere, a line per unit.
type progressBar struct {
	w   io.Writer
	tty bool
	mu  sync.Mutex
}

func newProgressBar(w io.Writer) *progressBar {
	p := &progressBar{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// track redraws label with snap's counters until the returned stop is called.
func (p *progressBar) track(label string, snap func() shipping.Snapshot) (stop func()) {
	if !p.tty {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			s := snap()
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r\033[K%s %s / %s", label, shipping.FormatBytes(s.Sent+s.Resumed), shipping.FormatBytes(s.Offered))
			if s.Resumed > 0 {
				fmt.Fprintf(p.w, " (%s resumed)", shipping.FormatBytes(s.Resumed))
			}
			p.mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// line reports a finished unit: always on a line of its own when keep
// (a failure), else only when stderr is not a terminal.
func (p *progressBar) line(s string, keep bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tty && keep:
		fmt.Fprintf(p.w, "\r\033[K%s\n", strings.TrimRight(s, "\n"))
	case !p.tty:
		fmt.Fprintln(p.w, s)
	}
}

// clear removes the redrawn line.
func (p *progressBar) clear() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
