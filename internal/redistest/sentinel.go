package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is one redis-server process in sentinel mode on a loopback
// port.
type Sentinel struct {
	addr string
	dir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	clients []*redis.SentinelClient
	closed  bool
}

// StartSentinel starts `redis-server <conf> --sentinel` on a free
// 127.0.0.1 port, its config file (which Sentinel rewrites) in a temporary
// directory of its own holding conf, one directive a line, for example
// "sentinel monitor mymaster 127.0.0.1 6379 1". It returns once the
// sentinel answers PING. Call [Sentinel.Close] when done.
func StartSentinel(conf ...string) (*Sentinel, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rt-sentinel-")
	if err != nil {
		return nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	s := &Sentinel{dir: dir}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(port, conf); lastErr == nil {
			return s, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// StartSentinelT starts a sentinel like [StartSentinel] for a test: it
// skips or fails the test through [Require] when Redis is not installed,
// fails it when the sentinel does not start, and closes the sentinel when
// the test ends.
func StartSentinelT(tb testing.TB, conf ...string) *Sentinel {
	tb.Helper()
	Require(tb)
	s, err := StartSentinel(conf...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

func (s *Sentinel) start(port int, conf []string) error {
	lines := []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + s.dir,
		"logfile " + filepath.Join(s.dir, "sentinel.log"),
		"sentinel resolve-hostnames no",
	}
	lines = append(lines, conf...)
	path := filepath.Join(s.dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("redistest: sentinel config: %w", err)
	}
	cmd := exec.Command("redis-server", path, "--sentinel")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server --sentinel: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := waitPing(s.addr, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redistest: sentinel on %s: %w%s", s.addr, err, s.LogTail())
	}
	return nil
}

// Addr returns the sentinel's address, "127.0.0.1:<port>".
func (s *Sentinel) Addr() string { return s.addr }

// Dir returns the sentinel's directory, which holds its config file and
// its log (sentinel.log).
func (s *Sentinel) Dir() string { return s.dir }

// LogTail returns the end of the sentinel's log, for error messages.
func (s *Sentinel) LogTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nsentinel log:\n" + string(b)
}

// Client returns a new client of the sentinel. [Sentinel.Close] closes it
// if the test has not.
func (s *Sentinel) Client() *redis.SentinelClient {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.addr, ContextTimeoutEnabled: true})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// Close kills the sentinel, closes the clients made by [Sentinel.Client]
// and removes its directory. It is idempotent.
func (s *Sentinel) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	clients, cmd, exited := s.clients, s.cmd, s.exited
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
	_ = os.RemoveAll(s.dir)
}

// WaitReplicaSynced waits, up to timeout, until the server replica reports
// master_link_status:up in INFO replication: it has completed its initial
// sync with its master.
func WaitReplicaSynced(replica *Server, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, Addr: replica.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.Info(ctx, "replication").Result()
		cancel()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = info
		}
		if time.Now().After(deadline) {
			return errors.New("redistest: replica " + replica.Addr() + " not in sync after " + timeout.String() + ": " + last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
