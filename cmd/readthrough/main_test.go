package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// testToken is the admin token of the test services.
const testToken = "cli-test-token-0123456789abcdef"

const (
	usersRoute = "GET /users/{id}"
	postsRoute = "GET /posts/{id}"
)

// service is a cached service on a private redis-server with its admin API
// on a server of its own, as an operator would run it.
type service struct {
	t     *testing.T
	url   string // the service
	admin string // the admin API's base URL
}

func startService(t *testing.T) *service {
	t.Helper()
	rs := redistest.StartT(t)
	store, err := redisstore.New(rs.Client(), redisstore.WithPrefix("cli"))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	// A patient store timeout: on a loaded machine a slow call would send
	// a request to the origin and break the exact counts checked here.
	cache, err := httpcache.New(store, httpcache.WithLogger(quiet), httpcache.WithStoreTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	routes := []struct {
		pattern string
		policy  policy.Policy
	}{
		{usersRoute, policy.Policy{TTL: time.Minute, Tags: func(r *http.Request) []string { return []string{"user-" + r.PathValue("id")} }}},
		{postsRoute, policy.Policy{TTL: time.Minute}},
	}
	for _, rt := range routes {
		mw, err := cache.Route(rt.pattern, rt.policy)
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle(rt.pattern, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id": %q, "about": %q}`, r.PathValue("id"), strings.Repeat("a long description ", 40))
		})))
	}
	if err := cache.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}
	svc := httptest.NewServer(mux)
	adminHandler, err := cache.AdminHandler(httpcache.WithAdminToken("operator", testToken), httpcache.WithAdminLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	adminMux := http.NewServeMux()
	adminMux.Handle("/admin/", adminHandler)
	adm := httptest.NewServer(adminMux)
	t.Cleanup(func() {
		svc.Close()
		adm.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cache.Close(ctx)
		store.Close()
	})
	return &service{t: t, url: svc.URL, admin: adm.URL + "/admin/"}
}

// get requests path from the service and returns its Cache-Status.
func (s *service) get(path string) string {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return resp.Header.Get("Cache-Status")
}

// wantHit checks that a GET of path is a hit (or, with hit false, a miss).
func (s *service) wantHit(path string, hit bool) {
	s.t.Helper()
	status := s.get(path)
	if got := strings.Contains(status, "; hit"); got != hit {
		s.t.Errorf("GET %s: Cache-Status %q, want hit=%v", path, status, hit)
	}
}

// result is what one run of the command line tool did.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the tool in-process with the service's admin address and
// token in its environment and a stdin that is not a terminal.
func (s *service) cli(args ...string) result {
	s.t.Helper()
	return runCLI(s.t, context.Background(), strings.NewReader(""), s.env(), args...)
}

func (s *service) env() map[string]string {
	return map[string]string{"READTHROUGH_ADMIN": s.admin, "READTHROUGH_TOKEN": testToken}
}

func runCLI(t *testing.T, ctx context.Context, stdin io.Reader, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, stdin, &stdout, &stderr, func(k string) string { return env[k] })
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("readthrough %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	return r
}

// want fails the test unless the run exited with code.
func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d; stderr: %s", r.code, code, r.stderr)
	}
	// The error is the last line (a confirmation's question may precede it).
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if code != exitOK && code != exitProblems && !strings.Contains(lines[len(lines)-1], "readthrough: ") {
		t.Errorf("stderr %q lacks the prefix \"readthrough: \"", r.stderr)
	}
	return r
}

// squeeze replaces each run of spaces by one, so that tests do not depend
// on column widths.
func squeeze(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
	}
	return b.String()
}

// terminal is a stdin that passes for a terminal, with the operator's
// typed answer.
type terminal struct{ *strings.Reader }

func (terminal) Stat() (os.FileInfo, error) { return charDevice{}, nil }

type charDevice struct{}

