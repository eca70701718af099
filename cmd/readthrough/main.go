package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes; doc.go documents them for users.
const (
	exitOK           = 0
	exitAdminError   = 1
	exitUsage        = 2
	exitUnreachable  = 3
	exitProblems     = 4
	exitNotConfirmed = 5
	exitInterrupted  = 130
)

// defaultTimeout bounds each call to the admin API unless --timeout says
// otherwise.
const defaultTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usageText = `usage: readthrough [global flags] <command> [flags] [arguments]

Commands:
  purge    remove cached entries: exactly one of
             --route PATTERN --param k=v [--param ...]   one bucket of a route
             --url URL                                   the bucket a GET of URL uses
             --route PATTERN                             every bucket of the route (asks to confirm)
             --tag TAG                                   every bucket stored with the tag
             --all                                       everything the cache stored (asks to confirm)
           --yes confirms without asking (required when stdin is not a terminal)
  inspect  URL [--header Name:value ...]: the route, bucket, field and entry a GET of URL uses
  stats    per-route hits, misses, hit ratio, stale served, collapsed, origin time saved;
           with a local tier, its hits per route and a line on its state
             --route PATTERN   only this route
             --since-start     counters since the cache started, not the recent window
             --watch           redraw every --interval (default 2s) until interrupted
  doctor   the store's health check: each finding with its level and fix

Global flags (before or after the command):
  --addr URL         admin API base URL, e.g. http://127.0.0.1:9090/admin/ (env READTHROUGH_ADMIN)
  --token TOKEN      bearer token (env READTHROUGH_TOKEN)
  --token-file FILE  read the bearer token from FILE
  --timeout D        bound on each admin call (default 10s)
  --json             machine output: one JSON object per line

Exit codes:
  0  ok                       1  the admin answered an error (its reason is printed)
  2  usage error              3  cannot reach the admin API (network, timeout)
  4  doctor found a warning or an error
  5  confirmation refused or not given (purge --route alone, --all)
  130 interrupted (stats --watch exits 0 on SIGINT)
`

// globals are the flags every command accepts.
type globals struct {
	addr      string
	token     string
	tokenFile string
	timeout   time.Duration
	json      bool
}

// register adds the global flags to fs, bound to g.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "admin API base URL (env READTHROUGH_ADMIN)")
	fs.StringVar(&g.token, "token", g.token, "bearer token (env READTHROUGH_TOKEN)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "read the bearer token from this file")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound on each admin call")
	fs.BoolVar(&g.json, "json", g.json, "machine output: one JSON object per line")
}

// env is the command's view of its environment and streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// errorf prints a message to stderr with the command's prefix and returns
// code.
func (e *env) errorf(code int, format string, args ...any) int {
	fmt.Fprint(e.stderr, clean(fmt.Sprintf("readthrough: "+format, args...))+"\n") // args may hold the server's words
	return code
}

// commands maps each command name to its implementation: it parses its
// own flags (with the globals) from args and returns an exit code.
var commands = map[string]func(ctx context.Context, e *env, g *globals, args []string) int{
	"purge":   runPurge,
	"inspect": runInspect,
	"stats":   runStats,
	"doctor":  runDoctor,
}

// run is the whole command line tool: args without the program name,
// the streams and the environment are given, so tests run it in-process.
// It returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	g := &globals{timeout: defaultTimeout}
	fs := newFlagSet("readthrough")
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return usageError(e, err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return e.errorf(exitUsage, "no command given: purge, inspect, stats or doctor")
	}
	name := rest[0]
	if name == "help" {
		fmt.Fprint(e.stdout, usageText)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		return e.errorf(exitUsage, "unknown command %q; the commands are purge, inspect, stats and doctor (see readthrough -h)", name)
	}
	return cmd(ctx, e, g, rest[1:])
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints the usage text on -h.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// usageError reports a flag parsing error (exit 2), or prints the usage
// for -h (exit 0).
func usageError(e *env, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(e.stdout, usageText)
		return exitOK
	}
	return e.errorf(exitUsage, "%v (see readthrough -h)", err)
}

// parseArgs parses a command's flags, which may come before, between and
// after its positional arguments (flag stops at the first positional
// one), and returns the positional arguments. After "--" everything is
// positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// client resolves the global flags and the environment into a client of
// the admin API. The error is a usage error.
func (g *globals) client(e *env) (*client, error) {
	addr := g.addr
	if addr == "" {
		addr = e.getenv("READTHROUGH_ADMIN")
	}
	if addr == "" {
		return nil, errors.New("no admin address: give --addr or set READTHROUGH_ADMIN (e.g. http://127.0.0.1:9090/admin/)")
	}
	base, err := parseBase(addr)
	if err != nil {
		return nil, err
	}
	if g.token != "" && g.tokenFile != "" {
		return nil, errors.New("give --token or --token-file, not both")
	}
	token := g.token
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("--token-file: %s is empty", g.tokenFile)
		}
	}
	if token == "" {
		token = e.getenv("READTHROUGH_TOKEN")
	}
	if g.timeout < 0 {
		return nil, fmt.Errorf("--timeout: negative duration %v", g.timeout)
	}
	timeout := g.timeout
	if timeout == 0 {
		timeout = defaultTimeout
	}
	return newClient(base, token, timeout), nil
}

// parseBase checks the admin address and makes it a directory URL, so
// that endpoints resolve under it. An address without a scheme is http.
func parseBase(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--addr %q: the scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--addr %q: no host", addr)
	}
	if u.User != nil {
		return nil, fmt.Errorf("--addr: give credentials with --token or --token-file, not in the URL")
	}
	u.RawQuery, u.Fragment = "", ""
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u, nil
}

// fail turns an error of the admin client into a message and exit code.
func fail(ctx context.Context, e *env, err error) int {
	var ae *adminError
	switch {
	case errors.As(err, &ae):
		return e.errorf(exitAdminError, "%v", ae)
	case ctx.Err() != nil:
		return e.errorf(exitInterrupted, "interrupted")
	default:
		return e.errorf(exitUnreachable, "%v", err)
	}
}

// parse parses a command's flags (its own and the globals) and returns
// its positional arguments, or an exit code of zero or more when the
// command must stop (usage error, -h).
func parse(e *env, g *globals, fs *flag.FlagSet, args []string) ([]string, int) {
	g.register(fs)
	positional, err := parseArgs(fs, args)
	if err != nil {
		return nil, usageError(e, err)
	}
	return positional, -1
}

// connect makes the admin client from the globals, or returns the usage
// error's exit code.
func connect(e *env, g *globals) (*client, int) {
	c, err := g.client(e)
	if err != nil {
		return nil, e.errorf(exitUsage, "%v", err)
	}
	return c, -1
}
