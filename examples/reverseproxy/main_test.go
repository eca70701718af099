package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startProxy runs the proxy in front of upstream and returns its URL.
func startProxy(t *testing.T, upstream string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{addr: "127.0.0.1:0", upstream: upstream}, slog.New(slog.DiscardHandler), func(a string) { addr <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not start")
	}
	return ""
}

func get(t *testing.T, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func isHit(resp *http.Response) bool {
	return strings.Contains(resp.Header.Get("Cache-Status"), "; hit")
}

// The proxy caches what the upstream's headers allow, varies as it says,
// answers ranges from the stored response, and serves a stale response
// the upstream allows when the upstream is gone.
func TestProxyCachesAsTheUpstreamSays(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/doc":
			w.Header().Set("Cache-Control", "max-age=1, stale-if-error=60")
			w.Header().Set("ETag", `"d1"`)
			fmt.Fprint(w, "0123456789")
		case "/lang":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept-Language")
			fmt.Fprintf(w, "%s %d", r.Header.Get("Accept-Language"), n)
		case "/private":
			w.Header().Set("Cache-Control", "private, max-age=60")
			fmt.Fprint(w, "mine")
		}
	}))
	proxy := startProxy(t, up.URL)

	if resp, body := get(t, proxy+"/doc"); isHit(resp) || body != "0123456789" {
		t.Fatalf("first GET: %q (%s), want a miss", body, resp.Header.Get("Cache-Status"))
	}
	if resp, body := get(t, proxy+"/doc"); !isHit(resp) || body != "0123456789" || calls.Load() != 1 {
		t.Fatalf("second GET: %q (%s), %d upstream calls; want a hit", body, resp.Header.Get("Cache-Status"), calls.Load())
	}
	if resp, body := get(t, proxy+"/doc", "Range", "bytes=2-3"); resp.StatusCode != http.StatusPartialContent || body != "23" {
		t.Errorf("range: %d %q, want 206 \"23\"", resp.StatusCode, body)
	}

	_, a1 := get(t, proxy+"/lang", "Accept-Language", "en")
	_, b1 := get(t, proxy+"/lang", "Accept-Language", "fr")
	resp, a2 := get(t, proxy+"/lang", "Accept-Language", "en")
	if a1 != a2 || a1 == b1 || !isHit(resp) {
		t.Errorf("vary: en %q then %q (%s), fr %q; want en served its own stored answer", a1, a2, resp.Header.Get("Cache-Status"), b1)
	}

	before := calls.Load()
	get(t, proxy+"/private")
	if resp, _ := get(t, proxy+"/private"); isHit(resp) || calls.Load() != before+2 {
		t.Errorf("private: stored by the shared cache (%s)", resp.Header.Get("Cache-Status"))
	}

	up.Close() // the upstream is gone: 502 from the proxy, covered by stale-if-error
	time.Sleep(1100 * time.Millisecond)
	if resp, body := get(t, proxy+"/doc"); resp.StatusCode != 200 || body != "0123456789" {
		t.Errorf("upstream down: %d %q (%s), want the stale response", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
}

// With no UPSTREAM the proxy serves its demo upstream.
func TestProxyDemoUpstream(t *testing.T) {
	proxy := startProxy(t, "")
	_, first := get(t, proxy+"/time")
	resp, second := get(t, proxy+"/time")
	if first != second || !isHit(resp) {
		t.Errorf("demo /time: %q then %q (%s), want a hit", first, second, resp.Header.Get("Cache-Status"))
	}
}

func TestProxyRefusesBadConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, cfg := range []config{
		{addr: "127.0.0.1:0", upstream: "not a url"},
		{addr: "127.0.0.1:0", upstream: "http://127.0.0.1:1", adminToken: "short"},
	} {
		if err := run(t.Context(), cfg, log); err == nil {
			t.Errorf("run(%+v) = nil, want an error", cfg)
		}
	}
}