func (charDevice) Name() string       { return "tty" }
func (charDevice) Size() int64        { return 0 }
func (charDevice) Mode() os.FileMode  { return os.ModeDevice | os.ModeCharDevice | 0o620 }
func (charDevice) ModTime() time.Time { return time.Time{} }
func (charDevice) IsDir() bool        { return false }
func (charDevice) Sys() any           { return nil }

// tableRow returns the fields of the table line for route (or "TOTAL").
func tableRow(t *testing.T, out, route string) []string {
	t.Helper()
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, route+" "); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no row %q in\n%s", route, out)
	return nil
}

func TestStats(t *testing.T) {
	s := startService(t)
	for range 3 {
		s.get("/users/1") // a miss, then two hits
	}
	s.get("/posts/1") // a miss

	out := s.cli("stats").want(t, exitOK).stdout
	if !strings.Contains(out, "window: since the cache started") && !strings.Contains(out, "window: last ") {
		t.Errorf("the header does not name the window:\n%s", out)
	}
	// ROUTE HITS MISSES HIT-RATIO STALE COLLAPSED ORIGIN-SAVED
	users := tableRow(t, out, usersRoute)
	if want := []string{"2", "1", "66.7%", "0", "0"}; strings.Join(users[:5], " ") != strings.Join(want, " ") {
		t.Errorf("users row %q, want it to start with %q", users, want)
	}
	posts := tableRow(t, out, postsRoute)
	if want := []string{"0", "1", "0.0%"}; strings.Join(posts[:3], " ") != strings.Join(want, " ") {
		t.Errorf("posts row %q, want it to start with %q", posts, want)
	}
	total := tableRow(t, out, "TOTAL")
	if want := []string{"2", "2", "50.0%"}; strings.Join(total[:3], " ") != strings.Join(want, " ") {
		t.Errorf("total row %q, want it to start with %q", total, want)
	}

	var table statsTable
	js := s.cli("stats", "--json").want(t, exitOK).stdout
	if err := json.Unmarshal([]byte(js), &table); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, js)
	}
	if table.Window != "recent" && table.Window != "since_start" {
		t.Errorf("window %q", table.Window)
	}
	if len(table.Routes) != 2 || table.Routes[1].Route != usersRoute || table.Routes[1].Hits != 2 || table.Routes[1].Misses != 1 {
		t.Errorf("routes %+v", table.Routes)
	}
	if r := table.Routes[1].HitRatio; r == nil || *r < 0.66 || *r > 0.67 {
		t.Errorf("users hit ratio %v, want 2/3", r)
	}
	if table.Total.Hits != 2 || table.Total.Misses != 2 {
		t.Errorf("total %+v", table.Total)
	}

	// One route: its row, and a total that is that route's.
	one := s.cli("stats", "--route", usersRoute).want(t, exitOK).stdout
	if strings.Contains(one, postsRoute) || tableRow(t, one, "TOTAL")[0] != "2" {
		t.Errorf("stats --route %s:\n%s", usersRoute, one)
	}
	r := s.cli("stats", "--route", "GET /nope").want(t, exitUsage)
	if !strings.Contains(r.stderr, usersRoute) {
		t.Errorf("an unknown --route should list the routes: %s", r.stderr)
	}
	// --since-start is always the counters since the cache started.
	if out := s.cli("stats", "--since-start").want(t, exitOK).stdout; !strings.Contains(out, "window: since the cache started") {
		t.Errorf("stats --since-start:\n%s", out)
	}
}

