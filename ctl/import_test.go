package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/shipping/shippingtest"
)

func publishTree(t *testing.T, root string, units ...string) {
	t.Helper()
	for _, u := range units {
		dir := filepath.Join(root, filepath.FromSlash(u))
		for p, b := range map[string]string{
			"metadata.xml":       "<recording><id>" + filepath.Base(u) + "</id></recording>",
			"video/webcams.webm": strings.Repeat("webm", 40000),
		} {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not a recording: no metadata.xml.
	if err := os.MkdirAll(filepath.Join(root, "presentation", "in-progress"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestImportRecordings(t *testing.T) {
	cleanEnv(t)
	srv := shippingtest.New()
	t.Cleanup(srv.Close)
	srv.Token = "admin-tok"
	root := t.TempDir()
	publishTree(t, root, "presentation/rec-1", "presentation/rec-2", "video/rec-1")

	out, errOut, err := run(t, "--api", srv.URL, "--token", "admin-tok", "import", "recordings", "--from", root, "--backend", "b-1", "--rate", "0", "--chunk", "64k")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, u := range []string{"presentation/rec-1", "presentation/rec-2", "video/rec-1"} {
		f, id, _ := strings.Cut(u, "/")
		if got := srv.Central(f, id); len(got) != 2 {
			t.Fatalf("%s: %d central files", u, len(got))
		}
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) != 3 || lines[0] != "[1/3] presentation/rec-1 156.3 KiB shipped (0 B resumed)" || !strings.HasPrefix(lines[2], "[3/3] video/rec-1 ") {
		t.Fatalf("progress lines:\n%s", errOut)
	}
	if !strings.HasPrefix(out, "3 of 3 recording formats shipped to central storage") {
		t.Fatalf("summary: %q", out)
	}
	if st := srv.Stats(); st.BadAuth != 0 || st.Backends[0] != "b-1" || st.Chunks != 3*(3+1) {
		t.Fatalf("stats %+v", st)
	}

	// Again, as JSON: everything is central already, nothing is sent.
	out, _, err = run(t, "--api", srv.URL, "--token", "admin-tok", "-o", "json", "import", "recordings", "--from", root, "--backend", "b-1", "--chunk", "64k")
	if err != nil {
		t.Fatal(err)
	}
	var sum ImportSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if sum.Units != 3 || sum.Shipped != 3 || sum.Failed != 0 || sum.Sent != 0 || sum.Resumed != sum.Bytes || len(sum.Results) != 3 ||
		sum.Results[0].State != "central" || sum.Results[0].Format != "presentation" {
		t.Fatalf("summary %+v", sum)
	}
}

func TestImportRecordingsFails(t *testing.T) {
	cleanEnv(t)
	srv := shippingtest.New()
	t.Cleanup(srv.Close)
	srv.Unavailable = true
	root := t.TempDir()
	publishTree(t, root, "presentation/rec-1", "presentation/rec-2")

	out, errOut, err := run(t, "--api", srv.URL, "import", "recordings", "--from", root, "--backend", "b-1")
	if err == nil || !strings.Contains(err.Error(), "no central recording store") {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(errOut, "[1/2] presentation/rec-1 FAILED: offer at "+srv.URL) || !strings.Contains(out, "1 failed; 1 not tried") {
		t.Fatalf("stdout %q\nstderr %q", out, errOut)
	}

	for _, args := range [][]string{
		{"import", "recordings", "--backend", "b-1"},
		{"import", "recordings", "--from", root},
		{"import", "recordings", "--from", root, "--backend", "b-1", "--rate", "fast"},
		{"import", "recordings", "--from", root, "--backend", "b-1", "--chunk", "1k"},
		{"import", "recordings", "--from", filepath.Join(root, "nope"), "--backend", "b-1"},
	} {
		if _, _, err := run(t, append([]string{"--api", srv.URL}, args...)...); err == nil {
			t.Fatalf("%v succeeded", args)
		}
	}
}
