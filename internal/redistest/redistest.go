package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Available returns nil when redis-server and redis-cli are on PATH, and an
// error saying which is missing otherwise.
func Available() error {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("redistest: %s not found: %w", bin, err)
		}
	}
	return nil
}

// Require skips the test when redis-server is not available, or fails it
// when the environment variable CI is set, so that CI never silently skips
// the Redis tests.
func Require(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// Server is one redis-server process on a loopback port.
type Server struct {
	addr string
	port int
	dir  string
	args []string

	proc    process
	clients clients
}

// Start starts redis-server on a free 127.0.0.1 port with extraArgs (for
// example "--maxmemory", "10mb") appended to its command line, and returns
// once it answers PING. Call [Server.Close] when done.
func Start(extraArgs ...string) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rt-redis-")
	if err != nil {
		return nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	s := &Server{dir: dir, args: extraArgs}
	err = onFreePort(func(port int) error {
		s.port = port
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return s.start()
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// StartT starts a server like [Start] for a test: it skips or fails the test
// through [Require] when Redis is not installed, fails it when the server
// does not start, and closes the server when the test ends.
func StartT(tb testing.TB, extraArgs ...string) *Server {
	tb.Helper()
	Require(tb)
	s, err := Start(extraArgs...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; callers retry on a bind failure.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs redis-server on s.port and waits until it answers PING.
func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--daemonize", "no",
	}
	args = append(args, s.args...)
	return s.proc.run(s.addr, args, func() string {
		return logTail(filepath.Join(s.dir, "redis.log"), "log", 1000)
	})
}

// waitPing waits until the server at addr answers PING, it exits, or
// startTimeout passes.
func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING after %v: %w", startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends one PING on a fresh connection.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns the server's address, "127.0.0.1:<port>". It stays the same
// across [Server.Restart].
func (s *Server) Addr() string { return s.addr }

// Dir returns the server's directory, which holds its log (redis.log).
func (s *Server) Dir() string { return s.dir }

// Client returns a new client of the server, with opts applied to its
// options. [Server.Close] closes it if the test has not. Its options start
// with ContextTimeoutEnabled and DialerRetries 1, which redisstore.New
// requires.
func (s *Server) Client(opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: s.addr}
	for _, opt := range opts {
		opt(o)
	}
	c := redis.NewClient(o)
	s.clients.add(c)
	return c
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. Killing a stopped server does nothing.
func (s *Server) Kill() error { return s.proc.kill() }

// Restart starts the server again on the same port after [Server.Kill], and
// waits until it answers PING. Without persistence it comes back empty, as
// a restarted cache would. Clients reconnect by themselves.
func (s *Server) Restart() error {
	if err := s.Kill(); err != nil {
		return err
	}
	if s.clients.isClosed() {
		return errors.New("redistest: restart of a closed server")
	}
	var err error
	for range 20 {
		// The port may be briefly unavailable after the kill.
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// Pause suspends every client of the server for d (CLIENT PAUSE d ALL,
// sent on a connection of its own), to simulate a server that stops
// answering.
func (s *Server) Pause(d time.Duration) error {
	c := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Do(ctx, "client", "pause", max(d.Milliseconds(), 1), "all").Err(); err != nil {
		return fmt.Errorf("redistest: client pause: %w", err)
	}
	return nil
}

// Close kills the server, closes the clients made by [Server.Client] and
// removes the server's directory. It is idempotent.
func (s *Server) Close() {
	if !s.clients.closeAll() {
		return
	}
	_ = s.Kill()
	_ = os.RemoveAll(s.dir)
}
