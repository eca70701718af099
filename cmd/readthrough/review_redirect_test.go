package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests of this file come from the outside review of the operators'
// tools (2026-12-05): each comment tells what the reviewer found, and the
// test guards the fix.

// TestReviewCLIRedirectLeaksToken: the admin API never redirects, yet the
// CLI's http.Client follows redirects with the default policy, which
// keeps the Authorization header whenever the target's host NAME matches
// (the port and the scheme are ignored: https -> http on the same host
// keeps it too). Whatever answers --addr with a 3xx (a wrong --addr that
// points at a service port, an origin route that redirects, a proxy) gets
// the bearer token delivered to another port of the same host, or in
// clear text. The CLI should refuse redirects (CheckRedirect returning
// http.ErrUseLastResponse or an error), never send the token elsewhere.
func TestReviewCLIRedirectLeaksToken(t *testing.T) {
	const token = "review-secret-token-0123456789"
	var (
		mu   sync.Mutex
		seen []string
	)
	// Another listener on the same host: a different port, a different
	// service, e.g. one an unprivileged user on the machine can bind.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"total": {}, "routes": {}}`))
	}))
	defer other.Close()
	// What --addr points at answers with a redirect to it.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/collect", http.StatusFound)
	}))
	defer redirector.Close()

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--addr", redirector.URL + "/admin/", "--token", token, "stats"},
		strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	mu.Lock()
	defer mu.Unlock()
	for _, got := range seen {
		if strings.Contains(got, token) {
			t.Errorf("the token was sent to %s (another port) after a redirect: Authorization %q (exit %d, stdout %q)",
				other.URL, got, code, stdout.String())
		}
	}
	if len(seen) > 0 {
		t.Errorf("the CLI followed a redirect from the admin address to %s; exit %d (want a refusal, exit 1 or 3)", other.URL, code)
	}
}

// TestReviewCLIRedirectCrossHostDropsToken (holds): to another host name
// (127.0.0.1 -> localhost) Go's client drops Authorization, as
// documented. Kept to show what the fix must not regress.
func TestReviewCLIRedirectCrossHostDropsToken(t *testing.T) {
	const token = "review-secret-token-0123456789"
	var got []string
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"total": {}, "routes": {}}`))
	}))
	defer other.Close()
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+"/collect", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"--addr", redirector.URL + "/admin/", "--token", token, "stats"},
		strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	mu.Lock()
	defer mu.Unlock()
	for _, a := range got {
		if a != "" {
			t.Errorf("cross-host redirect kept Authorization %q", a)
		}
	}
}

// TestReviewCLIRedirectDowngradesToPlainHTTP: --addr https://... and a
// redirect to http:// on the same host name: Go's client keeps the
// Authorization header (it compares host names only), so the token
// crosses the network in clear text although the operator asked for TLS.
// (The test makes the CLI trust httptest's certificate through
// SSL_CERT_FILE, which Go reads once per process: run it on its own.)
func TestReviewCLIRedirectDowngradesToPlainHTTP(t *testing.T) {
	const token = "review-secret-token-0123456789"
	var mu sync.Mutex
	var got []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"total": {}, "routes": {}}`))
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/admin/stats", http.StatusMovedPermanently)
	}))
	defer tlsSrv.Close()
	pemFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", pemFile)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--addr", tlsSrv.URL + "/admin/", "--token", token, "stats"},
		strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
	if strings.Contains(stderr.String(), "certificate") {
		t.Skipf("system roots were loaded before SSL_CERT_FILE was set: %s", stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range got {
		if strings.Contains(a, token) {
			t.Errorf("https --addr redirected to %s: the token went in clear text (Authorization %q, exit %d)", plain.URL, a, code)
		}
	}
}