func TestInspect(t *testing.T) {
	s := startService(t)
	s.get("/users/7")

	out := squeeze(s.cli("inspect", s.url+"/users/7").want(t, exitOK).stdout)
	for _, want := range []string{"route " + usersRoute, "bucket ", "field ", "entry fresh: served as a hit", "status 200", "age 0s (stored 20", "-byte body and its envelope", "coding gzip"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}

	// Flags after the URL, and --json.
	js := s.cli("inspect", s.url+"/users/7", "--header", "Accept-Language:fr", "--json").want(t, exitOK).stdout
	var in inspection
	if err := json.Unmarshal([]byte(js), &in); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, js)
	}
	if !in.Found || in.State != "fresh" || in.Route != usersRoute || in.BodyBytes <= 0 || in.Stored <= in.BodyBytes || in.Coding != "gzip" {
		t.Errorf("inspect --json: %+v", in)
	}

	out = squeeze(s.cli("inspect", s.url+"/users/8").want(t, exitOK).stdout)
	if !strings.Contains(out, "entry none: the next GET of this URL is a miss") {
		t.Errorf("inspect of an entry not stored:\n%s", out)
	}
	r := s.cli("inspect", s.url+"/nowhere").want(t, exitAdminError)
	if !strings.Contains(r.stderr, "400") || !strings.Contains(r.stderr, "no cached route matches") {
		t.Errorf("inspect of a URL no route matches: %s", r.stderr)
	}
}

func TestPurge(t *testing.T) {
	s := startService(t)
	fill := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			s.get(p)
			s.wantHit(p, true)
		}
	}

	t.Run("url", func(t *testing.T) {
		fill("/users/1", "/users/2")
		out := s.cli("purge", "--url", s.url+"/users/1").want(t, exitOK).stdout
		if want := "purged url " + s.url + "/users/1: 1 bucket removed\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
		s.wantHit("/users/1", false)
		s.wantHit("/users/2", true)
	})

	t.Run("bucket", func(t *testing.T) {
		fill("/users/3", "/users/4")
		out := s.cli("purge", "--route", usersRoute, "--param", "id=3").want(t, exitOK).stdout
		if want := "purged bucket " + usersRoute + " (id=3): 1 bucket removed\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
		s.wantHit("/users/3", false)
		s.wantHit("/users/4", true)
	})

	t.Run("tag", func(t *testing.T) {
		fill("/users/5", "/users/6")
		var answer purgeAnswer
		js := s.cli("purge", "--tag", "user-5", "--json").want(t, exitOK).stdout
		if err := json.Unmarshal([]byte(js), &answer); err != nil {
			t.Fatalf("purge --json: %v\n%s", err, js)
		}
		if answer != (purgeAnswer{Scope: "tag", Target: "user-5", Removed: 1}) {
			t.Errorf("answer %+v", answer)
		}
		s.wantHit("/users/5", false)
		s.wantHit("/users/6", true)
	})

	t.Run("route", func(t *testing.T) {
		fill("/users/10", "/users/11", "/posts/10")
		// Not a terminal and no --yes: refused, nothing purged, and the
		// answer "yes" on the pipe is not read.
		r := runCLI(t, context.Background(), strings.NewReader("yes\n"), s.env(), "purge", "--route", usersRoute).want(t, exitNotConfirmed)
		if !strings.Contains(r.stderr, "--yes") || !strings.Contains(r.stderr, "not a terminal") {
			t.Errorf("stderr %q", r.stderr)
		}
		s.wantHit("/users/10", true)

		// On a terminal, an answer other than "yes" refuses.
		r = runCLI(t, context.Background(), terminal{strings.NewReader("y\n")}, s.env(), "purge", "--route", usersRoute).want(t, exitNotConfirmed)
		if !strings.Contains(r.stderr, "purge every entry of route "+usersRoute+"? type 'yes'") {
			t.Errorf("no question on stderr: %q", r.stderr)
		}
		s.wantHit("/users/10", true)
		// End of input is no answer.
		runCLI(t, context.Background(), terminal{strings.NewReader("")}, s.env(), "purge", "--route", usersRoute).want(t, exitNotConfirmed)
		s.wantHit("/users/10", true)

		// "yes" on the terminal purges every bucket of the route, and
		// only of that route.
		r = runCLI(t, context.Background(), terminal{strings.NewReader("yes\n")}, s.env(), "purge", "--route", usersRoute).want(t, exitOK)
		if !strings.Contains(r.stdout, "purged route "+usersRoute+": ") {
			t.Errorf("stdout %q", r.stdout)
		}
		s.wantHit("/users/10", false)
		s.wantHit("/users/11", false)
		s.wantHit("/posts/10", true)

		// --yes, for scripts.
		fill("/users/12")
		s.cli("purge", "--route", usersRoute, "--yes").want(t, exitOK)
		s.wantHit("/users/12", false)
	})

	t.Run("all", func(t *testing.T) {
		fill("/users/20", "/posts/20")
		r := s.cli("purge", "--all").want(t, exitNotConfirmed)
		if !strings.Contains(r.stderr, "--yes") {
			t.Errorf("stderr %q", r.stderr)
		}
		s.wantHit("/users/20", true)

		var answer purgeAnswer
		js := s.cli("--json", "purge", "--all", "--yes").want(t, exitOK).stdout
		if err := json.Unmarshal([]byte(js), &answer); err != nil {
			t.Fatalf("purge --json: %v\n%s", err, js)
		}
		if answer.Scope != "all" || answer.Removed < 2 {
			t.Errorf("answer %+v, want scope all and at least the two buckets", answer)
		}
		s.wantHit("/users/20", false)
		s.wantHit("/posts/20", false)
	})

	t.Run("unknown route", func(t *testing.T) {
		r := s.cli("purge", "--route", "GET /nope", "--param", "id=1").want(t, exitAdminError)
		if !strings.Contains(r.stderr, "unknown route") {
			t.Errorf("stderr %q", r.stderr)
		}
	})
}

