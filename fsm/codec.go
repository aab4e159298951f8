package fsm

import (
	"encoding/binary"
	"errors"
	"math"
)

// A tiny append-only binary codec: varints and length-prefixed strings.
// Commands are on the hot path (every create is one) and live in the Raft
// log forever, so they are kept compact and decoding never panics.
//
// The append-only rule, which keeps every release able to read every log:
//
//   - A command's encoding never changes: no field is removed, reordered or
//     re-typed, and its type number is never reused (commands.go).
//   - A later release may add a field to a command only at its END. Decoders
//     ignore bytes left over after the fields they know (finish), so an
//     older peer applies such a command as it knew it, and a newer decoder
//     reading an older entry must treat a missing trailing field as its zero
//     value: decode the new field only when bytes are left (d.more()).
//   - Peers older than the release that began ignoring trailing bytes
//     refused them, so a field may be appended only in a release that
//     requires every peer to run at least this one.
//   - A new kind of command gets a new type number; when older peers can
//     ignore it without their state diverging in what they serve, it sets
//     FlagSkippable. Otherwise an older peer stops at it (upgrade it).
//
// testdata/commands holds golden bytes of every command: they must keep
// decoding to the same values (TestGoldenCommands).

var errTruncated = errors.New("fsm: truncated command")

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) f64(f float64)    { e.uvarint(math.Float64bits(f)) }
func (e *encoder) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) strs(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// decoder records the first error and returns zero values after it, so
// decode functions read straight through and check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length or an element count. Every byte string and list
// element takes at least one byte, so a count above the bytes left is a
// truncated (or hostile) command: it fails and yields 0, so a corrupt
// length can never make the decoder allocate.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail(errTruncated)
	}
	if d.err != nil {
		return 0
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }
func (d *decoder) f64() float64 {
	return math.Float64frombits(d.uvarint())
}
func (d *decoder) boolean() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < 1 {
		d.fail(errTruncated)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail(errors.New("fsm: bad bool"))
	}
	return v == 1
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

// more reports whether bytes are left: a field appended by a later
// release is decoded only when present.
func (d *decoder) more() bool { return d.err == nil && len(d.b) > 0 }

// finish returns the first decoding error. Bytes left over are fields a
// later release appended (see the append-only rule above): ignored.
func (d *decoder) finish() error { return d.err }
