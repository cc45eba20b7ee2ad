package intentkit_test

// The real intentkitd, in sandbox mode (both provider simulators in-process, wired to its own
// webhook receiver), started as a separate process on free ports for these tests.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const sandboxToken = "sandbox-token"

// sandbox is one running `intentkitd --sandbox`.
type sandbox struct {
	cmd       *exec.Cmd
	dataDir   string
	grpcAddr  string
	pientegra string // the Pientegra simulator's root URL (control endpoints under /_control)
	decentro  string // the Decentro simulator's root URL
	done      chan struct{}
	stderr    *lockedWriter
}

// intentkitdPath is the binary under test: $INTENTKITD (CI builds it once for every suite),
// or the workspace's debug build.
func intentkitdPath(tb testing.TB) string {
	if p := os.Getenv("INTENTKITD"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../target/debug/intentkitd")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("no intentkitd at %s: run `cargo build -p intentkit-grpc-server` or set INTENTKITD", p)
	}
	return p
}

// freeAddr reserves a loopback port (so a restarted server can take the same one again).
func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	grpcLine = regexp.MustCompile(`^\s*gRPC\s+(\S+)`)
	simLine  = regexp.MustCompile(`^\s*simulators\s+pientegra\s+(\S+)\s+decentro\s+(\S+)`)
)

// startSandbox starts intentkitd on dataDir with its gRPC on grpcAddr ("" for a free port);
// the test stops it at its end.
func startSandbox(tb testing.TB, dataDir, grpcAddr string) *sandbox {
	tb.Helper()
	if grpcAddr == "" {
		grpcAddr = "127.0.0.1:0"
	}
	cmd := exec.Command(intentkitdPath(tb), "--sandbox", "--data-dir", dataDir)
	cmd.Env = append(os.Environ(),
		"INTENTKIT_SERVER_GRPC_ADDR="+grpcAddr,
		"INTENTKIT_SERVER_HTTP_ADDR=127.0.0.1:0",
		"INTENTKIT_SERVER_METRICS_ADDR=",
		"INTENTKIT_SANDBOX_PIENTEGRA_ADDR=127.0.0.1:0",
		"INTENTKIT_SANDBOX_DECENTRO_ADDR=127.0.0.1:0",
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	s := &sandbox{cmd: cmd, dataDir: dataDir, done: make(chan struct{}), stderr: &lockedWriter{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	tb.Cleanup(s.stop)

	ready := make(chan error, 1)
	go func() {
		r := bufio.NewScanner(stdout)
		var seen []string
		for r.Scan() {
			line := r.Text()
			seen = append(seen, line)
			if m := grpcLine.FindStringSubmatch(line); m != nil {
				s.grpcAddr = m[1]
			}
			if m := simLine.FindStringSubmatch(line); m != nil {
				s.pientegra = strings.TrimSuffix(m[1], "/api/v1")
				s.decentro = m[2]
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("intentkitd exited before it was ready:\n%s", strings.Join(seen, "\n"))
	}()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatalf("%v\nstderr:\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		tb.Fatalf("intentkitd did not start in 30 s; stderr:\n%s", s.stderr)
	}
	return s
}

// stop ends the server with SIGTERM (a clean shutdown) and waits.
func (s *sandbox) stop() { s.signal(syscall.SIGTERM) }

// kill ends the server with SIGKILL, as a crash would.
func (s *sandbox) kill() { s.signal(syscall.SIGKILL) }

func (s *sandbox) signal(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// control POSTs to a simulator's control endpoint and fails the test unless it is 2xx.
func control(tb testing.TB, url, body string) {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

// lockedWriter keeps the server's log for a failure message.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