func TestErrors(t *testing.T) {
	s := startService(t)

	t.Run("wrong token", func(t *testing.T) {
		const wrong = "not-the-token-0123456789"
		r := runCLI(t, context.Background(), strings.NewReader(""), map[string]string{"READTHROUGH_ADMIN": s.admin, "READTHROUGH_TOKEN": wrong}, "stats").want(t, exitAdminError)
		if !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "missing or invalid bearer token") {
			t.Errorf("stderr %q", r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, wrong) {
			t.Error("the token was echoed")
		}
	})

	t.Run("no token", func(t *testing.T) {
		r := runCLI(t, context.Background(), strings.NewReader(""), map[string]string{}, "stats", "--addr", s.admin).want(t, exitAdminError)
		if !strings.Contains(r.stderr, "READTHROUGH_TOKEN") {
			t.Errorf("no hint about the token: %q", r.stderr)
		}
	})

	t.Run("flags and token file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Globals before and after the command; no environment.
		runCLI(t, context.Background(), strings.NewReader(""), map[string]string{}, "--addr", strings.TrimSuffix(s.admin, "/"), "stats", "--token-file", file, "--json").want(t, exitOK)
		runCLI(t, context.Background(), strings.NewReader(""), map[string]string{}, "stats", "--addr", s.admin, "--token", testToken).want(t, exitOK)
		// A flag overrides the environment.
		env := map[string]string{"READTHROUGH_ADMIN": "http://127.0.0.1:1/admin/", "READTHROUGH_TOKEN": "wrong-token-0123456789"}
		runCLI(t, context.Background(), strings.NewReader(""), env, "stats", "--addr", s.admin, "--token", testToken).want(t, exitOK)
	})

	t.Run("unreachable", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		addr := closed.URL + "/admin/"
		closed.Close()
		r := runCLI(t, context.Background(), strings.NewReader(""), map[string]string{"READTHROUGH_TOKEN": testToken}, "--addr", addr, "stats").want(t, exitUnreachable)
		if !strings.Contains(r.stderr, "cannot reach the admin API") {
			t.Errorf("stderr %q", r.stderr)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		defer hang.Close()
		r := runCLI(t, context.Background(), strings.NewReader(""), map[string]string{"READTHROUGH_TOKEN": testToken}, "--addr", hang.URL, "--timeout", "50ms", "doctor").want(t, exitUnreachable)
		if !strings.Contains(r.stderr, "no answer within 50ms") {
			t.Errorf("stderr %q", r.stderr)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel() // SIGINT while the call is under way
			<-r.Context().Done()
		}))
		defer hang.Close()
		r := runCLI(t, ctx, strings.NewReader(""), map[string]string{"READTHROUGH_TOKEN": testToken}, "--addr", hang.URL, "inspect", "http://svc/x").want(t, exitInterrupted)
		if r.stderr != "readthrough: interrupted\n" {
			t.Errorf("stderr %q", r.stderr)
		}
	})

	t.Run("not the admin API", func(t *testing.T) {
		// The service's own address by mistake: 404 from its mux.
		runCLI(t, context.Background(), strings.NewReader(""), map[string]string{"READTHROUGH_TOKEN": testToken}, "--addr", s.url, "stats").want(t, exitAdminError)
		// An answer that is not JSON.
		html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }))
		defer html.Close()
		r := runCLI(t, context.Background(), strings.NewReader(""), map[string]string{"READTHROUGH_TOKEN": testToken}, "--addr", html.URL, "stats").want(t, exitUnreachable)
		if !strings.Contains(r.stderr, "check --addr") {
			t.Errorf("stderr %q", r.stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		tests := []struct {
			name string
			give []string
			env  map[string]string
			want string // in stderr
		}{
			{"no command", nil, s.env(), "readthrough: no command given"},
			{"unknown command", []string{"flush"}, s.env(), `unknown command "flush"`},
			{"unknown flag", []string{"purge", "--bogus"}, s.env(), "-bogus"},
			{"unknown global", []string{"--bogus", "stats"}, s.env(), "-bogus"},
			{"no scope", []string{"purge"}, s.env(), "exactly one of"},
			{"two scopes", []string{"purge", "--url", "http://x/users/1", "--all"}, s.env(), "exactly one of"},
			{"param without route", []string{"purge", "--tag", "t", "--param", "id=1"}, s.env(), "--param goes with --route"},
			{"bad param", []string{"purge", "--route", usersRoute, "--param", "id"}, s.env(), "want name=value"},
			{"param twice", []string{"purge", "--route", usersRoute, "--param", "id=1", "--param", "id=2"}, s.env(), "given twice"},
			{"purge argument", []string{"purge", "--all", "--yes", "extra"}, s.env(), "no arguments"},
			{"inspect without URL", []string{"inspect"}, s.env(), "one URL"},
			{"inspect two URLs", []string{"inspect", "http://a/", "http://b/"}, s.env(), "one URL"},
			{"bad header", []string{"inspect", "http://a/", "--header", "nocolon"}, s.env(), "Name:value"},
			{"bad interval", []string{"stats", "--watch", "--interval", "0s"}, s.env(), "--interval"},
			{"bad timeout", []string{"stats", "--timeout", "soon"}, s.env(), "-timeout"},
			{"negative timeout", []string{"stats", "--timeout", "-1s"}, s.env(), "negative"},
			{"no address", []string{"stats"}, map[string]string{"READTHROUGH_TOKEN": testToken}, "READTHROUGH_ADMIN"},
			{"bad address", []string{"stats", "--addr", "ftp://host/admin/"}, s.env(), "http or https"},
			{"token and token file", []string{"stats", "--token", "x", "--token-file", "y"}, s.env(), "not both"},
			{"missing token file", []string{"stats", "--token-file", filepath.Join(t.TempDir(), "none")}, s.env(), "--token-file"},
			{"doctor argument", []string{"doctor", "now"}, s.env(), "no arguments"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := runCLI(t, context.Background(), strings.NewReader(""), tt.env, tt.give...)
				if r.code != exitUsage {
					t.Fatalf("exit code %d, want %d", r.code, exitUsage)
				}
				if !strings.Contains(r.stderr, tt.want) {
					t.Errorf("stderr %q lacks %q", r.stderr, tt.want)
				}
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
			})
		}
	})

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"-h"}, {"help"}, {"purge", "-h"}} {
			r := runCLI(t, context.Background(), strings.NewReader(""), nil, args...).want(t, exitOK)
			if !strings.Contains(r.stdout, "Exit codes:") {
				t.Errorf("%q: no exit codes in the usage", args)
			}
		}
	})
}

