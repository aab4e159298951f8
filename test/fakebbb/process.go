package fakebbb

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
	"github.com/conclave-lb/conclave/test/harness"
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

	t      testing.TB
	cmd    *exec.Cmd
	lines  chan string
	stderr *harness.SyncBuffer

	waitErr error // set before exited is closed

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
	stderr := new(harness.SyncBuffer) // fakebbb writes errors only there
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("fakebbb: %v", err)
	}
	p := &Process{t: t, cmd: cmd, stderr: stderr, lines: make(chan string, 64), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for it
			}
		}
		p.waitErr = cmd.Wait()
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
// answered. It returns once every thread has stopped: the kernel delivers
// SIGSTOP asynchronously, and a thread still running on another core could
// otherwise answer a request sent right after Hang.
func (p *Process) Hang() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	deadline := time.Now().Add(testwait.Scaled(5 * time.Second))
	for !p.stopped() {
		if !p.Alive() {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: threads still running 5 s after SIGSTOP", p)
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether every thread of the process is in the stopped
// state ('T' in /proc/<pid>/task/<tid>/stat).
func (p *Process) stopped() bool {
	dir := fmt.Sprintf("/proc/%d/task", p.PID())
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses and
		// may itself hold spaces or parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

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
		p.t.Fatalf("%s did not restart (%s); stderr: %s", p, p.exitStatus(), p.stderr)
	}
}

// Kill ends the process at once (SIGKILL), hung or not, and waits for it.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.exited
}

// exitStatus describes how the process ended, or says it runs.
func (p *Process) exitStatus() string {
	select {
	case <-p.exited:
		if p.waitErr == nil {
			return "exited 0"
		}
		return p.waitErr.Error()
	default:
		return "still running"
	}
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
