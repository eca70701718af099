package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
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
// crossed the network in clear text although the operator asked for TLS.
// The CLI's client is given a transport that trusts httptest's
// certificate (rather than SSL_CERT_FILE, which Go reads once per
// process), and must refuse the redirect.
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
	base, err := url.Parse(tlsSrv.URL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(base, token, 5*time.Second)
	c.http.Transport = tlsSrv.Client().Transport // trusts the test certificate
	var answer statsAnswer
	_, err = c.get(context.Background(), "stats", nil, &answer)
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("an https admin address that redirects to http: %v, want the redirect refused", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range got {
		if strings.Contains(a, token) {
			t.Errorf("https --addr redirected to %s: the token went in clear text (Authorization %q)", plain.URL, a)
		}
	}
}