// lockedBuffer collects what a stats --watch prints and calls each with
// every table as it is written (one Write per table).
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	tables int
	each   func(n int)
	marker string
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, _ := b.buf.Write(p)
	isTable := strings.Contains(string(p), b.marker)
	if isTable {
		b.tables++
	}
	tables := b.tables
	b.mu.Unlock()
	if isTable {
		b.each(tables)
	}
	return n, nil
}

// ttyWriter is a stdout that passes for a terminal.
type ttyWriter struct{ io.Writer }

func (ttyWriter) Stat() (os.FileInfo, error) { return charDevice{}, nil }

func TestStatsWatch(t *testing.T) {
	s := startService(t)
	s.get("/users/1")

	for _, tt := range []struct {
		name   string
		args   []string
		marker string // in each table's one write
	}{
		{"table", nil, "TOTAL"},
		{"terminal", nil, "TOTAL"},
		{"json", []string{"--json"}, `"window":`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &lockedBuffer{marker: tt.marker}
			out.each = func(n int) {
				switch n {
				case 1:
					s.get("/users/1") // a hit the second table shows
				case 2:
					cancel() // as SIGINT does
				}
			}
			var stderr bytes.Buffer
			args := append([]string{"stats", "--watch", "--interval", "50ms", "--since-start"}, tt.args...)
			env := s.env()
			var stdout io.Writer = out
			if tt.name == "terminal" {
				stdout = ttyWriter{out}
			}
			code := run(ctx, args, strings.NewReader(""), stdout, &stderr, func(k string) string { return env[k] })
			got := out.buf.String()
			t.Logf("stdout:\n%s\nstderr:\n%s", got, stderr.String())
			if code != exitOK {
				t.Fatalf("exit code %d, want 0 on interrupt", code)
			}
			if out.tables != 2 {
				t.Fatalf("%d tables, want 2", out.tables)
			}
			if tt.name == "terminal" {
				// Each table clears the screen first, and none follows
				// another on the screen.
				if n := strings.Count(got, "\x1b[H\x1b[2J"); n != 2 || !strings.HasPrefix(got, "\x1b[H\x1b[2J") || strings.Contains(got, "\n\n") {
					t.Errorf("on a terminal: %d screen clears in %q, want one before each table", n, got)
				}
				return
			}
			if strings.Contains(got, "\x1b[") {
				t.Error("screen control codes written to a stdout that is not a terminal")
			}
			if tt.name == "json" {
				lines := strings.Split(strings.TrimSpace(got), "\n")
				var hits []int64
				for _, line := range lines {
					var table statsTable
					if err := json.Unmarshal([]byte(line), &table); err != nil {
						t.Fatalf("line %q: %v", line, err)
					}
					hits = append(hits, table.Total.Hits)
				}
				if len(hits) != 2 || hits[1] != hits[0]+1 {
					t.Errorf("hits per line %v, want one more in the second", hits)
				}
				return
			}
			tables := strings.Split(got, "\n\n")
			if len(tables) != 2 {
				t.Fatalf("want two tables separated by a blank line, got %d parts", len(tables))
			}
			first, second := tableRow(t, tables[0], usersRoute)[0], tableRow(t, tables[1], usersRoute)[0]
			if first == second {
				t.Errorf("hits %s then %s: the second table should show the hit sent in between", first, second)
			}
		})
	}
}
