package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc64"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/conclave-lb/conclave/fsm"
	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/raftnode/peercall"
	"github.com/conclave-lb/conclave/test/harness"
)

// Rolling upgrades: what a peer does with a log written by another release.

var updateUpgradeData = flag.Bool("update-upgrade-data", false,
	"write testdata/upgrade/v1 anew with the current code (never in CI: the kept directory is the test)")

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func openUpgradeNode(t *testing.T, id, dir string, bootstrap bool, cfg func(*Config)) *Node {
	t.Helper()
	c := Config{ID: id, DataDir: dir, RaftBind: harness.FreeAddr(t), HTTPAdvertise: "127.0.0.1:1",
		Bootstrap: bootstrap, Logger: quietLog,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond}
	if cfg != nil {
		cfg(&c)
	}
	n, err := Open(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

func mustCommit(t *testing.T, n *Node, c fsm.Command) (*fsm.Result, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, idx, err := n.applyLocal(ctx, fsm.Encode(c))
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	if res.Error != nil {
		t.Fatalf("%T: %v", c, res.Error)
	}
	return res, idx
}

// TestLeaderRefusesBadCommandsBeforeTheLog: forwarded bytes that do not
// decode, have an unknown type or fail a check that does not depend on the
// state get a clear error and never reach the log.
func TestLeaderRefusesBadCommandsBeforeTheLog(t *testing.T) {
	n := openUpgradeNode(t, "p1", t.TempDir(), true, nil)
	testwait.EventuallyTrue(t, 10*time.Second, "p1 leads", n.IsLeader)
	mustCommit(t, n, &fsm.AddFrontend{Key: "fe", Secret: "s"})
	last := n.raft.LastIndex()
	big := strings.Repeat("x", fsm.MaxSettingsJSON+1)
	for name, data := range map[string][]byte{
		"garbage":            {0xff},
		"unknown type":       {0x55, 1, 2},
		"unknown, skippable": {byte(fsm.FlagSkippable | 0x55), 1, 2},
		"truncated":          fsm.Encode(&fsm.AddFrontend{Key: "fe2", Secret: "s"})[:4],
		"bad URL":            fsm.Encode(&fsm.AddBackend{ID: "b", URL: "ftp://x", Secret: "s"}),
		"settings limit":     fsm.Encode(&fsm.SetFrontendSettings{Key: "fe", Patch: []byte(`{"create_default_params":{"w":"` + big + `"}}`)}),
	} {
		status, body := n.ServeInternal(context.Background(), "apply", data)
		var ar peercall.ApplyResponse
		if err := json.Unmarshal(body, &ar); err != nil || status != http.StatusOK {
			t.Fatalf("%s: %d %s", name, status, body)
		}
		if ar.Result.Error == nil || ar.Result.Error.Code != fsm.CodeInvalid || ar.Index != 0 {
			t.Errorf("%s: %s", name, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if res, err := n.Apply(ctx, &fsm.ClaimMeeting{Frontend: "fe", MeetingID: "m", BackendID: "b"}); err != nil || res.Error == nil {
		t.Fatalf("a claim without internal ID: %v %+v", err, res)
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("refused commands reached the log: last index %d, was %d", got, last)
	}
	// A field appended by a later release passes (and is ignored).
	data := append(fsm.Encode(&fsm.AddFrontend{Key: "fe2", Secret: "s"}), 7, 7)
	if status, body := n.ServeInternal(context.Background(), "apply", data); status != http.StatusOK || strings.Contains(string(body), "error") {
		t.Fatalf("an appended field: %d %s", status, body)
	}
}

// TestMixedVersionCluster: three peers, one built as the previous release
// (it does not know ReportStreams, skippable, nor SetBackendAdminState, not
// skippable, standing for a new command of each kind). The skippable one is
// skipped and counted there, with no divergence in what both releases know;
// the other stops that peer with a message naming the type, the index and
// the fix, while the two others commit on. Upgraded, the stopped peer
// replays the entry and reaches the same state.
func TestMixedVersionCluster(t *testing.T) {
	halted := make(chan error, 4)
	oldDir := t.TempDir()
	oldOpts := func(c *Config) {
		c.FSMOptions = []fsm.Option{fsm.WithoutCommands(fsm.CmdReportStreams, fsm.CmdSetBackendAdminState)}
		c.OnHalt = func(err error) { halted <- err }
	}
	p1 := openUpgradeNode(t, "p1", t.TempDir(), true, nil)
	testwait.EventuallyTrue(t, 10*time.Second, "p1 leads", p1.IsLeader)
	p2 := openUpgradeNode(t, "p2", t.TempDir(), false, nil)
	p3 := openUpgradeNode(t, "p3", oldDir, false, oldOpts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []*Node{p2, p3} {
		if err := p1.Join(ctx, JoinRequest{ID: n.cfg.ID, RaftAddr: n.cfg.RaftAdvertise}); err != nil {
			t.Fatal(err)
		}
	}
	caughtUp := func(idx uint64, nodes ...*Node) {
		t.Helper()
		for _, n := range nodes {
			testwait.EventuallyTrue(t, 10*time.Second, fmt.Sprintf("%s applies %d", n.cfg.ID, idx), func() bool { return n.fsm.AppliedIndex() >= idx })
		}
	}
	mustCommit(t, p1, &fsm.AddBackend{ID: "b1", URL: "https://b1.example", Secret: "s"})
	_, idx := mustCommit(t, p1, &fsm.AddFrontend{Key: "fe", Secret: "s"})
	caughtUp(idx, p2, p3)

	// (b) a skippable command p3 does not know: skipped and counted.
	mustCommit(t, p1, &fsm.ReportStreams{Reports: []fsm.StreamReport{{ID: "b1", Videos: 5, Voice: 2}}})
	_, idx = mustCommit(t, p1, &fsm.AddFrontend{Key: "fe2", Secret: "s"})
	caughtUp(idx, p2, p3)
	if got := p3.SkippedCommands()[fmt.Sprint(int(fsm.CmdReportStreams))]; got != 1 {
		t.Fatalf("p3 counted %d skips of ReportStreams: %v", got, p3.SkippedCommands())
	}
	if len(p1.SkippedCommands()) != 0 {
		t.Fatalf("p1 skipped %v", p1.SkippedCommands())
	}
	if b, _ := p2.fsm.Backend("b1"); b.Videos != 5 {
		t.Fatalf("p2 did not apply ReportStreams: %+v", b)
	}
	known := func(n *Node) string { // what both releases know
		bs := n.fsm.Backends()
		for i := range bs {
			bs[i].Videos, bs[i].Voice = 0, 0
		}
		j, _ := json.Marshal([]any{bs, n.fsm.Frontends(), n.fsm.Meetings(""), n.fsm.AppliedIndex()})
		return string(j)
	}
	if known(p1) != known(p3) || known(p1) != known(p2) {
		t.Fatalf("states diverge:\np1 %s\np3 %s", known(p1), known(p3))
	}

	// (a) a command p3 does not know and may not skip: p3 stops.
	_, stopAt := mustCommit(t, p1, &fsm.SetBackendAdminState{ID: "b1", State: fsm.AdminReady, Now: 1})
	var err error
	select {
	case err = <-halted:
	case <-time.After(10 * time.Second):
		t.Fatal("the old peer did not halt")
	}
	for _, want := range []string{fmt.Sprintf("log entry %d", stopAt), "type 3 (0x03)", "upgrade this peer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("halt message %q lacks %q", err, want)
		}
	}
	if p3.HaltError() == nil {
		t.Fatal("HaltError is nil")
	}
	select {
	case <-p3.Halted():
	default:
		t.Fatal("Halted not closed")
	}
	testwait.EventuallyTrue(t, 10*time.Second, "p3 shuts down", func() bool { return p3.raft.State() == raft.Shutdown })
	if got := p3.fsm.AppliedIndex(); got >= stopAt {
		t.Fatalf("p3 applied index %d, at or past the entry it could not apply (%d)", got, stopAt)
	}
	// The two others go on.
	_, idx = mustCommit(t, p1, &fsm.AddFrontend{Key: "fe3", Secret: "s"})
	caughtUp(idx, p2)
	if b, _ := p2.fsm.Backend("b1"); b.AdminState != fsm.AdminReady {
		t.Fatalf("p2: %+v", b)
	}

	// Upgraded (this release's FSM on the same data dir), p3 replays the
	// entry: no snapshot was taken past it.
	p3.Shutdown()
	p3new := openUpgradeNode(t, "p3", oldDir, false, func(c *Config) { c.RaftBind = p3.cfg.RaftBind })
	caughtUp(idx, p3new)
	testwait.EventuallyTrue(t, 10*time.Second, "p3 upgraded has p1's state", func() bool {
		return p3new.fsm.AppliedIndex() == p1.fsm.AppliedIndex() && stripPeers(p3new.fsm.Dump()) == stripPeers(p1.fsm.Dump())
	})
}

// stripPeers drops the peer records (each node's own addresses) from a dump.
func stripPeers(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, `"raft_addr"`) || strings.HasPrefix(l, `{"version"`) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// upgradeDir is a data directory written by this release (v1): every later
// release must open it and serve the same state.
const upgradeDir = "testdata/upgrade/v1"

// upgradeCommands fill the kept data directory; a snapshot is taken after
// the first ones, so opening it restores a snapshot and replays a log.
func upgradeCommands() (beforeSnapshot, afterSnapshot []fsm.Command) {
	key := []byte("0123456789abcdef0123456789abcdef")
	lf := `{"tags":["big"],"load_factor":2}`
	beforeSnapshot = []fsm.Command{
		&fsm.SetClusterKey{Key: key},
		&fsm.AddBackend{ID: "bbb1", URL: "https://bbb1.example.org/bigbluebutton/api/", Secret: "secret1", Settings: []byte(lf), Now: 1e18},
		&fsm.AddBackend{ID: "bbb2", URL: "https://bbb2.example.org", Secret: "secret2", Now: 1e18 + 1},
		&fsm.SetBackendAdminState{ID: "bbb1", State: fsm.AdminReady, Now: 1e18 + 2},
		&fsm.SetBackendAdminState{ID: "bbb2", State: fsm.AdminReady, Now: 1e18 + 3},
		&fsm.ReportBackends{Now: 1e18 + 4, Reports: []fsm.BackendReport{
			{ID: "bbb1", NodeState: fsm.NodeReady, Meetings: 2, Attendees: 10, LatencyNs: 1e6},
			{ID: "bbb2", NodeState: fsm.NodeReady, Meetings: 1, Attendees: 3, LatencyNs: 2e6}}},
		&fsm.ReportStreams{Reports: []fsm.StreamReport{{ID: "bbb1", Videos: 4, Voice: 2}}},
		&fsm.AddFrontend{Key: "moodle", Secret: "moodle-secret", Now: 1e18 + 5,
			Settings: []byte(`{"required_tags":["big"],"create_default_params":{"record":"true"},"default_presentation":{"url":"https://x.example/p.pdf"}}`)},
		&fsm.AddFrontend{Key: "greenlight", Secret: "gl-secret", Now: 1e18 + 6},
		&fsm.ClaimMeeting{InternalID: "moodle~m1", Frontend: "moodle", MeetingID: "m1", BackendID: "bbb1", Now: 1e18 + 7},
		&fsm.SetMeetingParams{InternalID: "moodle~m1", BackendID: "bbb1", Params: fsm.CreateParams{
			Query: "meetingID=moodle~m1&name=One&record=true", Slides: "<modules/>", SlidesType: "application/xml",
			AttendeePW: "ap", ModeratorPW: "mp", CreateTime: 1700000000000}},
	}
	afterSnapshot = []fsm.Command{
		&fsm.ClaimMeeting{InternalID: "moodle~m2", Frontend: "moodle", MeetingID: "m2", BackendID: "bbb1", Now: 1e18 + 8},
		&fsm.ClaimMeeting{InternalID: "greenlight~g1", Frontend: "greenlight", MeetingID: "g1", BackendID: "bbb2", Now: 1e18 + 9},
		&fsm.SetMeetingParams{InternalID: "greenlight~g1", BackendID: "bbb2", Params: fsm.CreateParams{
			Query: "meetingID=greenlight~g1&name=G", ClientBridge: true, SlidesLost: true, AttendeePW: "a", ModeratorPW: "m", CreateTime: 1700000000001}},
		&fsm.SetMeetingParams{InternalID: "moodle~m2", BackendID: "bbb1", Params: fsm.CreateParams{Query: "meetingID=moodle~m2", CreateTime: 1700000000002}},
		&fsm.MarkMeetingsLost{Meetings: []fsm.MeetingRef{{InternalID: "moodle~m2", BackendID: "bbb1"}}, Now: 1e18 + 10},
		&fsm.FailoverMeeting{InternalID: "moodle~m2", FromBackend: "bbb1", ToBackend: "bbb2", Token: "tok", Now: 1e18 + 11},
		&fsm.MeetingRecreated{InternalID: "moodle~m2", BackendID: "bbb2", Token: "tok", Now: 1e18 + 12},
		&fsm.PutRecordings{Recordings: []fsm.Recording{
			{RecordID: "rec1", Frontend: "moodle", MeetingID: "m1", InternalID: "moodle~m1", BackendID: "bbb1", State: "published",
				StartTime: 1700000000000, Meta: map[string]string{"course": "42"}, XML: "<recording><recordID>rec1</recordID></recording>"},
			{RecordID: "rec2", Frontend: "greenlight", MeetingID: "g1", InternalID: "greenlight~g1", BackendID: "bbb2", State: "unpublished",
				StartTime: 1700000000001, XML: "<recording><recordID>rec2</recordID></recording>"}}},
		&fsm.SetFrontendSettings{Key: "greenlight", Patch: []byte(`{"create_override_params":{"muteOnStart":"true"}}`)},
		&fsm.SetBackendSettings{ID: "bbb2", Patch: []byte(`{"load_factor":0.5}`)},
		&fsm.ClaimMeeting{InternalID: "moodle~gone", Frontend: "moodle", MeetingID: "gone", BackendID: "bbb1", Now: 1e18 + 13},
		&fsm.ReleaseMeetings{Meetings: []fsm.MeetingRef{{InternalID: "moodle~gone", BackendID: "bbb1"}}},
	}
	return beforeSnapshot, afterSnapshot
}

// servedState is what a peer serves from its replica, as JSON: compared
// with the expectation kept beside the data directory.
type servedState struct {
	Backends   []fsm.Backend   `json:"backends"`
	Frontends  []fsm.Frontend  `json:"frontends"`
	Meetings   []fsm.Meeting   `json:"meetings"`
	Recordings []fsm.Recording `json:"recordings"`
	ClusterKey []byte          `json:"cluster_key"`
}

func served(f *fsm.FSM) servedState {
	return servedState{Backends: f.Backends(), Frontends: f.Frontends(), Meetings: f.Meetings(""),
		Recordings: f.RecordingsOf("", nil), ClusterKey: f.ClusterKey()}
}

// TestGenerateUpgradeData writes testdata/upgrade/v1 with -update-upgrade-data.
func TestGenerateUpgradeData(t *testing.T) {
	if !*updateUpgradeData {
		t.Skip("writes testdata/upgrade/v1 with -update-upgrade-data")
	}
	if err := os.RemoveAll(upgradeDir); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(upgradeDir, "data")
	n := openUpgradeNode(t, "p1", data, true, func(c *Config) { c.HTTPAdvertise = "127.0.0.1:42353" })
	testwait.EventuallyTrue(t, 10*time.Second, "p1 leads", n.IsLeader)
	before, after := upgradeCommands()
	for _, c := range before {
		mustCommit(t, n, c)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for _, c := range after {
		mustCommit(t, n, c)
	}
	want, err := json.MarshalIndent(served(n.fsm), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upgradeDir, "expected.json"), append(want, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromV1: a copy of the data directory v1 wrote opens with this
// release (no bootstrap: it has state), leads, and serves the same
// backends, frontends, meetings, recordings and cluster key.
func TestUpgradeFromV1(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(upgradeDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(upgradeDir, "data"))); err != nil {
		t.Fatal(err)
	}
	n := openUpgradeNode(t, "p1", dir, false, nil)
	testwait.EventuallyTrue(t, 15*time.Second, "the upgraded peer leads", n.IsLeader)
	got, err := json.MarshalIndent(served(n.fsm), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		t.Fatalf("the v1 data directory serves another state:\n%s\nwant\n%s", got, want)
	}
	if h := n.HaltError(); h != nil {
		t.Fatal(h)
	}
	// It takes writes as before.
	mustCommit(t, n, &fsm.AddFrontend{Key: "after-upgrade", Secret: "s"})
}

// TestSnapshotOfANewerReleaseIsRefused: a data directory whose snapshot has
// a format version newer than this release reads does not open, and says
// why and what to do.
func TestSnapshotOfANewerReleaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(upgradeDir, "data"))); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots: %v", snaps)
	}
	state, err := os.ReadFile(filepath.Join(snaps[0], "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	state = bytes.Replace(state, []byte(`{"version":1,`), []byte(`{"version":9,`), 1)
	var meta map[string]any
	metaJSON, _ := os.ReadFile(filepath.Join(snaps[0], "meta.json"))
	if err := json.Unmarshal(metaJSON, &meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(state)
	meta["CRC"] = h.Sum(nil)
	metaJSON, _ = json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(snaps[0], "state.bin"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snaps[0], "meta.json"), metaJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := Open(Config{ID: "p1", DataDir: dir, RaftBind: harness.FreeAddr(t), HTTPAdvertise: "127.0.0.1:1", Logger: quietLog})
	if err == nil {
		n.Shutdown()
		t.Fatal("opened a snapshot of a newer release")
	}
	for _, want := range []string{"written by a newer release", "upgrade this peer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: lacks %q", err, want)
		}
	}
}

// TestSkipsAreCountedAndLogsRateLimited: every skip counts; the log says it
// once a minute per type.
func TestSkipsAreCountedAndLogsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	n := &Node{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for i := uint64(1); i <= 5; i++ {
		n.skip(fsm.CmdReportStreams, i)
	}
	n.skip(fsm.FlagSkippable|99, 6)
	if got := n.SkippedCommands(); got["158"] != 5 || got["227"] != 1 || len(got) != 2 {
		t.Fatalf("counts %v", got)
	}
	if lines := strings.Count(buf.String(), "skipped a command"); lines != 2 {
		t.Fatalf("%d log lines, want one per type:\n%s", lines, buf.String())
	}
}
