package httpcache

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// FuzzCacheControl: origin Cache-Control, Surrogate-Control and
// Surrogate-Key headers never panic the parsers, and a stored lifetime is
// never negative nor longer than the directives allow.
func FuzzCacheControl(f *testing.F) {
	f.Add("public, max-age=60, s-maxage=120, stale-while-revalidate=30", "max-age=90", "user-1 posts")
	f.Add("no-store", "", "")
	f.Add(`private="Set-Cookie", max-age="10"`, "no-store, max-age=abc", "  a   b ")
	f.Add("max-age=99999999999999999999", "stale-if-error=-1", "x\ty")
	f.Fuzz(func(t *testing.T, cc, sc, sk string) {
		c, err := New(newMemStore(t), WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		rt := &route{cache: c, policy: policy.Policy{HonorOriginCacheControl: true, TTL: time.Minute}.WithDefaults()}
		h := http.Header{"Cache-Control": {cc}, "Surrogate-Control": {sc}, "Surrogate-Key": {sk}}
		d := rt.decide(httptest.NewRequest("GET", "/", nil), 200, h)
		if d.store && (d.fresh < 0 || d.swr < 0 || d.sie < 0 || d.fresh > maxDelta*time.Second) {
			t.Fatalf("decision %+v from %q / %q", d, cc, sc)
		}
		if d.store && hasDirective(cc, "no-store") {
			t.Fatalf("stored despite no-store in %q", cc)
		}
		for _, tag := range surrogateKeys(h) {
			if tag == "" || strings.ContainsAny(tag, " \t\n") {
				t.Fatalf("tag %q from %q", tag, sk)
			}
		}
		acceptsCoding([]string{cc}, "gzip")
	})
}

// hasDirective reports whether the Cache-Control value cc plainly holds
// the directive name: a comma-separated element whose name (before any
// "=") is name, in ASCII case-insensitively. Values with quotes are not judged (a
// quoted string may hold commas and the name), nor are names that only
// contain name ("0no-store" is another, unknown, directive).
func hasDirective(cc, name string) bool {
	if strings.Contains(cc, `"`) {
		return false
	}
	for _, d := range strings.Split(cc, ",") {
		n, _, _ := strings.Cut(d, "=")
		// ASCII case only, as HTTP compares tokens (EqualFold would also
		// fold "ſ" to "s").
		if asciiLower(strings.TrimSpace(n)) == name {
			return true
		}
	}
	return false
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzAdminPurge: no request body makes the admin handler panic or answer
// anything but 200, 400 or 502, always with a JSON body.
func FuzzAdminPurge(f *testing.F) {
	f.Add(`{"route": "GET /users/{id}", "params": {"id": "15"}}`)
	f.Add(`{"url": "http://h/users/15?x=1"}`)
	f.Add(`{"tag": "t"}`)
	f.Add(`{"all": true}`)
	f.Add(`{"route": "GET /users/{id}", "params": null}`)
	f.Add(`{"params": {}}`)
	f.Fuzz(func(t *testing.T, body string) {
		c, err := New(newMemStore(t), WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		c.MustRoute("GET /users/{id}", policy.Policy{})
		h, err := c.AdminHandler(WithAdminToken("t", testToken), WithAdminLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/purge", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 502:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("non-JSON answer %q", w.Body)
		}
	})
}
