package redistest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
)

// process is one redis-server process of a Server or a Sentinel: started,
// awaited until it answers PING, killed, possibly started again.
type process struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// run starts redis-server with args and waits until addr answers PING. A
// process that does not answer is killed; the error then ends with what
// logTail returns.
func (p *process) run(addr string, args []string, logTail func() string) error {
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server %v: %w", args, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	if err := waitPing(addr, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redistest: redis-server on %s: %w%s", addr, err, logTail())
	}
	return nil
}

// kill stops the process with SIGKILL, as a crash would, and waits for it
// to exit. Killing a process that is not running does nothing.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("redistest: kill: %w", err)
	}
	<-exited
	return nil
}

// onFreePort calls start with free loopback ports until it succeeds, up to
// five times: another process may take a port between the kernel naming it
// and redis-server binding it.
func onFreePort(start func(port int) error) error {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		if lastErr = start(port); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// clients are the clients a Server, Cluster or Sentinel handed out, closed
// with it.
type clients struct {
	mu     sync.Mutex
	list   []io.Closer
	closed bool
}

func (c *clients) add(x io.Closer) {
	c.mu.Lock()
	c.list = append(c.list, x)
	c.mu.Unlock()
}

// isClosed reports whether closeAll was called.
func (c *clients) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// closeAll closes every client, once: it reports false when it had been
// called already, so that the owner's Close is idempotent too.
func (c *clients) closeAll() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	list := c.list
	c.list = nil
	c.mu.Unlock()
	for _, x := range list {
		_ = x.Close()
	}
	return true
}

// logTail returns the last n bytes of the log file path under title, for
// error messages, or "" when it is empty or missing.
func logTail(path, title string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return "\n" + title + ":\n" + string(b)
}
