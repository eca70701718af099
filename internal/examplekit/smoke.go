// Package examplekit holds the tests' helpers of the runnable examples
// (examples/chi, examples/stdlib): starting an example on free loopback
// ports, the smoke test the README's "Try it" promises, and the checks of
// its admin token. The examples themselves do not import it: each is a
// program a user can copy as it stands.
package examplekit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// DefaultAdminToken is the examples' admin token when ADMIN_TOKEN is unset,
// as each example declares it.
const DefaultAdminToken = "example-admin-token-change-me"

// Start starts an example's run func on loopback ports with the embedded
// Redis, stops it when the test ends, and returns the base URLs of its
// service and of its admin port.
func Start(t *testing.T, run func(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error) (service, admin string) {
	t.Helper()
	t.Setenv("REDIS_URL", "")
	t.Setenv("ADMIN_TOKEN", "")
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ln, adminLn := listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, adminLn, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("example stopped with %v", err)
		}
	})
	return "http://" + ln.Addr().String(), "http://" + adminLn.Addr().String()
}

// Smoke starts an example with [Start] and checks what the README
// promises: the first request to path is a stored miss, the second a fast
// hit with the same body, a purge of the URL through the admin API makes
// the next request a miss again, and /metrics counts the hits.
func Smoke(t *testing.T, run func(ctx context.Context, ln, adminLn net.Listener, log *slog.Logger) error, path string) {
	t.Helper()
	service, admin := Start(t, run)
	url := service + path
	call := func(method, target, body string) (int, http.Header, string, time.Duration) {
		t.Helper()
		req, err := http.NewRequest(method, target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(target, admin) {
			req.Header.Set("Authorization", "Bearer "+DefaultAdminToken)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, string(b), time.Since(start)
	}
	status := func(target string) (string, string, time.Duration) {
		t.Helper()
		code, h, body, took := call("GET", target, "")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", target, code, body)
		}
		return h.Get("Cache-Status"), body, took
	}
	status1, body1, _ := status(url)
	status2, body2, took := status(url)
	if !strings.Contains(status1, "fwd=uri-miss") || !strings.Contains(status1, "stored") {
		t.Errorf("first Cache-Status = %q, want a stored miss", status1)
	}
	if !strings.Contains(status2, "; hit") || body1 != body2 {
		t.Errorf("second Cache-Status = %q (same body: %v), want a hit", status2, body1 == body2)
	}
	if took > 100*time.Millisecond {
		t.Errorf("hit took %v", took)
	}
	if code, _, body, _ := call("POST", admin+"/admin/purge", `{"url": "`+url+`"}`); code != 200 || !strings.Contains(body, `"removed": 1`) {
		t.Errorf("purge: %d %s", code, body)
	}
	if s, _, _ := status(url); strings.Contains(s, "; hit") {
		t.Errorf("after the purge: %q, want a miss", s)
	}
	if code, _, body, _ := call("GET", admin+"/metrics", ""); code != 200 || !strings.Contains(body, "readthrough_hits_total") {
		t.Errorf("metrics: %d %.200s", code, body)
	}
}
