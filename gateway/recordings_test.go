package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/bbb"
	"github.com/conclave-lb/conclave/fsm"
)

var recordIDRe = regexp.MustCompile(`<recordID>([^<]+)</recordID>`)

func recordIDs(raw string) []string {
	var out []string
	for _, m := range recordIDRe.FindAllStringSubmatch(raw, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestRecordingsAreScopedAndPaged(t *testing.T) {
	r := newRig(t, 2)
	fe1, fe2 := r.client("fe1"), r.client("fe2")
	for i := 0; i < 4; i++ {
		for _, c := range []testClient{fe1, fe2} {
			mid := fmt.Sprintf("rec%d", i)
			if a := c.Get(t, "create", "meetingID="+mid+"&record=true&moderatorPW=mp&meta_course=c"+fmt.Sprint(i%2)); a.ReturnCode != "SUCCESS" {
				t.Fatal(a.Raw)
			}
			if a := c.Get(t, "end", "meetingID="+mid+"&password=mp"); a.ReturnCode != "SUCCESS" {
				t.Fatal(a.Raw)
			}
		}
	}
	// No callbacks were asked for: the leader's sync fills the index.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.srv.RunRecordingSync(ctx, 100*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for len(r.mc.FSM().RecordingsOf("", nil)) < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("sync indexed %d of 8 recordings", len(r.mc.FSM().RecordingsOf("", nil)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := fe1.Get(t, "getRecordings", "")
	ids := recordIDs(all.Raw)
	if all.ReturnCode != "SUCCESS" || len(ids) != 4 || strings.Contains(all.Raw, "fe2~") || strings.Contains(all.Raw, "fe1~") {
		t.Fatalf("fe1's recordings: %s", all.Raw)
	}
	if !strings.Contains(all.Raw, "<meetingID>rec0</meetingID>") {
		t.Fatalf("recordings do not show the client's meeting ID: %s", all.Raw)
	}
	// Filters: meetingID list, recordID prefix, meta_*.
	if got := recordIDs(fe1.Get(t, "getRecordings", "meetingID=rec1,rec2").Raw); len(got) != 2 {
		t.Fatalf("meetingID list: %v", got)
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "recordID="+ids[0][:20]).Raw); len(got) < 1 || got[0] != ids[0] {
		t.Fatalf("recordID prefix: %v", got)
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "meta_course=c1").Raw); len(got) != 2 {
		t.Fatalf("meta filter: %v", got)
	}
	// Paging over the merged answer of both backends.
	p1 := fe1.Get(t, "getRecordings", "offset=0&limit=3")
	p2 := fe1.Get(t, "getRecordings", "offset=3&limit=3")
	if len(recordIDs(p1.Raw)) != 3 || len(recordIDs(p2.Raw)) != 1 || !strings.Contains(p1.Raw, "<totalElements>4</totalElements>") ||
		!strings.Contains(p2.Raw, "<last>true</last>") {
		t.Fatalf("paging:\n%s\n%s", p1.Raw, p2.Raw)
	}
	if a := fe2.Get(t, "getRecordings", "recordID="+ids[0]); len(recordIDs(a.Raw)) != 0 || a.MessageKey != bbb.KeyNoRecordings {
		t.Fatalf("fe2 sees fe1's recording by its ID: %s", a.Raw)
	}

	// Another frontend can neither publish, update nor delete it.
	for _, call := range []string{"publishRecordings", "updateRecordings", "deleteRecordings"} {
		q := "recordID=" + ids[0] + "&publish=false&meta_x=y"
		if a := fe2.Get(t, call, q); a.ReturnCode != "FAILED" || a.MessageKey != bbb.KeyNotFound {
			t.Fatalf("fe2 %s of fe1's recording: %s", call, a.Raw)
		}
	}
	if a := fe1.Get(t, "publishRecordings", "recordID="+ids[0]); a.MessageKey != bbb.KeyMissingParamPublish {
		t.Fatalf("publish without publish=: %s", a.Raw)
	}
	// The owner can; the backend agrees afterwards.
	if a := fe1.Get(t, "publishRecordings", "recordID="+ids[0]+"&publish=false"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "state=unpublished").Raw); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("after unpublish: %v", got)
	}
	if a := fe1.Get(t, "updateRecordings", "recordID="+ids[1]+"&meta_course=changed"); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "meta_course=changed").Raw); len(got) != 1 || got[0] != ids[1] {
		t.Fatalf("after update: %v", got)
	}
	if a := fe1.Get(t, "deleteRecordings", "recordID="+ids[2]); a.ReturnCode != "SUCCESS" {
		t.Fatal(a.Raw)
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "").Raw); len(got) != 3 {
		t.Fatalf("after delete: %v", got)
	}

	if got := recordIDs(fe1.Get(t, "getRecordings", "state=any").Raw); len(got) != 4 && len(got) != 3 {
		t.Fatalf("state=any: %v", got)
	}

	// Text tracks: JSON, only for the owner.
	get := func(c testClient, id string) string {
		resp, err := http.Get(c.URL("getRecordingTextTracks", "recordID="+id))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get(fe1, ids[3]); !strings.Contains(body, `"returncode":"SUCCESS"`) {
		t.Fatalf("owner's text tracks: %s", body)
	}
	if body := get(fe2, ids[3]); !strings.Contains(body, `"returncode":"FAILED"`) {
		t.Fatalf("another frontend's text tracks: %s", body)
	}

	// The index outlives its backend: force-removed, the recordings stay
	// listed with their last known playback URLs.
	cancel()
	for _, id := range r.ids {
		r.mc.MustApply(&fsm.RemoveBackend{ID: id, Force: true})
	}
	if got := recordIDs(fe1.Get(t, "getRecordings", "").Raw); len(got) != 3 {
		t.Fatalf("after the backends were removed: %v", got)
	}
}
