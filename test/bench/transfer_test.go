//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/adminapi"
	"github.com/conclave-lb/conclave/test/harness"
)

// TestTransferThroughput measures central recordings end to end on one
// machine: `conclavectl import recordings` ships a published recording
// (one media file of BENCH_TRANSFER_MB, default 128 MiB) through a peer
// into a shared directory and into versitygw (S3), unthrottled; then one
// client reads it back through another peer. Three recordings per store.
// Everything (peers, store, client) shares the machine's two cores and one
// disk, so these are floors for a LAN with a real NFS or S3.
func TestTransferThroughput(t *testing.T) {
	mb := 128
	if v, err := fmt.Sscan(os.Getenv("BENCH_TRANSFER_MB"), &mb); v != 1 || err != nil {
		mb = 128
	}
	size := mb << 20
	var table strings.Builder
	table.WriteString("\n### Central recordings: transfer throughput\n\n| store | recording | import (ctl → peer → store) | playback (GET through another peer) |\n| --- | --- | --- | --- |\n")
	for _, kind := range []string{"file", "s3"} {
		var env []string
		switch kind {
		case "file":
			env = []string{"CONCLAVE_RECORDINGS_STORE=file://" + t.TempDir()}
		case "s3":
			s := harness.StartS3(t)
			env = append(s.Env(), "CONCLAVE_RECORDINGS_STORE="+s.URL("bench"))
		}
		c := harness.StartCluster(t, 3, env...)
		published := filepath.Join(t.TempDir(), "published")
		api := startProcess(t, exec.Command(c.Bins.Fakebbb, "--listen", "127.0.0.1:0", "--secret", "bench-node-secret",
			"--published-dir", published, "--recording-bytes", fmt.Sprint(size)), fakebbbAPI)
		u, _ := url.Parse(api)
		register(t, c, []node{{api: api, secret: "bench-node-secret", host: u.Host}})
		if err := c.API(c.Peers[0], "POST", "/api/v1/frontends", adminapi.AddFrontendRequest{Key: "fe", Secret: "fe-secret"}, nil); err != nil {
			t.Fatal(err)
		}
		client := harness.BBBClient{Base: "http://" + c.Peers[1].HTTP + "/bigbluebutton/api", Secret: "fe-secret"}
		for run := 0; run < 3; run++ {
			id := fmt.Sprintf("lecture-%s-%d", kind, run)
			client.Get(t, "create", "meetingID="+id+"&record=true&moderatorPW=mp")
			client.Get(t, "end", "meetingID="+id+"&password=mp")
			var rid string
			harness.Eventually(t, 60*time.Second, func() error {
				m := regexp.MustCompile(`<recordID>([^<]+)</recordID>`).FindStringSubmatch(client.Get(t, "getRecordings", "meetingID="+id).Raw)
				if m == nil {
					return fmt.Errorf("recording of %s not indexed", id)
				}
				rid = m[1]
				return nil
			})
			// Ship only this recording: a tree of its own, the files hard-linked.
			from := t.TempDir()
			dst := filepath.Join(from, "video", rid)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(filepath.Join(published, "video", rid))
			for _, e := range ents {
				if err := os.Link(filepath.Join(published, "video", rid, e.Name()), filepath.Join(dst, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
			out, err := c.Ctl(c.Peers[0], "import", "recordings", "--from", from, "--backend", u.Host, "--rate", "0", "-o", "json")
			if err != nil {
				t.Fatalf("import: %v\n%s", err, out)
			}
			var sum struct {
				Bytes    int64  `json:"bytes"`
				Shipped  int    `json:"shipped"`
				Duration string `json:"duration"`
			}
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &sum); err != nil || sum.Shipped != 1 {
				t.Fatalf("import summary: %v\n%s", err, out)
			}
			d, _ := time.ParseDuration(sum.Duration)
			// Play it back through another peer, whole.
			pu := "http://" + c.Peers[2].HTTP + "/playback/video/" + rid + "/video-0.m4v"
			start := time.Now()
			resp, err := http.Get(pu)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			pd := time.Since(start)
			if resp.StatusCode != 200 || n != int64(size) {
				t.Fatalf("playback: %d, %d bytes", resp.StatusCode, n)
			}
			line := fmt.Sprintf("| %s | %d MiB | %.0f MiB/s (%v) | %.0f MiB/s (%v) |\n", kind, mb,
				float64(sum.Bytes)/(1<<20)/d.Seconds(), d.Round(time.Millisecond), float64(n)/(1<<20)/pd.Seconds(), pd.Round(time.Millisecond))
			t.Log(strings.TrimSpace(line))
			table.WriteString(line)
		}
		c.StopAll()
	}
	appendBenchOut(t, table.String())
}
