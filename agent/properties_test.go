package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/conclave-lb/conclave/bbb"
)

func TestParseProperties(t *testing.T) {
	t.Parallel()
	in := "# a comment\r\n" +
		"! another comment\n" +
		"   \n" +
		"plain=value\n" +
		"  spaced   =   padded value   \n" +
		"colon:sep\n" +
		"blank sep with spaces\n" +
		"cont = first, \\\n" +
		"       second, \\\n" +
		"\t\tthird\n" +
		"escaped\\=key = a\\:b\\tc\\u0041\\\\\n" +
		"evenslash = ends in one backslash \\\\\n" +
		"empty=\n" +
		"# securitySalt=commented-out\n" +
		"dup=1\n" +
		"dup=2\n" +
		"last = no newline \\\n"
	got, err := ParseProperties(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"plain": "value", "spaced": "padded value", "colon": "sep", "blank": "sep with spaces",
		"cont": "first, second, third", "escaped=key": "a:b\tcA\\", "evenslash": `ends in one backslash \`,
		"empty": "", "dup": "2", "last": "no newline",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d keys %v, want %d", len(got), got, len(want))
	}
	if _, err := ParseProperties(strings.NewReader("bad=\\u12\n")); err == nil {
		t.Error("malformed \\u escape accepted")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadProperties(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := writeFile(t, dir, "bigbluebutton.properties", `
# defaults shipped with bbb-web
bigbluebutton.web.serverURL=http://bigbluebutton.example.com
securitySalt=330a8b08c3b4c61533e1d0c5ce1ac88f
supportedChecksumAlgorithms=sha1, SHA256 ,sha384,sha512
defaultWelcomeMessage=Welcome to <b>%%CONFNAME%%</b>! \
    For help on using BigBlueButton see these (short) \
    tutorial videos.
`)
	override := writeFile(t, dir, "bbb-web.properties", `
bigbluebutton.web.serverURL: https://bbb1.example.org/
securitySalt = 8cd8ef52e8e101574e400365b55e11a6
`)

	api, secret, algos, err := ReadProperties(base)
	if err != nil {
		t.Fatal(err)
	}
	if api != "http://bigbluebutton.example.com/bigbluebutton/api/" || secret != "330a8b08c3b4c61533e1d0c5ce1ac88f" {
		t.Fatalf("base only: %q %q", api, secret)
	}
	if !slices.Equal(algos, []string{"sha1", "sha256", "sha384", "sha512"}) {
		t.Fatalf("algos = %q", algos)
	}

	api, secret, algos, err = ReadProperties(base, override)
	if err != nil {
		t.Fatal(err)
	}
	if api != "https://bbb1.example.org/bigbluebutton/api/" || secret != "8cd8ef52e8e101574e400365b55e11a6" || len(algos) != 4 {
		t.Fatalf("with override: %q %q %q", api, secret, algos)
	}

	if _, _, _, err := ReadProperties(base, filepath.Join(dir, "missing.properties")); err == nil {
		t.Fatal("a named override that does not exist was ignored")
	}
	if _, _, _, err := ReadProperties(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("missing config accepted")
	}
	noURL := writeFile(t, dir, "nourl.properties", "securitySalt=x\n")
	if _, _, _, err := ReadProperties(noURL); err == nil {
		t.Fatal("config without serverURL accepted")
	}
	badURL := writeFile(t, dir, "badurl.properties", "securitySalt=x\nbigbluebutton.web.serverURL=ftp://x\n")
	if _, _, _, err := ReadProperties(badURL); err == nil {
		t.Fatal("ftp serverURL accepted")
	}
	// --bbb-api replaces the URL (serverURL may then be missing).
	props, err := LoadProperties(noURL)
	if err != nil {
		t.Fatal(err)
	}
	if api, _, _, err := BBBSettings(props, "https://bbb9.example.org/bigbluebutton"); err != nil || api != "https://bbb9.example.org/bigbluebutton/api/" {
		t.Fatalf("API override: %q, %v", api, err)
	}
}

func TestEmptySaltRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "good.properties", "bigbluebutton.web.serverURL=https://bbb.example.org\nsecuritySalt=s3cret\n")
	for name, content := range map[string]string{
		"empty":   "bigbluebutton.web.serverURL=https://bbb.example.org\nsecuritySalt=\n",
		"blank":   "bigbluebutton.web.serverURL=https://bbb.example.org\nsecuritySalt =   \n",
		"missing": "bigbluebutton.web.serverURL=https://bbb.example.org\n",
	} {
		p := writeFile(t, dir, name+".properties", content)
		if _, _, _, err := ReadProperties(p); err == nil || !strings.Contains(err.Error(), "securitySalt") {
			t.Errorf("%s salt: err = %v", name, err)
		}
	}
	// An override that empties the salt wins, and is refused.
	emptier := writeFile(t, dir, "emptier.properties", "securitySalt=\n")
	if _, _, _, err := ReadProperties(good, emptier); err == nil {
		t.Error("override emptying the salt accepted")
	}
	if _, err := Start(Config{APIURL: "https://bbb.example.org/bigbluebutton/api/"}); err == nil {
		t.Error("agent started with no secret")
	}
}

func TestChooseAlgorithm(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bbb.Algorithm{
		"": bbb.SHA256, "sha1,sha256,sha384,sha512": bbb.SHA256, "sha1": bbb.SHA1, "sha1,sha512": bbb.SHA512,
		"sha384,sha1": bbb.SHA384, "md5,sha1": bbb.SHA1,
	} {
		var algos []string
		if in != "" {
			algos = strings.Split(in, ",")
		}
		if got, err := chooseAlgorithm(algos); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := chooseAlgorithm([]string{"md5"}); err == nil {
		t.Error("md5 only accepted")
	}
}
