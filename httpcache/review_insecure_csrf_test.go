package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The tests of this file come from the outside review of the operators'
// tools (2026-12-05): each comment tells what the reviewer found, and the
// test guards the fix.

// TestReviewInsecureAdminCrossSiteRequests: WithInsecureAdmin is "only for
// development on a loopback-only listener", but a loopback listener is
// reachable by every web page the developer's browser opens. The handler
// reads a purge body as JSON whatever its Content-Type and checks neither
// Origin nor Sec-Fetch-Site nor Host, so:
//
//   - a cross-site page's fetch(url, {method: "POST", mode: "no-cors",
//     body: '{"all": true}'}) is a "simple" request (text/plain, no
//     preflight) and purges everything;
//   - after DNS rebinding (Host: attacker name), the attacker's page reads
//     stats and inspect answers.
//
// The request below is exactly what a browser sends for such a fetch.
func TestReviewInsecureAdminCrossSiteRequests(t *testing.T) {
	f := newAdminFixture(t)
	admin, err := f.cache.AdminHandler(WithInsecureAdmin())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/admin", admin))
	defer srv.Close()
	f.warm(t, "/items/1")

	req, _ := http.NewRequest("POST", srv.URL+"/admin/purge", strings.NewReader(`{"all": true}`))
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Mode", "no-cors")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a cross-site text/plain POST purged: %d %s", resp.StatusCode, body)
	}
	if !f.hit("/items/1") {
		t.Errorf("the entry is gone: a page on any site the developer visits can purge the cache")
	}

	// DNS rebinding: the attacker's name resolves to 127.0.0.1; the page
	// is then same-origin with the admin API and reads its answers.
	req, _ = http.NewRequest("GET", srv.URL+"/admin/stats", nil)
	req.Host = "rebind.evil.example:9090"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("stats answered 200 to Host %q (DNS rebinding)", req.Host)
	}
}
