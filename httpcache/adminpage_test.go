package httpcache

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestAdminPageRouting checks which paths serve the admin page (without a
// token) and that every other path still needs the token.
func TestAdminPageRouting(t *testing.T) {
	f := newAdminFixture(t)
	noToken := []string{"Authorization", ""}
	tests := []struct {
		name       string
		method     string
		path       string
		headers    []string
		wantStatus int
		wantPage   bool
	}{
		{"mount root", "GET", "/admin/", noToken, 200, true},
		{"ui", "GET", "/admin/ui", noToken, 200, true},
		{"ui slash", "GET", "/admin/ui/", noToken, 200, true},
		{"root with a wrong token", "GET", "/admin/", []string{"Authorization", "Bearer wrong-wrong-wrong-wrong"}, 200, true},
		{"head", "HEAD", "/admin/", noToken, 200, false},
		{"post to the page", "POST", "/admin/", noToken, 405, false},
		{"stats needs the token", "GET", "/admin/stats", noToken, 401, false},
		{"stats slash needs the token", "GET", "/admin/stats/", noToken, 401, false},
		{"inspect needs the token", "GET", "/admin/inspect?url=http://example.com/items/1", noToken, 401, false},
		{"purge needs the token", "POST", "/admin/purge", noToken, 401, false},
		{"doctor needs the token", "GET", "/admin/doctor/", noToken, 401, false},
		{"unknown needs the token", "GET", "/admin/nope", noToken, 401, false},
		{"unknown with the token", "GET", "/admin/nope", nil, 404, false},
		{"stats with the token", "GET", "/admin/stats/", nil, 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.call(tt.method, tt.path, "", tt.headers...)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.body)
			}
			isPage := strings.HasPrefix(got.body, "<!doctype html>")
			if isPage != tt.wantPage {
				t.Errorf("page served = %v, want %v", isPage, tt.wantPage)
			}
			if got.status == 200 && strings.HasPrefix(got.header.Get("Content-Type"), "text/html") {
				if got.header.Get("Content-Security-Policy") == "" {
					t.Error("no Content-Security-Policy")
				}
			} else if got.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("JSON answer without nosniff: %v", got.header)
			}
		})
	}
}

// TestAdminPageHeaders checks the page's security headers, and that its
// CSP admits exactly its own inline style and script by hash.
func TestAdminPageHeaders(t *testing.T) {
	f := newAdminFixture(t)
	got := f.call("GET", "/admin/", "", "Authorization", "")
	for name, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
	} {
		if v := got.header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	csp := got.header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	hash := func(block string) string {
		m := regexp.MustCompile(`(?s)<`+block+`>(.*?)</`+block+`>`).FindAllStringSubmatch(got.body, -1)
		if len(m) != 1 {
			t.Fatalf("%d <%s> blocks, want 1", len(m), block)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	for name, want := range map[string]string{
		"default-src":               "'none'",
		"script-src":                hash("script"),
		"style-src":                 hash("style"),
		"connect-src":               "'self'",
		"img-src":                   "data:",
		"base-uri":                  "'none'",
		"form-action":               "'none'",
		"frame-ancestors":           "'none'",
		"require-trusted-types-for": "'script'",
	} {
		if directives[name] != want {
			t.Errorf("CSP %s = %q, want %q (CSP %q)", name, directives[name], want, csp)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows something unsafe: %q", csp)
	}
}

// TestAdminPageIsSelfContained checks that the page loads nothing from
// elsewhere, has no inline event handlers or style attributes (which its
// CSP would block), and never parses strings as HTML.
func TestAdminPageIsSelfContained(t *testing.T) {
	page := string(adminPage)
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\s(src|href|action)\s*=\s*"(?:https?:)?//`),
		regexp.MustCompile(`(?i)<script[^>]*\ssrc=`),
		regexp.MustCompile(`(?i)<link[^>]*stylesheet`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`),
		regexp.MustCompile(`localStorage|document\.cookie`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("the page has %q (%s)", m, bad)
		}
	}
	for _, want := range []string{"sessionStorage", "'Authorization': 'Bearer '", "api('stats')", "api('doctor')", "api('purge', 'POST'"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

func TestIsAdminPage(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"/", true},
		{"/admin/", true},
		{"/ops/admin/", true},
		{"/admin/ui", true},
		{"ui", true},
		{"", true}, // the mount point under http.StripPrefix("/admin/", h)
		{"/admin", false},
		{"/admin/stats", false},
		{"/admin/stats/", false},
		{"/admin/purge/", false},
		{"/admin/doctor/", false},
		{"/admin/uix", false},
	}
	for _, tt := range tests {
		if got := isAdminPage(tt.give); got != tt.want {
			t.Errorf("isAdminPage(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

var _ http.Handler = (*admin)(nil)
