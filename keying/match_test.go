package keying

import (
	"net/http/httptest"
	"testing"

	"github.com/readthrough/readthrough/policy"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern    string
		give       string
		method     string
		wantOK     bool
		wantParams map[string]string
	}{
		{"GET /users/{id}", "http://h/users/15", "GET", true, map[string]string{"id": "15"}},
		{"GET /users/{id}", "http://h/users/15", "HEAD", true, map[string]string{"id": "15"}},
		{"GET /users/{id}", "http://h/users/15", "POST", false, nil},
		{"GET /users/{id}", "http://h/users/15/x", "GET", false, nil},
		{"/users/{id}/posts", "http://h/users/7/posts", "GET", true, map[string]string{"id": "7"}},
		{"/files/{path...}", "http://h/files/a/b/c", "GET", true, map[string]string{"path": "a/b/c"}},
		{"/files/*", "http://h/files/a/b", "GET", true, map[string]string{"*": "a/b"}},
		{"/users/{id:[0-9]+}", "http://h/users/12", "GET", true, map[string]string{"id": "12"}},
		{"/users/{id:[0-9]+}", "http://h/users/ab", "GET", false, nil},
		{"/users/{id:[0-9]{2}}", "http://h/users/12", "GET", true, map[string]string{"id": "12"}},
		{"/exact/{$}", "http://h/exact/", "GET", true, nil},
		{"/exact/{$}", "http://h/exact/more", "GET", false, nil},
		{"/static/", "http://h/static/css/a.css", "GET", true, nil},
		{"example.com/x/{id}", "http://example.com/x/1", "GET", true, map[string]string{"id": "1"}},
		{"example.com/x/{id}", "http://other.com/x/1", "GET", false, nil},
		{"/a.b/{id}", "http://h/aXb/1", "GET", false, nil},
		{"/users/{id}", "http://h/users/%7B1%7D", "GET", true, map[string]string{"id": "{1}"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.give, func(t *testing.T) {
			rt, err := Compile(tt.pattern, policy.Policy{})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tt.method, tt.give, nil)
			if got := rt.Match(r); got != tt.wantOK {
				t.Fatalf("Match = %v, want %v", got, tt.wantOK)
			}
			for name, want := range tt.wantParams {
				if got := r.PathValue(name); got != want {
					t.Errorf("PathValue(%q) = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestSpecificity(t *testing.T) {
	a, _ := Compile("/users/{id}", policy.Policy{})
	b, _ := Compile("/users/me", policy.Policy{})
	c, _ := Compile("/users/{rest...}", policy.Policy{})
	if !(b.Specificity() > a.Specificity() && a.Specificity() > c.Specificity()) {
		t.Errorf("specificity me=%d {id}=%d {rest...}=%d", b.Specificity(), a.Specificity(), c.Specificity())
	}
}

// A ServeMux host pattern ranks before the same path without a host, as
// ServeMux routes them.
func TestSpecificityHost(t *testing.T) {
	host := mustCompile(t, "GET svc.example/items/{id}", policy.Policy{})
	plain := mustCompile(t, "GET /items/{id}", policy.Policy{})
	longer := mustCompile(t, "GET /items/{id}/and/more/literal/text", policy.Policy{})
	if !(host.Specificity() > plain.Specificity() && host.Specificity() > longer.Specificity()) {
		t.Errorf("specificity host=%d plain=%d longer=%d", host.Specificity(), plain.Specificity(), longer.Specificity())
	}
}
