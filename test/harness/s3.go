package harness

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersitygwVersion is the S3 server the tests run; `make tools` installs
// the same one.
const VersitygwVersion = "v1.8.0"

// S3Server is a versitygw process on loopback over a temp directory.
type S3Server struct {
	Endpoint, Bucket, AccessKey, SecretKey string
	// Root is the directory versitygw serves: bucket b's object k is the
	// file Root/b/k (tests check what a store really holds).
	Root string
}

// Path is where the bucket's object key lives on disk.
func (s S3Server) Path(key string) string {
	return filepath.Join(s.Root, s.Bucket, filepath.FromSlash(key))
}

// URL names a store in the bucket: s3://bucket/prefix.
func (s S3Server) URL(prefix string) string {
	return "s3://" + s.Bucket + "/" + strings.TrimPrefix(prefix, "/")
}

// Env is the environment a peer needs to reach the server.
func (s S3Server) Env() []string {
	return []string{
		"CONCLAVE_S3_ENDPOINT=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=us-east-1",
	}
}

// Getenv reads Env, for code that takes a getenv function.
func (s S3Server) Getenv(k string) string {
	for _, kv := range s.Env() {
		if name, v, _ := strings.Cut(kv, "="); name == k {
			return v
		}
	}
	return ""
}

// StartS3 starts versitygw on a free loopback port over a temp directory,
// waits until it answers, and stops it at t.Cleanup. The bucket exists.
func StartS3(t testing.TB) S3Server {
	t.Helper()
	bin := versitygw(t)
	dir := t.TempDir()
	s := S3Server{Bucket: "conclave", AccessKey: "conclavetest", SecretKey: rand.Text()}
	root, meta := filepath.Join(dir, "root"), filepath.Join(dir, "meta")
	s.Root = root
	for _, d := range []string{filepath.Join(root, s.Bucket), meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// FreeAddr's port may be taken before versitygw binds it: try again.
	var lastErr error
	for try := 0; try < 3; try++ {
		addr := FreeAddr(t)
		logPath := filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", try))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		// Metadata (ETags, content types) goes to a sidecar directory,
		// not extended attributes, which tmpfs and some /tmp lack.
		cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey,
			"--port", addr, "--quiet", "posix", "--sidecar", meta, root)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		s.Endpoint = "http://" + addr
		if lastErr = waitS3(s.Endpoint, exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			return s
		}
		_ = cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(logPath)
		lastErr = fmt.Errorf("%w; log:\n%s", lastErr, log)
	}
	t.Fatalf("versitygw did not start: %v", lastErr)
	return S3Server{}
}

// waitS3 polls the endpoint until it answers HTTP at all (anonymous
// requests get 403: the server is up).
func waitS3(endpoint string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return errors.New("versitygw exited")
		default:
		}
		resp, err := c.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	vgwOnce sync.Once
	vgwPath string
	vgwErr  error
)

// versitygw finds the server binary: $CONCLAVE_VERSITYGW, else
// bin/tools/versitygw in the repository, else it builds that once (a lock
// file keeps parallel test binaries from building it twice).
func versitygw(t testing.TB) string {
	t.Helper()
	vgwOnce.Do(func() {
		if p := os.Getenv("CONCLAVE_VERSITYGW"); p != "" {
			if _, err := os.Stat(p); err != nil {
				vgwErr = fmt.Errorf("CONCLAVE_VERSITYGW=%s: %v", p, err)
			}
			vgwPath = p
			return
		}
		dir := filepath.Join(repoRoot(), "bin", "tools")
		vgwPath = filepath.Join(dir, "versitygw")
		if _, err := os.Stat(vgwPath); err == nil {
			return
		}
		vgwErr = buildVersitygw(dir)
	})
	if vgwErr != nil {
		t.Fatalf("versitygw (S3 server for tests) missing: %v; run `make tools` or set CONCLAVE_VERSITYGW", vgwErr)
	}
	return vgwPath
}

func buildVersitygw(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".versitygw.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	bin := filepath.Join(dir, "versitygw")
	if _, err := os.Stat(bin); err == nil {
		return nil // another test binary built it while we waited
	}
	// Install into a scratch directory and rename: a test binary that
	// finds bin/tools/versitygw without the lock never sees half a file.
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pkg := "github.com/versity/versitygw/cmd/versitygw@" + VersitygwVersion
	cmd := exec.Command("go", "install", pkg)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		// One line: the last of go's output says what went wrong.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if last := lines[len(lines)-1]; last != "" {
			err = fmt.Errorf("%v: %s", err, last)
		}
		return fmt.Errorf("go install %s: %v", pkg, err)
	}
	return os.Rename(filepath.Join(tmp, "versitygw"), bin)
}
