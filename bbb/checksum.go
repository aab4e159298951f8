// Package bbb holds the parts of the BigBlueButton API protocol that every
// Conclave component shares: checksums over the raw query, request signing,
// and BBB's XML response envelope. It has no dependencies inside Conclave.
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
	var d [sha512.Size]byte
	return hex.EncodeToString(digest(a, call, query, secret, d[:0]))
}

// SplitChecksum cuts the checksum parameter out of a raw query string as
// text, leaving every other byte as the client sent it. found is false when
// there is no checksum parameter.
func SplitChecksum(rawQuery string) (rest, checksum string, found bool) {
	if rawQuery == "" {
		return "", "", false
	}
	var b strings.Builder
	b.Grow(len(rawQuery))
	first := true
	for part := range strings.SplitSeq(rawQuery, "&") {
		if !found && strings.HasPrefix(part, "checksum=") {
			checksum = part[len("checksum="):]
			found = true
			continue
		}
		if !first {
			b.WriteByte('&')
		}
		b.WriteString(part)
		first = false
	}
	return b.String(), checksum, found
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
	var got, want [sha512.Size]byte
	n, err := hex.Decode(got[:], []byte(sum))
	if err != nil {
		return false
	}
	d := digest(a, call, rest, secret, want[:0])
	return subtle.ConstantTimeCompare(got[:n], d) == 1
}

type hashState struct {
	h   hash.Hash
	buf []byte
}

var hashPools = map[Algorithm]*sync.Pool{}

func init() {
	for _, a := range []Algorithm{SHA1, SHA256, SHA384, SHA512} {
		hashPools[a] = &sync.Pool{New: func() any { return &hashState{h: newHash(a)} }}
	}
}

// digest appends H(call+query+secret) to dst.
func digest(a Algorithm, call, query, secret string, dst []byte) []byte {
	pool := hashPools[a]
	st := pool.Get().(*hashState)
	st.buf = append(append(append(st.buf[:0], call...), query...), secret...)
	st.h.Reset()
	st.h.Write(st.buf)
	dst = st.h.Sum(dst)
	if cap(st.buf) <= 64<<10 {
		pool.Put(st)
	}
	return dst
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

// SignedURLRaw is SignedURL for an already encoded query.
func SignedURLRaw(apiBase, call, query, secret string) string {
	if !strings.HasSuffix(apiBase, "/") {
		apiBase += "/"
	}
	return apiBase + call + "?" + SignQuery(SHA256, call, query, secret)
}
