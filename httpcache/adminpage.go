package httpcache

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // the admin page
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
)

// The admin page: one self-contained HTML file (inline CSS and script, no
// other asset, no build step) that the admin handler serves without a
// token, since a browser cannot send one on navigation. It holds no data:
// it asks for the token, keeps it in the tab's session storage, and sends
// it with every call to the endpoints beside it. Its Content-Security-Policy
// admits only its own inline style and script, by their SHA-256, computed
// here from the embedded file so that an edit of the page cannot leave a
// stale hash behind.

//go:embed admin.html
var adminPage []byte

// adminPageCSP is the page's Content-Security-Policy: nothing but its own
// inline blocks and calls to its own origin; no framing, no form posts,
// no <base>, and Trusted Types required, so that even a mistaken
// innerHTML in the page would throw instead of parsing server data.
var adminPageCSP = "default-src 'none'" +
	"; script-src " + inlineHash(adminPage, "<script>", "</script>") +
	"; style-src " + inlineHash(adminPage, "<style>", "</style>") +
	"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" +
	"; require-trusted-types-for 'script'"

// inlineHash returns the CSP source of the one block of page between open
// and close: 'sha256-<base64 of its digest>'. It panics if the page does
// not have exactly one such block (the page is embedded: a test sees it).
func inlineHash(page []byte, open, close string) string {
	start := bytes.Index(page, []byte(open))
	if start < 0 || bytes.Count(page, []byte(open)) != 1 {
		panic("httpcache: the admin page needs exactly one " + open + " block")
	}
	body := page[start+len(open):]
	end := bytes.Index(body, []byte(close))
	if end < 0 {
		panic("httpcache: the admin page's " + open + " block is not closed")
	}
	sum := sha256.Sum256(body[:end])
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// adminEndpoints are the endpoints of the admin API, by last path element.
var adminEndpoints = map[string]bool{"purge": true, "stats": true, "inspect": true, "doctor": true}

// isAdminPage reports whether path asks for the admin page: its last
// element is "ui", or it ends in "/" after an element that names no
// endpoint (the mount point itself: /admin/, or "" once
// http.StripPrefix took "/admin/" off). The page calls its sibling
// endpoints by relative URLs, which resolve beside either form.
func isAdminPage(path string) bool {
	if path == "" || path == "/" {
		return true // the mount point, under http.StripPrefix("/admin/", h) or at the root
	}
	trimmed := strings.TrimSuffix(path, "/")
	last := trimmed[strings.LastIndexByte(trimmed, '/')+1:]
	if last == "ui" {
		return true
	}
	return strings.HasSuffix(path, "/") && !adminEndpoints[last]
}

// servePage sends the admin page with its security headers.
func servePage(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(adminPage)))
	h.Set("Content-Security-Policy", adminPageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(adminPage) //nolint:errcheck // the client went away
	}
}
