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

// Smoke starts an example's run func on a loopback port with the embedded
// Redis and checks what its doc comment promises: the first request to path
// is a stored miss that pays the origin's time, the second a fast hit with
// the same body. It stops the example afterwards.
func Smoke(t *testing.T, run func(context.Context, net.Listener, *slog.Logger) error, path string) {
	t.Helper()
	t.Setenv("REDIS_URL", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("example stopped with %v", err)
		}
	})
	url := "http://" + ln.Addr().String() + path
	get := func() (string, string, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return resp.Header.Get("Cache-Status"), string(body), time.Since(start)
	}
	status1, body1, _ := get()
	status2, body2, took := get()
	if !strings.Contains(status1, "fwd=uri-miss") || !strings.Contains(status1, "stored") {
		t.Errorf("first Cache-Status = %q, want a stored miss", status1)
	}
	if !strings.Contains(status2, "; hit") || body1 != body2 {
		t.Errorf("second Cache-Status = %q (same body: %v), want a hit", status2, body1 == body2)
	}
	if took > 100*time.Millisecond {
		t.Errorf("hit took %v", took)
	}
}
