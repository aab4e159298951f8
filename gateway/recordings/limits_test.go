package recordings

import (
	"fmt"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/fsm"
)

func TestPagingParamsAsBBBWeb(t *testing.T) {
	t.Parallel()
	cases := []struct {
		offset, limit string
		o, l          int
		paged         bool
	}{
		{"", "", 0, 0, false},
		{"3", "", 3, 0, false}, // no valid limit: not paged, as bbb-web
		{"0", "5", 0, 5, true},
		{"-7", "0", 0, 1, true},
		{"2", "1000", 2, 100, true},
		{"99999999999999999999", "5", 0, 5, true}, // not a Java int: 0
		{"9223372036854775800", "5", 0, 5, true},
		{"2147483647", "5", 2147483647, 5, true},
		{"2147483648", "5", 0, 5, true},
		{"x", "5", 0, 5, true},
		{"4", "99999999999999999999", 4, 0, false},
		{"4", "-3", 4, 1, true},
	}
	for _, c := range cases {
		o, l, p := PagingParams([]byte(c.offset), []byte(c.limit))
		if o != c.o || l != c.l || p != c.paged {
			t.Errorf("offset=%q limit=%q: got %d %d %v, want %d %d %v", c.offset, c.limit, o, l, p, c.o, c.l, c.paged)
		}
	}
	recs := []int{0, 1, 2, 3, 4}
	for _, c := range []struct{ o, l, n int }{{0, 5, 5}, {3, 5, 2}, {5, 5, 0}, {2147483647, 100, 0}, {1 << 62, 1 << 62, 0}, {-1, 3, 0}} {
		if got := pageOf(recs, c.o, c.l); len(got) != c.n {
			t.Errorf("pageOf(%d, %d): %v", c.o, c.l, got)
		}
	}
}

func TestCapMetaKeepsRecordingsIndexable(t *testing.T) {
	t.Parallel()
	m := map[string]string{"long": strings.Repeat("v", fsm.MaxSettingsValueLen+1), strings.Repeat("k", fsm.MaxSettingsKeyLen+1): "v"}
	for i := 0; i < fsm.MaxSettingsKeys+20; i++ {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	m = capMeta(m)
	if len(m) != fsm.MaxSettingsKeys || m["long"] != "" || m["k000"] != "v" || m["k119"] != "" {
		t.Fatalf("%d entries", len(m))
	}
	f := fsm.New()
	data := fsm.Encode(&fsm.PutRecordings{Recordings: []fsm.Recording{{RecordID: "r1", Frontend: "fe", BackendID: "b", XML: "<recording/>", Meta: m}}})
	if _, err := f.Check(data); err != nil {
		t.Fatal(err)
	}
	if r := f.Apply(1, data); r.Error != nil {
		t.Fatal(r.Error)
	}
	if _, ok := f.Recording("r1"); !ok {
		t.Fatal("a recording with capped metadata was not stored")
	}
}
