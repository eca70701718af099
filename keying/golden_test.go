package keying

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/readthrough/readthrough/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/keys.golden")

// TestGolden pins the keys of representative requests, so that a change to
// the bucket or field format is seen in review (and comes with a new
// formatVersion). Regenerate with: go test ./keying -update
func TestGolden(t *testing.T) {
	vary := policy.Policy{Vary: []string{"Accept-Encoding", "Accept-Language"}}
	tests := []struct {
		name    string
		router  string
		pattern string
		policy  policy.Policy
		give    reqSpec
	}{
		{name: "stdlib user", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "/users/15"}},
		{name: "stdlib user HEAD", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{method: "HEAD", target: "/users/15", host: "EXAMPLE.com"}},
		{name: "stdlib user query", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "/users/15?b=2&a=1&a=0"}},
		{name: "stdlib user query reordered", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "/users/15?a=1&a=0&b=2"}},
		{name: "stdlib https", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "https://example.com/users/15"}},
		{name: "stdlib long value", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "/users/" + strings.Repeat("a", 200)}},
		{name: "stdlib host", router: stdlib, pattern: "example.com/x/{id}", give: reqSpec{target: "/x/1", host: "example.com:8080"}},
		{name: "stdlib rest", router: stdlib, pattern: "GET /files/{path...}", give: reqSpec{target: "/files/a/b%7Cc.txt"}},
		{name: "stdlib end anchor", router: stdlib, pattern: "GET /users/{id}/{$}", give: reqSpec{target: "/users/15/"}},
		{name: "stdlib subtree", router: stdlib, pattern: "GET /static/", give: reqSpec{target: "/static/css/site.css"}},
		{name: "stdlib unicode", router: stdlib, pattern: "GET /users/{id}", give: reqSpec{target: "/users/%C3%A9t%C3%A9"}},
		{name: "stdlib field param", router: stdlib, pattern: "GET /users/{id}/posts/{post}",
			policy: policy.Policy{BucketParams: []string{"id"}}, give: reqSpec{target: "/users/15/posts/7"}},
		{name: "stdlib allow list", router: stdlib, pattern: "GET /search",
			policy: policy.Policy{QueryParams: []string{"q", "page"}}, give: reqSpec{target: "/search?utm_source=x&page=2&q=go+cache"}},
		{name: "stdlib ignore query", router: stdlib, pattern: "GET /search",
			policy: policy.Policy{IgnoreQuery: true}, give: reqSpec{target: "/search?q=anything"}},
		{name: "stdlib vary", router: stdlib, pattern: "GET /users/{id}", policy: vary,
			give: reqSpec{target: "/users/15", header: http.Header{"Accept-Encoding": {"gzip, br"}, "Accept-Language": {""}}}},
		{name: "stdlib vary missing", router: stdlib, pattern: "GET /users/{id}", policy: vary,
			give: reqSpec{target: "/users/15", header: http.Header{"Accept-Encoding": {"gzip, br"}}}},
		{name: "chi user", router: chiR, pattern: "/users/{id}", give: reqSpec{target: "/users/15"}},
		{name: "chi regex", router: chiR, pattern: "/n/{id:[0-9]{3}}", give: reqSpec{target: "/n/123?x=1"}},
		{name: "chi wildcard", router: chiR, pattern: "/files/*", give: reqSpec{target: "/files/a/b.txt"}},
		{name: "chi encoded", router: chiR, pattern: "/users/{id}", give: reqSpec{target: "/users/a%2Fb"}},
		{name: "chi two params", router: chiR, pattern: "/users/{id}/posts/{post}", give: reqSpec{target: "/users/15/posts/7"}},
	}
	var buf bytes.Buffer
	buf.WriteString("# Keys of representative requests. Regenerate with: go test ./keying -update\n")
	for _, tt := range tests {
		rt := mustCompile(t, tt.pattern, tt.policy)
		k := serve(t, tt.router, rt, tt.give).key
		method := tt.give.method
		if method == "" {
			method = "GET"
		}
		fmt.Fprintf(&buf, "\n%s\n", tt.name)
		fmt.Fprintf(&buf, "\troute   %s %q%s\n", tt.router, tt.pattern, describePolicy(tt.policy))
		fmt.Fprintf(&buf, "\trequest %s %s%s", method, tt.give.target, describeHeader(tt.give))
		fmt.Fprintf(&buf, "\n\tbucket  %q\n\tfield   %s\n", k.Bucket, k.FieldHex())
	}

	path := filepath.Join("testdata", "keys.golden")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./keying -update to create it)", err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("keys differ from %s (if intended, bump formatVersion and run go test ./keying -update):\n%s",
			path, lineDiff(string(want), got))
	}
}

func describePolicy(p policy.Policy) string {
	var parts []string
	if len(p.BucketParams) > 0 {
		parts = append(parts, fmt.Sprintf("BucketParams=%q", p.BucketParams))
	}
	if len(p.QueryParams) > 0 {
		parts = append(parts, fmt.Sprintf("QueryParams=%q", p.QueryParams))
	}
	if p.IgnoreQuery {
		parts = append(parts, "IgnoreQuery")
	}
	if len(p.Vary) > 0 {
		parts = append(parts, fmt.Sprintf("Vary=%q", p.Vary))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func describeHeader(q reqSpec) string {
	var s string
	if q.host != "" {
		s += " Host=" + q.host
	}
	for _, k := range []string{"Accept-Encoding", "Accept-Language"} {
		if v, ok := q.header[k]; ok {
			s += fmt.Sprintf(" %s=%q", k, v)
		}
	}
	return s
}

// lineDiff lists the lines that differ between want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
