package fsm

import (
	"bytes"
	"strings"
	"testing"
)

// The first cluster key committed wins, it survives a snapshot, and a
// key of the wrong size is refused.
func TestClusterKeyFirstWinsAndSnapshots(t *testing.T) {
	t.Parallel()
	f := New()
	if f.ClusterKey() != nil {
		t.Fatal("a new state has a cluster key")
	}
	k1, k2 := bytes.Repeat([]byte{1}, ClusterKeyLen), bytes.Repeat([]byte{2}, ClusterKeyLen)
	if r := f.Apply(1, Encode(&SetClusterKey{Key: []byte("short")})); r.Error == nil || f.ClusterKey() != nil {
		t.Fatalf("short key: %+v", r)
	}
	if r := f.Apply(2, Encode(&SetClusterKey{Key: k1})); r.Error != nil {
		t.Fatal(r.Error)
	}
	if r := f.Apply(3, Encode(&SetClusterKey{Key: k2})); r.Error != nil || !bytes.Equal(f.ClusterKey(), k1) {
		t.Fatalf("second key replaced the first: %+v", r)
	}
	f.ClusterKey()[0] = 9 // a copy
	if !bytes.Equal(f.ClusterKey(), k1) {
		t.Fatal("ClusterKey hands out the stored slice")
	}
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.ClusterKey(), k1) || g.Dump() != f.Dump() {
		t.Fatal("the cluster key did not survive a snapshot")
	}
	// Snapshots from before the key existed restore without one.
	old := `{"version":1,"applied":0,"backends":0,"frontends":0,"meetings":0,"peers":0}` + "\n"
	h := New()
	if err := h.Restore(strings.NewReader(old)); err != nil || h.ClusterKey() != nil {
		t.Fatalf("old snapshot: %v %v", err, h.ClusterKey())
	}
	if c, err := Decode(Encode(&SetClusterKey{Key: k1})); err != nil || !bytes.Equal(c.(*SetClusterKey).Key, k1) {
		t.Fatalf("round trip: %v", err)
	}
}
