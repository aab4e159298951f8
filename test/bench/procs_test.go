//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
)

// The trivial redirect server and the fake BBB nodes run as processes of
// their own, as the peers do: sharing the load generator's Go runtime would
// charge them its scheduling (and it theirs).

const trivialEnv = "CONCLAVE_BENCH_TRIVIAL_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(trivialEnv) == "1" {
		serveTrivial()
		return
	}
	os.Exit(m.Run())
}

// serveTrivial is the ceiling for join: net/http answering every request
// with a 302 to the same query on another host. It prints its address and
// serves until its parent closes stdin.
func serveTrivial() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", ln.Addr())
	go func() {
		buf := make([]byte, 1)
		os.Stdin.Read(buf) // EOF when the parent goes
		os.Exit(0)
	}()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/bigbluebutton/api/join?"+r.URL.RawQuery, http.StatusFound)
	}))
}

// startProcess runs cmd until the test ends and returns the first match of
// re's group 1 in its output (an address it printed).
func startProcess(t *testing.T, cmd *exec.Cmd, re *regexp.Regexp) string {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case s := <-found:
		return s
	case <-time.After(testwait.Scaled(20 * time.Second)):
		t.Fatalf("%s printed no address", cmd.Path)
		return ""
	}
}

func startTrivial(t *testing.T) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), trivialEnv+"=1")
	return startProcess(t, cmd, regexp.MustCompile(`listening on (\S+)`))
}

var fakebbbAPI = regexp.MustCompile(`BBB API at (\S+)`)

func startFakeBBB(t *testing.T, bin, secret string) string {
	return startProcess(t, exec.Command(bin, "--listen", "127.0.0.1:0", "--secret", secret), fakebbbAPI)
}
