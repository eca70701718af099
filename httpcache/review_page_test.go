package httpcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The tests of this file come from the outside review of the operators'
// tools (2026-12-05): each comment tells what the reviewer found, and the
// test guards the fix.

// TestReviewPageUnderStripPrefixWithSlash: http.StripPrefix("/admin/", h)
// is as common a mount as StripPrefix("/admin", h) (the test fixture's),
// but then the mount root /admin/ reaches the handler as "" and
// isAdminPage(""), which looks for a trailing "/", says no: the operator
// who opens http://host/admin/ (the README's URL) gets a JSON 401 instead
// of the page. Only .../ui works. isAdminPage should treat "" (and "/")
// as the mount root.
func TestReviewPageUnderStripPrefixWithSlash(t *testing.T) {
	f := newAdminFixture(t)
	admin, err := f.cache.AdminHandler(WithAdminToken("ops", testToken))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin/", admin))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{"/admin/ui", "/admin/"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "<!doctype html>") {
			t.Errorf("GET %s under StripPrefix(\"/admin/\"): %d %.80q, want the page", p, resp.StatusCode, body)
		}
	}
}

// TestReviewPageTokenInputHasName (defence in depth): the sign-in form has
// no method or action, so it submits with GET to the page's own URL, and
// its password input has name="token". Only the script's preventDefault
// and the CSP's form-action 'none' stand between pressing Enter and
// "GET /admin/?token=<secret>" landing in the browser history, proxy and
// access logs: a page whose script does not run and whose CSP header a
// proxy dropped or rewrote (some CDNs do) leaks the token into a URL. The
// input needs no name (the script reads it by id), and method="post"
// would keep it out of URLs even then.
func TestReviewPageTokenInputHasName(t *testing.T) {
	if m := regexp.MustCompile(`<input[^>]*type="password"[^>]*\bname=`).Find(adminPage); m != nil {
		t.Errorf("the token input is submittable with the form (GET, into the URL): %s", m)
	}
}
