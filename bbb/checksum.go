// Package bbb holds the parts of the BigBlueButton API protocol that every
// Conclave component shares: checksums over the raw query, request signing,
// the normal form of an API URL and BBB's XML response envelope. It has no
// dependencies inside Conclave.
package bbb

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"net/url"
	"strings"
	"sync"
)

// Algorithm names a checksum hash accepted by BBB.
type Algorithm string

const (
	SHA1   Algorithm = "sha1"
	SHA256 Algorithm = "sha256"
	SHA384 Algorithm = "sha384"
	SHA512 Algorithm = "sha512"
)

// newHash returns the hash for an algorithm, or nil if unknown.
func newHash(a Algorithm) hash.Hash {
	switch a {
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA384:
		return sha512.New384()
	case SHA512:
		return sha512.New()
	}
	return nil
}

// AlgorithmForLength picks the algorithm from a hex checksum's length, as
// bbb-web does; ok is false for any other length.
func AlgorithmForLength(n int) (Algorithm, bool) {
	switch n {
	case 40:
		return SHA1, true
	case 64:
		return SHA256, true
	case 96:
		return SHA384, true
	case 128:
		return SHA512, true
	}
	return "", false
}

// Checksum is lowercase hex of H(call + query + secret); an unknown
// algorithm counts as sha256.
func Checksum(a Algorithm, call, query, secret string) string {
	if hashPools[a] == nil {
		a = SHA256
	}
	d := digest(a, call, query, secret)
	return hex.EncodeToString(d.bytes())
}

// SplitChecksum cuts the checksum parameter out of a raw query string as
// text, leaving every other byte as the client sent it. found is false when
// there is no checksum parameter.
func SplitChecksum(rawQuery string) (rest, checksum string, found bool) {
	// The first parameter named checksum is the one; find where it starts.
	at := -1
	for off := 0; off < len(rawQuery); {
		k := strings.Index(rawQuery[off:], "checksum=")
		if k < 0 {
			break
		}
		k += off
		if k == 0 || rawQuery[k-1] == '&' {
			at = k
			break
		}
		off = k + 1
	}
	if at < 0 {
		return rawQuery, "", false
	}
	value := at + len("checksum=")
	end := strings.IndexByte(rawQuery[at:], '&')
	switch {
	case end < 0 && at == 0: // alone
		return "", rawQuery[value:], true
	case end < 0: // last, as clients send it: rest is a prefix, nothing copied
		return rawQuery[:at-1], rawQuery[value:], true
	case at == 0: // first
		return rawQuery[at+end+1:], rawQuery[value : at+end], true
	}
	return rawQuery[:at] + rawQuery[at+end+1:], rawQuery[value : at+end], true
}

// Verify reports whether rawQuery carries a valid checksum for call under
// secret. The algorithm follows from the checksum's length; comparison is
// case-insensitive and constant-time. allowed, when non-empty, limits which
// algorithms are accepted.
func Verify(call, rawQuery, secret string, allowed ...Algorithm) bool {
	rest, sum, found := SplitChecksum(rawQuery)
	if !found || secret == "" {
		return false
	}
	return VerifySplit(call, rest, sum, secret, allowed...)
}

// VerifySplit is Verify for a query already split by SplitChecksum, so a
// caller trying several secrets splits once.
func VerifySplit(call, rest, sum, secret string, allowed ...Algorithm) bool {
	a, ok := AlgorithmForLength(len(sum))
	if !ok || secret == "" {
		return false
	}
	if len(allowed) > 0 {
		permitted := false
		for _, x := range allowed {
			permitted = permitted || x == a
		}
		if !permitted {
			return false
		}
	}
	// Compare raw digests: decode the client's hex (either case) instead of
	// building and lower-casing strings; hashers and buffers are pooled, as
	// this runs on every request.
	var got [sha512.Size]byte
	n, ok := decodeHex(got[:], sum)
	if !ok {
		return false
	}
	d := digest(a, call, rest, secret)
	return subtle.ConstantTimeCompare(got[:n], d.bytes()) == 1
}

// decodeHex decodes a hex string (either case) into dst without copying it
// to a byte slice first.
func decodeHex(dst []byte, s string) (int, bool) {
	if len(s)%2 != 0 || len(s)/2 > len(dst) {
		return 0, false
	}
	for i := 0; i < len(s); i += 2 {
		hi, ok1 := fromHexChar(s[i])
		lo, ok2 := fromHexChar(s[i+1])
		if !ok1 || !ok2 {
			return 0, false
		}
		dst[i/2] = hi<<4 | lo
	}
	return len(s) / 2, true
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

type hashState struct {
	h        hash.Hash
	buf, sum []byte
}

// sumBytes is a digest held by value, so computing one allocates nothing.
type sumBytes struct {
	b [sha512.Size]byte
	n int
}

func (d *sumBytes) bytes() []byte { return d.b[:d.n] }

var hashPools = map[Algorithm]*sync.Pool{}

func init() {
	for _, a := range []Algorithm{SHA1, SHA256, SHA384, SHA512} {
		hashPools[a] = &sync.Pool{New: func() any { return &hashState{h: newHash(a)} }}
	}
}

// digest is H(call+query+secret), with pooled hashers and buffers.
func digest[Q ~string | ~[]byte](a Algorithm, call string, query Q, secret string) sumBytes {
	pool := hashPools[a]
	st := pool.Get().(*hashState)
	st.buf = append(append(append(st.buf[:0], call...), query...), secret...)
	st.h.Reset()
	st.h.Write(st.buf)
	st.sum = st.h.Sum(st.sum[:0])
	var d sumBytes
	d.n = copy(d.b[:], st.sum)
	if cap(st.buf) <= 64<<10 {
		pool.Put(st)
	}
	return d
}

// SignQuery appends a checksum parameter for call to an encoded query.
func SignQuery(a Algorithm, call, query, secret string) string {
	sum := Checksum(a, call, query, secret)
	if query == "" {
		return "checksum=" + sum
	}
	return query + "&checksum=" + sum
}

// SignedURL builds apiBase + call + "?" + signed query. apiBase is a
// backend's API URL ending in "/api/" (a missing slash is added).
func SignedURL(apiBase, call string, params url.Values, secret string) string {
	return SignedURLRaw(apiBase, call, params.Encode(), secret)
}

// AppendSignedURL appends apiBase + call + "?" + query + "&checksum=…"
// (sha256) to dst; apiBase ends in "/api/" (a missing slash is added).
func AppendSignedURL[Q ~string | ~[]byte](dst []byte, apiBase, call string, query Q, secret string) []byte {
	dst = append(dst, apiBase...)
	if !strings.HasSuffix(apiBase, "/") {
		dst = append(dst, '/')
	}
	dst = append(append(dst, call...), '?')
	if len(query) > 0 {
		dst = append(append(dst, query...), '&')
	}
	d := digest(SHA256, call, query, secret)
	return hex.AppendEncode(append(dst, "checksum="...), d.bytes())
}

// SignedURLRaw is SignedURL for an already encoded query.
func SignedURLRaw(apiBase, call, query, secret string) string {
	return string(AppendSignedURL(nil, apiBase, call, query, secret))
}
