package fakebbb

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
)

// Process is a fakebbb binary run by a test, with the faults a real BBB
// server shows: it can hang, restart empty, and die.
//
// Hanging is SIGSTOP, nothing of the binary's own: a stopped process still
// has its listening socket, so the kernel completes TCP handshakes (up to
// the listen backlog) and takes the requests in, but nothing answers until
// SIGCONT — what a balancer sees of a frozen node. While stopped, the
// process does not act on SIGTERM (it stays pending); SIGKILL works.
// Restarting empty is SIGHUP, which the binary answers like Server.Restart:
// every meeting forgotten, same address.
type Process struct {
	// API is the node's API base URL, http://127.0.0.1:port/bigbluebutton/api/;
	// Host its host:port.
	API, Host string

	t     testing.TB
	cmd   *exec.Cmd
	lines chan string

	mu     sync.Mutex
	exited chan struct{}
}

var apiLine = regexp.MustCompile(`BBB API at (http://(\S+?)/bigbluebutton/api/)`)

// StartProcess runs the fakebbb binary bin on a free loopback port with
// secret until the test ends; env is added to the process's environment.
func StartProcess(t testing.TB, bin, secret string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--secret", secret)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("fakebbb: %v", err)
	}
	p := &Process{t: t, cmd: cmd, lines: make(chan string, 64), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for it
			}
		}
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.Kill)
	m := p.await(apiLine)
	if m == nil {
		p.Kill()
		t.Fatal("fakebbb printed no API address")
	}
	p.API, p.Host = m[1], m[2]
	return p
}

// await waits up to 10 s (times CONCLAVE_TEST_TIMEOUT_SCALE) for a line of
// output matching re.
func (p *Process) await(re *regexp.Regexp) []string {
	timeout := time.After(testwait.Scaled(10 * time.Second))
	for {
		select {
		case l := <-p.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.exited:
			return nil
		case <-timeout:
			return nil
		}
	}
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Hang stops the process (SIGSTOP): connections are accepted, nothing is
// answered.
func (p *Process) Hang() { p.signal(syscall.SIGSTOP) }

// Resume continues a hung process (SIGCONT); the requests it took in while
// stopped are answered then.
func (p *Process) Resume() { p.signal(syscall.SIGCONT) }

// Restart makes the node restart empty (SIGHUP) and waits until it has:
// its meetings are gone, its address the same. A hung process is resumed
// first, as a restarted one runs.
func (p *Process) Restart() {
	p.t.Helper()
	p.Resume()
	p.signal(syscall.SIGHUP)
	if p.await(regexp.MustCompile(`restarted empty`)) == nil {
		p.t.Fatal("fakebbb did not restart")
	}
}

// Kill ends the process at once (SIGKILL), hung or not, and waits for it.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// Alive reports whether the process still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Alive() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// String names the process for test logs.
func (p *Process) String() string {
	return "fakebbb[" + strings.TrimSpace(p.Host) + "]"
}
