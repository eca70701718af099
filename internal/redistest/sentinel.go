package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is one redis-server process in sentinel mode on a loopback
// port.
type Sentinel struct {
	addr string
	dir  string

	proc    process
	clients clients
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
	err = onFreePort(func(port int) error {
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return s.start(port, conf)
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
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
	return s.proc.run(s.addr, []string{path, "--sentinel"}, s.LogTail)
}

// Addr returns the sentinel's address, "127.0.0.1:<port>".
func (s *Sentinel) Addr() string { return s.addr }

// Dir returns the sentinel's directory, which holds its config file and
// its log (sentinel.log).
func (s *Sentinel) Dir() string { return s.dir }

// LogTail returns the end of the sentinel's log, for error messages.
func (s *Sentinel) LogTail() string {
	return logTail(filepath.Join(s.dir, "sentinel.log"), "sentinel log", 2000)
}

// Client returns a new client of the sentinel. [Sentinel.Close] closes it
// if the test has not.
func (s *Sentinel) Client() *redis.SentinelClient {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.addr, ContextTimeoutEnabled: true})
	s.clients.add(c)
	return c
}

// Close kills the sentinel, closes the clients made by [Sentinel.Client]
// and removes its directory. It is idempotent.
func (s *Sentinel) Close() {
	if !s.clients.closeAll() {
		return
	}
	_ = s.proc.kill()
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
