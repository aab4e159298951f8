package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/conclave-lb/conclave/bbb"
)

// Where bbb-web keeps its settings.
const (
	DefaultConfigPath   = "/usr/share/bbb-web/WEB-INF/classes/bigbluebutton.properties"
	DefaultOverridePath = "/etc/bigbluebutton/bbb-web.properties" // the operator's overrides
)

// Property keys the agent reads.
const (
	KeyServerURL  = "bigbluebutton.web.serverURL"
	KeySecret     = "securitySalt"
	KeyAlgorithms = "supportedChecksumAlgorithms"
)

// ReadProperties reads the BBB API URL (serverURL + "/bigbluebutton/api/",
// normalised), the API secret and the supported checksum algorithms from
// bbb-web's properties file; keys in the override files (read in order,
// each must exist) win. A missing or empty securitySalt is an error: it
// turns checksum checks off on the BBB server, so the agent refuses it.
func ReadProperties(path string, overrides ...string) (apiURL, secret string, algos []string, err error) {
	props, err := LoadProperties(append([]string{path}, overrides...)...)
	if err != nil {
		return "", "", nil, err
	}
	return BBBSettings(props, "")
}

// LoadProperties reads Java .properties files and merges them, later files
// winning.
func LoadProperties(paths ...string) (map[string]string, error) {
	props := map[string]string{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("BBB config: %w", err)
		}
		m, err := ParseProperties(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("BBB config %s: %w", p, err)
		}
		for k, v := range m {
			props[k] = v
		}
	}
	return props, nil
}

// BBBSettings picks the agent's settings out of merged properties.
// apiOverride, when set, replaces the URL derived from serverURL (which
// may then be absent).
func BBBSettings(props map[string]string, apiOverride string) (apiURL, secret string, algos []string, err error) {
	raw := strings.TrimSpace(apiOverride)
	if raw == "" {
		server := strings.TrimSpace(props[KeyServerURL])
		if server == "" {
			return "", "", nil, fmt.Errorf("BBB config has no %s", KeyServerURL)
		}
		raw = strings.TrimRight(server, "/") + "/bigbluebutton/api/"
	}
	if apiURL, err = bbb.NormalizeAPIURL(raw); err != nil {
		return "", "", nil, fmt.Errorf("BBB API URL: %w", err)
	}
	secret = strings.TrimSpace(props[KeySecret])
	if secret == "" {
		return "", "", nil, errors.New("BBB config: securitySalt is empty or missing; an empty secret turns off " +
			"checksum checks on the BBB server, so conclave-agent refuses to use it (set one with bbb-conf --setsecret)")
	}
	for a := range strings.SplitSeq(props[KeyAlgorithms], ",") {
		if a = strings.ToLower(strings.TrimSpace(a)); a != "" {
			algos = append(algos, a)
		}
	}
	return apiURL, secret, algos, nil
}

// chooseAlgorithm picks the checksum algorithm to sign with: sha256 where
// allowed (what BBB itself prefers), else the strongest allowed. No list
// means BBB's default: all four.
func chooseAlgorithm(algos []string) (bbb.Algorithm, error) {
	if len(algos) == 0 {
		return bbb.SHA256, nil
	}
	for _, want := range []bbb.Algorithm{bbb.SHA256, bbb.SHA512, bbb.SHA384, bbb.SHA1} {
		for _, a := range algos {
			if bbb.Algorithm(a) == want {
				return want, nil
			}
		}
	}
	return "", fmt.Errorf("%s=%s names no algorithm conclave-agent knows (sha1, sha256, sha384, sha512)",
		KeyAlgorithms, strings.Join(algos, ","))
}

// ParseProperties parses the Java .properties format: key=value, key:value
// or key value; lines starting with # or ! are comments; a line ending in
// an odd number of backslashes continues on the next (whose leading
// blanks are dropped); \t \n \r \f \uXXXX and \<char> escapes. Values are
// trimmed of trailing blanks (Java keeps them; for URLs and secrets they
// are always a mistake).
func ParseProperties(r io.Reader) (map[string]string, error) {
	props := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var logical strings.Builder
	continuing := false
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimLeft(line, " \t\f")
		if !continuing {
			if trimmed == "" || trimmed[0] == '#' || trimmed[0] == '!' {
				continue
			}
			logical.Reset()
		}
		// An odd count of trailing backslashes continues the line.
		n := len(trimmed) - len(strings.TrimRight(trimmed, `\`))
		if n%2 == 1 {
			logical.WriteString(trimmed[:len(trimmed)-1])
			continuing = true
			continue
		}
		logical.WriteString(trimmed)
		continuing = false
		k, v, err := splitProperty(logical.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		props[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if continuing {
		k, v, err := splitProperty(logical.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		props[k] = v
	}
	return props, nil
}

// splitProperty splits a logical line (leading blanks gone) into its
// unescaped key and value.
func splitProperty(s string) (string, string, error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i += 2
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
		i++
	}
	i = min(i, len(s))
	key, rest := s[:i], s[i:]
	rest = strings.TrimLeft(rest, " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	k, err := unescape(key)
	if err != nil {
		return "", "", err
	}
	v, err := unescape(rest)
	if err != nil {
		return "", "", err
	}
	return k, strings.TrimRight(v, " \t\f"), nil
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
			if err != nil {
				return "", fmt.Errorf("malformed \\u escape in %q", s)
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
