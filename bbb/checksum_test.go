package bbb

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestReferenceVector(t *testing.T) {
	t.Parallel()
	q := "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444"
	secret := "639259d4-9dd8-4b25-bf01-95f9567eaf4b"
	got := Checksum(SHA1, "create", q, secret)
	if got != "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17" {
		t.Fatalf("checksum = %s", got)
	}
	if !Verify("create", q+"&checksum="+got, secret) {
		t.Fatal("reference vector does not verify")
	}
	if !Verify("create", "checksum="+strings.ToUpper(got)+"&"+q, secret) {
		t.Fatal("checksum first, upper case, does not verify")
	}
	if Verify("create", q+"&checksum="+got, "other") {
		t.Fatal("wrong secret verified")
	}
	if Verify("join", q+"&checksum="+got, secret) {
		t.Fatal("wrong call verified")
	}
}

func TestAllAlgorithmsAndEncodings(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"name=A+B&meetingID=m1", "name=A%20B&meetingID=m1", ""} {
		for _, a := range []Algorithm{SHA1, SHA256, SHA384, SHA512} {
			signed := SignQuery(a, "create", q, "s3cret")
			if !Verify("create", signed, "s3cret") {
				t.Errorf("%s %q does not verify", a, q)
			}
			if Verify("create", signed, "s3cret", SHA1) && a != SHA1 {
				t.Errorf("%s accepted though only sha1 allowed", a)
			}
		}
	}
	// A query re-encoded differently must not verify: we sign raw bytes.
	signed := SignQuery(SHA256, "create", "name=A+B", "s")
	if Verify("create", strings.Replace(signed, "+", "%20", 1), "s") {
		t.Fatal("re-encoded query verified")
	}
}

func TestSplitChecksum(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, rest, sum string }{
		{"a=1&checksum=x&b=2", "a=1&b=2", "x"},
		{"checksum=x", "", "x"},
		{"a=1&checksum=x", "a=1", "x"},
		{"checksum=x&a=1", "a=1", "x"},
		{"xchecksum=1&a=2", "xchecksum=1&a=2", ""},
		{"xchecksum=1&checksum=2&checksum=3", "xchecksum=1&checksum=3", "2"},
		{"a=1&&checksum=x", "a=1&", "x"},
		{"", "", ""},
	}
	for _, c := range cases {
		rest, sum, _ := SplitChecksum(c.in)
		if rest != c.rest || sum != c.sum {
			t.Errorf("SplitChecksum(%q) = %q,%q want %q,%q", c.in, rest, sum, c.rest, c.sum)
		}
	}
	if Verify("x", "a=1", "s") || Verify("x", "a=1&checksum=abc", "s") || Verify("x", "", "s") {
		t.Fatal("missing or malformed checksum verified")
	}
}

func TestFailedXML(t *testing.T) {
	t.Parallel()
	b := FailedXML(KeyChecksumError, "a<b")
	var e struct {
		XMLName xml.Name `xml:"response"`
		Envelope
	}
	err := xml.Unmarshal(b, &e)
	if err != nil || e.ReturnCode != "FAILED" || e.MessageKey != KeyChecksumError || e.Message != "a<b" {
		t.Fatalf("%s -> %+v %v", b, e, err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("create", "name=x&checksum=abc", "s")
	f.Add("", "", "")
	f.Add("join", "a=1&checksum=x&b=2&checksum=y", "s")
	f.Fuzz(func(t *testing.T, call, q, secret string) {
		_ = Verify(call, q, secret)
		rest, sum, found := SplitChecksum(q)
		wrest, wsum, wfound := splitChecksumByParts(q)
		if rest != wrest || sum != wsum || found != wfound {
			t.Fatalf("SplitChecksum(%q) = %q, %q, %v; by parts: %q, %q, %v", q, rest, sum, found, wrest, wsum, wfound)
		}
	})
}

// splitChecksumByParts is the plain definition SplitChecksum's fast paths
// must agree with: drop the first parameter named checksum, keep the rest.
func splitChecksumByParts(q string) (rest, checksum string, found bool) {
	var kept []string
	for _, part := range strings.Split(q, "&") {
		if !found && strings.HasPrefix(part, "checksum=") {
			checksum, found = part[len("checksum="):], true
			continue
		}
		kept = append(kept, part)
	}
	if q == "" {
		return "", "", false
	}
	return strings.Join(kept, "&"), checksum, found
}
