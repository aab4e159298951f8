package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium runs headless Chromium (Debian's package; .ci/run installs it).
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("headless Chromium is required for the status page test: apt-get install chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--hide-scrollbars"}
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// TestStatusPageInChromium loads a peer's status page in a real browser
// and finds the peers and backends on it.
func TestStatusPageInChromium(t *testing.T) {
	c := startBBBCluster(t, 2)
	page := "http://" + c.Peers[1].HTTP + "/"
	dom := chromium(t, "--dump-dom", page)
	for _, want := range append([]string{"Conclave cluster", "p1", "p2", "p3", "leader", "moodle"}, c.hosts...) {
		if !strings.Contains(dom, want) {
			t.Fatalf("status page lacks %q:\n%s", want, dom)
		}
	}
	if strings.Count(dom, `class="peer"`) != 3 || strings.Count(dom, `class="backend"`) != 2 {
		t.Fatalf("want 3 peer rows and 2 backend rows:\n%s", dom)
	}
	for _, secret := range append([]string{frontendSecret}, c.secrets...) {
		if strings.Contains(dom, secret) {
			t.Fatal("a secret is shown on the status page")
		}
	}
	// CONCLAVE_SCREENSHOT=docs/status.png refreshes the README's picture.
	if shot := os.Getenv("CONCLAVE_SCREENSHOT"); shot != "" {
		abs, _ := filepath.Abs(shot)
		chromium(t, "--screenshot="+abs, "--window-size=1280,760", page)
		if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
			t.Fatalf("no screenshot written: %v", err)
		}
	}
}
