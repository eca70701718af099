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

// TestReviewCLIAcceptsAnyJSONAsSuccess: the CLI takes any 2xx JSON object
// as the admin API's answer. When --addr points at something else that
// answers JSON (a service's catch-all, a health endpoint, a gateway's
// {"status":"ok"}), purge reports "purged" and exits 0 although nothing
// was purged, and doctor prints "no problem found" and exits 0 although
// no check ran. doc.go promises exit 3 for "it answered success with
// something that is not its JSON (--addr points elsewhere)"; scripts and
// monitors that rely on the exit code are misled. The CLI should check
// the answer's required fields (purge: "scope" among the known ones and
// "removed"; doctor: "store" and "findings"; stats: "total" and "routes")
// and exit 3 otherwise.
func TestReviewCLIAcceptsAnyJSONAsSuccess(t *testing.T) {
	notAdmin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status": "ok"}`))
	}))
	defer notAdmin.Close()
	for _, args := range [][]string{
		{"purge", "--tag", "user-7"},
		{"purge", "--all", "--yes"},
		{"doctor"},
		{"stats"},
	} {
		var stdout, stderr bytes.Buffer
		argv := append([]string{"--addr", notAdmin.URL + "/admin/", "--token", "0123456789abcdef-review"}, args...)
		code := run(context.Background(), argv, strings.NewReader(""), &stdout, &stderr, func(string) string { return "" })
		if code == exitOK {
			t.Errorf("readthrough %s against a server that is not the admin API: exit 0, stdout %q", strings.Join(args, " "), stdout.String())
		}
	}
}
