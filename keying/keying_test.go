package keying

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/policy"
)

func TestParamNames(t *testing.T) {
	tests := []struct {
		give    string
		want    []string
		wantErr string // substring of the error; empty for success
	}{
		{give: "/", want: nil},
		{give: "/users", want: nil},
		{give: "/users/{id}", want: []string{"id"}},
		{give: "GET /users/{id}", want: []string{"id"}},
		{give: "GET\t/users/{id}", want: []string{"id"}},
		{give: "example.com/x/{id}", want: []string{"id"}},
		{give: "GET example.com/x/{id}/{rest...}", want: []string{"id", "rest"}},
		{give: "/users/{id}/{$}", want: []string{"id"}},
		{give: "/files/{path...}", want: []string{"path"}},
		{give: "/users/{id:[0-9]+}", want: []string{"id"}},
		{give: "/n/{id:[0-9]{3}}/{slug}", want: []string{"id", "slug"}},
		{give: "/x/{re:a{1,2}b{3}}", want: []string{"re"}},
		{give: "/x/{re:[a ]+}", want: []string{"re"}},
		{give: "/posts/{year}-{month}.{fmt}", want: []string{"year", "month", "fmt"}},
		{give: "/files/*", want: []string{"*"}},
		{give: "/api/{version}/*", want: []string{"version", "*"}},
		{give: "/é/{naïve}", want: []string{"naïve"}},

		{give: "", wantErr: "empty pattern"},
		{give: "users", wantErr: "missing '/'"},
		{give: "/users/{id", wantErr: "unbalanced '{'"},
		{give: "/users/id}", wantErr: "unbalanced '}'"},
		{give: "/users/{id}}", wantErr: "unbalanced '}'"},
		{give: "/n/{id:[0-9]{3}", wantErr: "unbalanced '{'"},
		{give: "/users/{}", wantErr: "empty parameter name"},
		{give: "/users/{:[0-9]+}", wantErr: "empty parameter name"},
		{give: "/files/{...}", wantErr: "empty parameter name"},
		{give: "/users/{a{b}}", wantErr: "malformed parameter name"},
		{give: "/users/{id}/{id}", wantErr: `duplicate parameter name "id"`},
		{give: "/users/{id:[0-9]+}/{id}", wantErr: `duplicate parameter name "id"`},
		{give: "/a/{$}/b", wantErr: "{$} must end"},
		{give: "/a{$}", wantErr: "{$} must end"},
		{give: "/a/{rest...}/b", wantErr: "must end the pattern"},
		{give: "{host}/x", wantErr: "brace before the path"},
		{give: " /x", wantErr: "empty method"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := ParamNames(tt.give)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParamNames(%q) error = %v, want one containing %q", tt.give, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.give)) {
					t.Errorf("error %q does not name the pattern", err)
				}
				if _, cerr := Compile(tt.give, policy.Policy{}); cerr == nil {
					t.Errorf("Compile(%q) succeeded, want an error", tt.give)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParamNames(%q): %v", tt.give, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParamNames(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

// fieldErrors returns every *policy.FieldError in err's tree.
func fieldErrors(err error) []*policy.FieldError {
	var out []*policy.FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*policy.FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name        string
		givePattern string
		givePolicy  policy.Policy
		wantFields  []string // the FieldError fields, in order
		wantMsg     string   // substring of the error
	}{
		{
			name:        "unknown bucket param",
			givePattern: "GET /users/{id}",
			givePolicy:  policy.Policy{BucketParams: []string{"user"}},
			wantFields:  []string{"BucketParams"},
			wantMsg:     `"user" is not a path parameter of the pattern (it has "id")`,
		},
		{
			name:        "bucket param on a route without params",
			givePattern: "/about",
			givePolicy:  policy.Policy{BucketParams: []string{"id"}},
			wantFields:  []string{"BucketParams"},
			wantMsg:     "it has none",
		},
		{
			name:        "chi regex name",
			givePattern: "/users/{id:[0-9]+}",
			givePolicy:  policy.Policy{BucketParams: []string{"id:[0-9]+"}},
			wantFields:  []string{"BucketParams"},
		},
		{
			name:        "invalid policy",
			givePattern: "/users/{id}",
			givePolicy:  policy.Policy{LockWait: -1, IgnoreQuery: true, QueryParams: []string{"a"}},
			wantFields:  []string{"LockWait", "QueryParams"},
		},
		{
			name:        "duplicate bucket param reported once",
			givePattern: "/users/{id}",
			givePolicy:  policy.Policy{BucketParams: []string{"id", "id"}},
			wantFields:  []string{"BucketParams"},
			wantMsg:     "duplicate",
		},
		{
			name:        "invalid vary and unknown bucket param",
			givePattern: "/users/{id}",
			givePolicy:  policy.Policy{Vary: []string{"Bad Header"}, BucketParams: []string{"x"}},
			wantFields:  []string{"Vary", "BucketParams"},
		},
		{
			name:        "malformed pattern and invalid policy",
			givePattern: "/users/{id",
			givePolicy:  policy.Policy{LockWait: -1},
			wantFields:  []string{"LockWait"},
			wantMsg:     "unbalanced",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := Compile(tt.givePattern, tt.givePolicy)
			if err == nil {
				t.Fatalf("Compile = %v, want an error", rt)
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v holds no *policy.FieldError", err)
			}
			if fe.Route != tt.givePattern {
				t.Errorf("FieldError.Route = %q, want %q", fe.Route, tt.givePattern)
			}
			var fields []string
			for _, fe := range fieldErrors(err) {
				fields = append(fields, fe.Field)
				if fe.Route != tt.givePattern {
					t.Errorf("FieldError %v: Route = %q, want %q", fe, fe.Route, tt.givePattern)
				}
			}
			if !slices.Equal(fields, tt.wantFields) {
				t.Errorf("fields = %q, want %q (error: %v)", fields, tt.wantFields, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.givePattern) {
				t.Errorf("error %q does not name the route", err)
			}
		})
	}
}

func TestKeyBucket(t *testing.T) {
	tests := []struct {
		name        string
		router      string
		givePattern string
		givePolicy  policy.Policy
		give        reqSpec
		wantBucket  string
	}{
		{
			name: "stdlib", router: stdlib, givePattern: "GET /users/{id}",
			give: reqSpec{target: "/users/15"}, wantBucket: "GET /users/%7Bid%7D|15",
		},
		{
			name: "chi", router: chiR, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/15"}, wantBucket: "/users/%7Bid%7D|15",
		},
		{
			name: "chi regex", router: chiR, givePattern: "/users/{id:[0-9]+}",
			give: reqSpec{target: "/users/15"}, wantBucket: "/users/%7Bid:[0-9]+%7D|15",
		},
		{
			name: "chi regex with braces", router: chiR, givePattern: "/n/{id:[0-9]{3}}",
			give: reqSpec{target: "/n/123"}, wantBucket: "/n/%7Bid:[0-9]%7B3%7D%7D|123",
		},
		{
			name: "chi params inside a segment", router: chiR, givePattern: "/posts/{year}-{slug}",
			give: reqSpec{target: "/posts/2024-hello"}, wantBucket: "/posts/%7Byear%7D-%7Bslug%7D|2024|hello",
		},
		{
			name: "chi wildcard", router: chiR, givePattern: "/files/*",
			give: reqSpec{target: "/files/a/b.txt"}, wantBucket: "/files/*|a/b.txt",
		},
		{
			name: "stdlib rest wildcard", router: stdlib, givePattern: "/files/{path...}",
			give: reqSpec{target: "/files/a/b.txt"}, wantBucket: "/files/%7Bpath...%7D|a/b.txt",
		},
		{
			name: "stdlib host pattern", router: stdlib, givePattern: "example.com/x/{id}",
			give: reqSpec{target: "/x/7"}, wantBucket: "example.com/x/%7Bid%7D|7",
		},
		{
			name: "stdlib end anchor", router: stdlib, givePattern: "GET /users/{id}/{$}",
			give: reqSpec{target: "/users/15/"}, wantBucket: "GET /users/%7Bid%7D/%7B$%7D|15",
		},
		{
			name: "stdlib unicode", router: stdlib, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/%C3%A9t%C3%A9"}, wantBucket: "/users/%7Bid%7D|été",
		},
		{
			name: "chi unicode", router: chiR, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/%C3%A9t%C3%A9"}, wantBucket: "/users/%7Bid%7D|été",
		},
		{
			name: "stdlib raw unicode", router: stdlib, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/été"}, wantBucket: "/users/%7Bid%7D|été",
		},
		{
			// ServeMux decodes the segment.
			name: "stdlib encoded slash", router: stdlib, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/a%2Fb"}, wantBucket: "/users/%7Bid%7D|a/b",
		},
		{
			// chi matches on the raw path when it differs from the
			// default encoding, so the value stays encoded.
			name: "chi encoded slash", router: chiR, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/a%2Fb"}, wantBucket: "/users/%7Bid%7D|a%252Fb",
		},
		{
			name: "separator in value", router: stdlib, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/1%7C2"}, wantBucket: "/users/%7Bid%7D|1%7C2",
		},
		{
			name: "braces and control bytes in value", router: stdlib, givePattern: "/users/{id}",
			give: reqSpec{target: "/users/%7Bx%7D%00%1F%7F%25"}, wantBucket: "/users/%7Bid%7D|%7Bx%7D%00%1F%7F%25",
		},
		{
			name: "no params", router: stdlib, givePattern: "GET /about",
			give: reqSpec{target: "/about?x=1"}, wantBucket: "GET /about|",
		},
		{
			name: "default bucket params", router: stdlib, givePattern: "/users/{id}/posts/{post}",
			give: reqSpec{target: "/users/15/posts/7"}, wantBucket: "/users/%7Bid%7D/posts/%7Bpost%7D|15|7",
		},
		{
			name: "explicit bucket param", router: stdlib, givePattern: "/users/{id}/posts/{post}",
			givePolicy: policy.Policy{BucketParams: []string{"id"}},
			give:       reqSpec{target: "/users/15/posts/7"}, wantBucket: "/users/%7Bid%7D/posts/%7Bpost%7D|15",
		},
		{
			name: "explicit bucket params take pattern order", router: chiR, givePattern: "/users/{id}/posts/{post}",
			givePolicy: policy.Policy{BucketParams: []string{"post", "id"}},
			give:       reqSpec{target: "/users/15/posts/7"}, wantBucket: "/users/%7Bid%7D/posts/%7Bpost%7D|15|7",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := mustCompile(t, tt.givePattern, tt.givePolicy)
			got := serve(t, tt.router, rt, tt.give)
			if got.key.Bucket != tt.wantBucket {
				t.Errorf("Bucket = %q, want %q", got.key.Bucket, tt.wantBucket)
			}
			if !strings.HasPrefix(got.key.Bucket, rt.BucketPrefix()) {
				t.Errorf("Bucket %q does not start with BucketPrefix %q", got.key.Bucket, rt.BucketPrefix())
			}
			if strings.ContainsAny(got.key.Bucket, "{}") {
				t.Errorf("Bucket %q holds a brace", got.key.Bucket)
			}
			b, err := rt.BucketFor(got.bucket)
			if err != nil {
				t.Fatalf("BucketFor(%q): %v", got.bucket, err)
			}
			if b != got.key.Bucket {
				t.Errorf("BucketFor(%q) = %q, Key gave %q", got.bucket, b, got.key.Bucket)
			}
			if len(got.key.Field) != 16 || len(got.key.FieldHex()) != 32 {
				t.Errorf("Field is %d bytes (hex %q), want 16", len(got.key.Field), got.key.FieldHex())
			}
		})
	}
}

func TestKeyVariants(t *testing.T) {
	varyPolicy := policy.Policy{Vary: []string{"accept-encoding", "X-Tenant"}}
	allowPolicy := policy.Policy{QueryParams: []string{"a", "page"}}
	tests := []struct {
		name        string
		router      string // default stdlib
		givePattern string // default "GET /items/{id}"
		givePolicy  policy.Policy
		giveA       reqSpec
		giveB       reqSpec
		wantSame    bool // the fields are equal
	}{
		// Query parameters.
		{name: "same request", giveA: reqSpec{target: "/items/1?a=1"}, giveB: reqSpec{target: "/items/1?a=1"}, wantSame: true},
		// The query is keyed as sent: a handler may read it raw.
		{name: "reordered params", giveA: reqSpec{target: "/items/1?a=1&b=2"}, giveB: reqSpec{target: "/items/1?b=2&a=1"}},
		{name: "repeated params keep their order", giveA: reqSpec{target: "/items/1?a=1&a=2"}, giveB: reqSpec{target: "/items/1?a=2&a=1"}},
		{name: "repeated params interleaved", giveA: reqSpec{target: "/items/1?a=1&b=x&a=2"}, giveB: reqSpec{target: "/items/1?b=x&a=1&a=2"}},
		{name: "repeated param vs single", giveA: reqSpec{target: "/items/1?a=1&a=1"}, giveB: reqSpec{target: "/items/1?a=1"}},
		{name: "plus and %20", giveA: reqSpec{target: "/items/1?q=a+b"}, giveB: reqSpec{target: "/items/1?q=a%20b"}},
		{name: "encoded plus is not a space", giveA: reqSpec{target: "/items/1?q=a%2Bb"}, giveB: reqSpec{target: "/items/1?q=a+b"}},
		{name: "escaped name", giveA: reqSpec{target: "/items/1?%61=1"}, giveB: reqSpec{target: "/items/1?a=1"}},
		{name: "escaped angle brackets", giveA: reqSpec{target: "/items/1?q=%3Cb%3E"}, giveB: reqSpec{target: "/items/1?q=<b>"}},
		{name: "lowercase hex escape", giveA: reqSpec{target: "/items/1?q=%c3%a9"}, giveB: reqSpec{target: "/items/1?q=%C3%A9"}},
		{name: "no equals and empty value", giveA: reqSpec{target: "/items/1?a"}, giveB: reqSpec{target: "/items/1?a="}},
		{name: "empty value vs absent", giveA: reqSpec{target: "/items/1?a="}, giveB: reqSpec{target: "/items/1"}},
		{name: "empty pieces", giveA: reqSpec{target: "/items/1?&&a=1&&"}, giveB: reqSpec{target: "/items/1?a=1"}},
		{name: "empty query", giveA: reqSpec{target: "/items/1?"}, giveB: reqSpec{target: "/items/1"}, wantSame: true},
		{name: "name case matters", giveA: reqSpec{target: "/items/1?A=1"}, giveB: reqSpec{target: "/items/1?a=1"}},
		{name: "different value", giveA: reqSpec{target: "/items/1?a=1"}, giveB: reqSpec{target: "/items/1?a=2"}},

		// Allow list.
		{name: "allow list drops others", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?a=1&utm_source=x"}, giveB: reqSpec{target: "/items/1?a=1"}, wantSame: true},
		{name: "allow list keeps listed", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?page=1"}, giveB: reqSpec{target: "/items/1?page=2"}},
		{name: "allow list matches decoded names, keys them as sent", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?p%61ge=2"}, giveB: reqSpec{target: "/items/1?page=2"}},
		{name: "allow list keeps the kept pieces in order", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?page=2&a=1"}, giveB: reqSpec{target: "/items/1?a=1&page=2"}},
		{name: "allow list drops the others as sent", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?utm=%3Cx&page=2&&"}, giveB: reqSpec{target: "/items/1?page=2"}, wantSame: true},
		{name: "allow list is case sensitive", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?PAGE=2"}, giveB: reqSpec{target: "/items/1"}, wantSame: true},
		{name: "allow list keeps repeats", givePolicy: allowPolicy, giveA: reqSpec{target: "/items/1?a=1&a=2"}, giveB: reqSpec{target: "/items/1?a=1"}},

		// IgnoreQuery.
		{name: "ignore query", givePolicy: policy.Policy{IgnoreQuery: true}, giveA: reqSpec{target: "/items/1?a=1"}, giveB: reqSpec{target: "/items/1?a=2&b"}, wantSame: true},

		// Vary.
		{name: "vary same value", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"Accept-Encoding": {"gzip"}}},
			giveB: reqSpec{target: "/items/1", header: http.Header{"Accept-Encoding": {"gzip"}}}, wantSame: true},
		{name: "vary different value", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"Accept-Encoding": {"gzip"}}},
			giveB: reqSpec{target: "/items/1", header: http.Header{"Accept-Encoding": {"br"}}}},
		{name: "vary present vs missing", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {"a"}}},
			giveB: reqSpec{target: "/items/1"}},
		{name: "vary empty vs missing", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {""}}},
			giveB: reqSpec{target: "/items/1"}},
		{name: "vary no values is missing", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {}}},
			giveB: reqSpec{target: "/items/1"}, wantSame: true},
		{name: "vary values keep their order", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {"a", "b"}}},
			giveB: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {"b", "a"}}}},
		{name: "vary repeated header", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {"a", "a"}}},
			giveB: reqSpec{target: "/items/1", header: http.Header{"X-Tenant": {"a"}}}},
		{name: "vary ignores other headers", givePolicy: varyPolicy,
			giveA: reqSpec{target: "/items/1", header: http.Header{"X-Other": {"1"}, "Accept": {"text/html"}}},
			giveB: reqSpec{target: "/items/1"}, wantSame: true},
		{name: "no vary ignores headers",
			giveA: reqSpec{target: "/items/1", header: http.Header{"Accept-Encoding": {"gzip"}}},
			giveB: reqSpec{target: "/items/1"}, wantSame: true},

		// Method class.
		{name: "HEAD is GET", giveA: reqSpec{method: "HEAD", target: "/items/1?a=1"}, giveB: reqSpec{target: "/items/1?a=1"}, wantSame: true},
		{name: "chi HEAD is GET", router: chiR, givePattern: "/items/{id}", giveA: reqSpec{method: "HEAD", target: "/items/1"}, giveB: reqSpec{target: "/items/1"}, wantSame: true},
		{name: "POST is not GET", router: chiR, givePattern: "/items/{id}", giveA: reqSpec{method: "POST", target: "/items/1"}, giveB: reqSpec{target: "/items/1"}},
		{name: "stdlib POST is not GET", givePattern: "/items/{id}", giveA: reqSpec{method: "POST", target: "/items/1"}, giveB: reqSpec{target: "/items/1"}},

		// Host.
		// The host as sent: a handler may reflect it.
		{name: "host case", giveA: reqSpec{target: "/items/1", host: "Example.COM"}, giveB: reqSpec{target: "/items/1", host: "example.com"}},
		{name: "host trailing dot", giveA: reqSpec{target: "/items/1", host: "example.com."}, giveB: reqSpec{target: "/items/1", host: "example.com"}},
		{name: "other host", giveA: reqSpec{target: "/items/1", host: "example.org"}, giveB: reqSpec{target: "/items/1", host: "example.com"}},
		{name: "host port", giveA: reqSpec{target: "/items/1", host: "example.com:8080"}, giveB: reqSpec{target: "/items/1", host: "example.com"}},

		// Path parameters that are not bucket parameters.
		{name: "field param differs", givePattern: "/users/{id}/posts/{post}", givePolicy: policy.Policy{BucketParams: []string{"id"}},
			giveA: reqSpec{target: "/users/1/posts/7"}, giveB: reqSpec{target: "/users/1/posts/8"}},
		{name: "chi field param differs", router: chiR, givePattern: "/users/{id}/posts/{post}", givePolicy: policy.Policy{BucketParams: []string{"id"}},
			giveA: reqSpec{target: "/users/1/posts/7"}, giveB: reqSpec{target: "/users/1/posts/8"}},
		{name: "chi wildcard in field", router: chiR, givePattern: "/u/{id}/files/*", givePolicy: policy.Policy{BucketParams: []string{"id"}},
			giveA: reqSpec{target: "/u/1/files/a/b"}, giveB: reqSpec{target: "/u/1/files/a"}},
		// ServeMux gives both the same path value; the paths as sent differ.
		{name: "stdlib rest in field", givePattern: "/u/{id}/files/{path...}", givePolicy: policy.Policy{BucketParams: []string{"id"}},
			giveA: reqSpec{target: "/u/1/files/a/b"}, giveB: reqSpec{target: "/u/1/files/a%2Fb"}},
		{name: "unicode NFC vs NFD", givePattern: "/u/{id}/{name}", givePolicy: policy.Policy{BucketParams: []string{"id"}},
			giveA: reqSpec{target: "/u/1/%C3%A9"}, giveB: reqSpec{target: "/u/1/e%CC%81"}},
		{name: "subtree pattern keeps the path", givePattern: "GET /static/",
			giveA: reqSpec{target: "/static/a.css"}, giveB: reqSpec{target: "/static/b.css"}},
		{name: "subtree pattern below a param", givePattern: "GET /users/{id}/",
			giveA: reqSpec{target: "/users/1/a"}, giveB: reqSpec{target: "/users/1/b"}},
		{name: "subtree pattern raw path", givePattern: "GET /static/",
			giveA: reqSpec{target: "/static/a%2Fb"}, giveB: reqSpec{target: "/static/a/b"}},
		{name: "root pattern", givePattern: "/",
			giveA: reqSpec{target: "/"}, giveB: reqSpec{target: "/x"}},
		// The request path is in the field, so bucket values show there too.
		{name: "path is in the field", givePattern: "/users/{id}",
			giveA: reqSpec{target: "/users/1"}, giveB: reqSpec{target: "/users/2"}},
		{name: "escaped path byte", givePattern: "/users/{id}",
			giveA: reqSpec{target: "/users/%61"}, giveB: reqSpec{target: "/users/a"}},
		// The target as sent: a handler may reflect it.
		{name: "absolute-form target", givePattern: "/users/{id}",
			giveA: reqSpec{target: "http://example.com/users/1"}, giveB: reqSpec{target: "/users/1"}},
		{name: "absolute-form userinfo", givePattern: "/users/{id}",
			giveA: reqSpec{target: "http://evil@example.com/users/1"}, giveB: reqSpec{target: "http://example.com/users/1"}},
		{name: "scheme", givePattern: "/users/{id}",
			giveA: reqSpec{target: "https://example.com/users/1"}, giveB: reqSpec{target: "/users/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			router := tt.router
			if router == "" {
				router = stdlib
			}
			pattern := tt.givePattern
			if pattern == "" {
				pattern = "GET /items/{id}"
			}
			rt := mustCompile(t, pattern, tt.givePolicy)
			a := serve(t, router, rt, tt.giveA).key
			b := serve(t, router, rt, tt.giveB).key
			if same := a.Field == b.Field; same != tt.wantSame {
				t.Errorf("fields equal = %v, want %v\nA: %+v -> %s\nB: %+v -> %s", same, tt.wantSame, tt.giveA, a.FieldHex(), tt.giveB, b.FieldHex())
			}
		})
	}
}

// TestKeyCollisions feeds pairs that are equal under a naive concatenation
// of names, values and separators; their keys must differ.
func TestKeyCollisions(t *testing.T) {
	vary := policy.Policy{Vary: []string{"X-A", "X-B"}}
	fieldParams := policy.Policy{BucketParams: []string{"k"}}
	tests := []struct {
		name        string
		givePattern string
		givePolicy  policy.Policy
		giveA       reqSpec
		giveB       reqSpec
	}{
		{name: "encoded ampersand", giveA: reqSpec{target: "/x?a=b&c"}, giveB: reqSpec{target: "/x?a=b%26c"}},
		{name: "encoded equals", giveA: reqSpec{target: "/x?a=b%3Dc"}, giveB: reqSpec{target: "/x?a%3Db=c"}},
		{name: "whole pair encoded", giveA: reqSpec{target: "/x?a=1&b=2"}, giveB: reqSpec{target: "/x?a=1%26b%3D2"}},
		{name: "empty name", giveA: reqSpec{target: "/x?=a"}, giveB: reqSpec{target: "/x?a"}},
		{name: "nul bytes", giveA: reqSpec{target: "/x?a=%00b&c"}, giveB: reqSpec{target: "/x?a&%00b=c"}},
		{
			name: "path values with separators", givePattern: "/x/{k}/{a}/{b}", givePolicy: fieldParams,
			giveA: reqSpec{target: "/x/k/1%7C2/3"}, giveB: reqSpec{target: "/x/k/1/2%7C3"},
		},
		{
			name: "path values with equals", givePattern: "/x/{k}/{a}/{b}", givePolicy: fieldParams,
			giveA: reqSpec{target: "/x/k/1=b=2/3"}, giveB: reqSpec{target: "/x/k/1/b=2=3"},
		},
		{
			name: "path value vs query", givePattern: "/x/{k}/{a}", givePolicy: fieldParams,
			giveA: reqSpec{target: "/x/k/1&b=2"}, giveB: reqSpec{target: "/x/k/1?b=2"},
		},
		{
			name: "header values joined", givePolicy: vary,
			giveA: reqSpec{target: "/x", header: http.Header{"X-A": {"a", "b"}}},
			giveB: reqSpec{target: "/x", header: http.Header{"X-A": {"a,b"}}},
		},
		{
			name: "header moved between names", givePolicy: vary,
			giveA: reqSpec{target: "/x", header: http.Header{"X-A": {"1, X-B: 2"}}},
			giveB: reqSpec{target: "/x", header: http.Header{"X-A": {"1"}, "X-B": {"2"}}},
		},
		{
			name: "empty header moved", givePolicy: vary,
			giveA: reqSpec{target: "/x", header: http.Header{"X-A": {""}, "X-B": {"x"}}},
			giveB: reqSpec{target: "/x", header: http.Header{"X-A": {"x"}}},
		},
		{
			name: "header vs query", givePolicy: vary,
			giveA: reqSpec{target: "/x?a=1", header: http.Header{"X-A": {""}}},
			giveB: reqSpec{target: "/x", header: http.Header{"X-A": {"a=1"}}},
		},
		{
			name:  "host vs query",
			giveA: reqSpec{target: "/x?a=1", host: "h"},
			giveB: reqSpec{target: "/x", host: "h?a=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pattern := tt.givePattern
			if pattern == "" {
				pattern = "/x"
			}
			rt := mustCompile(t, pattern, tt.givePolicy)
			a := serve(t, stdlib, rt, tt.giveA).key
			b := serve(t, stdlib, rt, tt.giveB).key
			if a == b {
				t.Errorf("keys collide: %q %s\nA: %+v\nB: %+v", a.Bucket, a.FieldHex(), tt.giveA, tt.giveB)
			}
		})
	}
}

func TestBucketCollisions(t *testing.T) {
	one := mustCompile(t, "/users/{id}", policy.Policy{})
	two := mustCompile(t, "/users/{a}/{b}", policy.Policy{})
	tests := []struct {
		name  string
		giveA string
		giveB string
	}{
		{name: "value with separator vs two values", giveA: mustBucket(t, one, map[string]string{"id": "1|2"}), giveB: mustBucket(t, two, map[string]string{"a": "1", "b": "2"})},
		{name: "separator moved", giveA: mustBucket(t, two, map[string]string{"a": "1|2", "b": "3"}), giveB: mustBucket(t, two, map[string]string{"a": "1", "b": "2|3"})},
		{name: "escaped vs literal", giveA: mustBucket(t, one, map[string]string{"id": "%7C"}), giveB: mustBucket(t, one, map[string]string{"id": "|"})},
		{name: "brace vs escape", giveA: mustBucket(t, one, map[string]string{"id": "{"}), giveB: mustBucket(t, one, map[string]string{"id": "%7B"})},
		{name: "empty values", giveA: mustBucket(t, two, map[string]string{"a": "", "b": "|"}), giveB: mustBucket(t, two, map[string]string{"a": "|", "b": ""})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.giveA == tt.giveB {
				t.Errorf("buckets collide: %q", tt.giveA)
			}
			for _, b := range []string{tt.giveA, tt.giveB} {
				if strings.ContainsAny(b, "{}") {
					t.Errorf("bucket %q holds a brace", b)
				}
			}
		})
	}
	// A route's prefix never selects another route's buckets.
	if strings.HasPrefix(mustBucket(t, two, map[string]string{"a": "", "b": ""}), one.BucketPrefix()) {
		t.Errorf("BucketPrefix %q selects buckets of %q", one.BucketPrefix(), two.Pattern())
	}
}

func mustBucket(t *testing.T, rt *Route, values map[string]string) string {
	t.Helper()
	b, err := rt.BucketFor(values)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBucketForErrors(t *testing.T) {
	rt := mustCompile(t, "GET /users/{id}/posts/{post}", policy.Policy{BucketParams: []string{"id"}})
	tests := []struct {
		name string
		give map[string]string
		want []string // substrings of the error
	}{
		{name: "missing", give: map[string]string{}, want: []string{`missing bucket parameter "id"`}},
		{name: "nil map", give: nil, want: []string{`missing bucket parameter "id"`}},
		{name: "unknown", give: map[string]string{"id": "1", "user": "2"}, want: []string{`unknown bucket parameter "user"`}},
		{name: "field param", give: map[string]string{"id": "1", "post": "2"}, want: []string{`unknown bucket parameter "post"`, `bucket parameters: "id"`}},
		{name: "both", give: map[string]string{"x": "1"}, want: []string{`unknown bucket parameter "x"`, `missing bucket parameter "id"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.BucketFor(tt.give)
			if err == nil {
				t.Fatal("BucketFor succeeded, want an error")
			}
			for _, w := range append(tt.want, rt.Pattern()) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}

	none := mustCompile(t, "/about", policy.Policy{})
	if b, err := none.BucketFor(nil); err != nil || b != none.BucketPrefix() {
		t.Errorf("BucketFor(nil) on a route without params = %q, %v; want %q", b, err, none.BucketPrefix())
	}
	if _, err := none.BucketFor(map[string]string{"id": "1"}); err == nil || !strings.Contains(err.Error(), "no bucket parameters") {
		t.Errorf("BucketFor with an unknown param = %v, want an error naming it", err)
	}
}

func TestKeyWithoutRouter(t *testing.T) {
	rt := mustCompile(t, "/users/{id}", policy.Policy{Vary: []string{"X-A"}})
	tests := []struct {
		name string
		give *http.Request
	}{
		{name: "zero request", give: &http.Request{}},
		{name: "no URL", give: &http.Request{Method: "GET", Host: "h"}},
		{name: "URL host only", give: &http.Request{URL: &url.URL{Host: "H", RawQuery: "a=1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := rt.Key(tt.give)
			if err != nil || k.Bucket != rt.BucketPrefix() || len(k.Field) != 16 {
				t.Errorf("Key = %q %s, %v", k.Bucket, k.FieldHex(), err)
			}
			if rt.Routed(tt.give) {
				t.Error("Routed = true for a request no router saw")
			}
		})
	}
	// An empty method is GET; the host is r.Host alone, as the handler
	// sees it.
	a, _ := rt.Key(&http.Request{URL: &url.URL{}, Host: "h"})
	b, _ := rt.Key(&http.Request{Method: "GET", Host: "h", URL: &url.URL{}})
	if a != b {
		t.Errorf("empty method: %s, want %s", a.FieldHex(), b.FieldHex())
	}
	c, _ := rt.Key(&http.Request{Method: "GET", URL: &url.URL{Host: "h"}})
	if c == b {
		t.Error("the URL's host stood in for an empty Host")
	}
}

// TestKeyQueryErrors checks that a query net/url does not parse cleanly
// has no key: the handler would see fewer parameters, or none, than a key
// could hold, or an error from ParseForm.
func TestKeyQueryErrors(t *testing.T) {
	allow := policy.Policy{QueryParams: []string{"a"}}
	tests := []struct {
		name       string
		givePolicy policy.Policy
		give       string
		wantErr    bool
	}{
		{name: "clean", give: "/items/1?a=1&b=2"},
		{name: "bad escape in value", give: "/items/1?a=%zz", wantErr: true},
		{name: "bad escape in name", give: "/items/1?a%zz=1", wantErr: true},
		{name: "truncated escape", give: "/items/1?a=%2", wantErr: true},
		{name: "semicolon", give: "/items/1?a=1;b=2", wantErr: true},
		{name: "encoded semicolon is fine", give: "/items/1?a=1%3Bb=2"},
		{name: "bad escape in a parameter the allow list drops", givePolicy: allow, give: "/items/1?a=1&x=%zz", wantErr: true},
		{name: "ignore query ignores it all", givePolicy: policy.Policy{IgnoreQuery: true}, give: "/items/1?a=%zz;"},
		{name: "as many pieces as net/url takes", give: "/items/1?page=2" + strings.Repeat("&", 9999)},
		{name: "more pieces than net/url takes", give: "/items/1?page=2" + strings.Repeat("&", 10001), wantErr: true},
		{name: "many real parameters", give: "/items/1?" + strings.Repeat("a=1&", 500) + "b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := mustCompile(t, "GET /items/{id}", tt.givePolicy)
			got := serveErr(t, stdlib, rt, reqSpec{target: tt.give})
			if (got.err != nil) != tt.wantErr {
				t.Fatalf("Key error = %v, want error %v", got.err, tt.wantErr)
			}
			if got.err != nil && !errors.Is(got.err, ErrQuery) {
				t.Errorf("Key error = %v, want ErrQuery", got.err)
			}
			if !tt.wantErr && !tt.givePolicy.IgnoreQuery {
				// The kept query is what the field holds: sent alone, it
				// gives the same field.
				kept := serve(t, stdlib, rt, reqSpec{target: "/items/1?" + rt.KeptQuery(got.req)})
				if kept.key.Field != got.key.Field {
					t.Errorf("field of %q differs from the field of its kept query %q", tt.give, rt.KeptQuery(got.req))
				}
			}
		})
	}
}

// TestRouted checks the comparison of the declared pattern with the one
// the router reports, through real routers, nested ones included.
func TestRouted(t *testing.T) {
	tests := []struct {
		name     string
		declared string
		mount    func(h http.Handler) http.Handler
		target   string
		want     bool
	}{
		{name: "servemux", declared: "GET /items/{id}", target: "/items/1", want: true,
			mount: func(h http.Handler) http.Handler { m := http.NewServeMux(); m.Handle("GET /items/{id}", h); return m }},
		{name: "servemux other pattern", declared: "/items/{id}", target: "/items/1",
			mount: func(h http.Handler) http.Handler { m := http.NewServeMux(); m.Handle("GET /items/{id}", h); return m }},
		{name: "chi", declared: "/items/{id}", target: "/items/1", want: true,
			mount: func(h http.Handler) http.Handler { r := chi.NewRouter(); r.Handle("/items/{id}", h); return r }},
		{name: "chi trailing slash", declared: "/items/", target: "/items/", want: true,
			mount: func(h http.Handler) http.Handler { r := chi.NewRouter(); r.Handle("/items/", h); return r }},
		{name: "chi wildcard", declared: "/files/*", target: "/files/a/b", want: true,
			mount: func(h http.Handler) http.Handler { r := chi.NewRouter(); r.Handle("/files/*", h); return r }},
		{name: "chi sub-router with its local pattern", declared: "/items/{id}", target: "/tenants/acme/items/1",
			mount: func(h http.Handler) http.Handler {
				r := chi.NewRouter()
				r.Route("/tenants/{tenant}", func(r chi.Router) { r.Handle("/items/{id}", h) })
				return r
			}},
		{name: "chi sub-router with the whole pattern", declared: "/tenants/{tenant}/items/{id}", target: "/tenants/acme/items/1", want: true,
			mount: func(h http.Handler) http.Handler {
				r := chi.NewRouter()
				r.Route("/tenants/{tenant}", func(r chi.Router) { r.Handle("/items/{id}", h) })
				return r
			}},
		{name: "chi mount", declared: "/items/{id}", target: "/v1/items/1",
			mount: func(h http.Handler) http.Handler {
				sub := chi.NewRouter()
				sub.Handle("/items/{id}", h)
				r := chi.NewRouter()
				r.Mount("/v1", sub)
				return r
			}},
		{name: "chi middleware before routing", declared: "/items/{id}", target: "/items/1",
			mount: func(h http.Handler) http.Handler {
				r := chi.NewRouter()
				r.Use(func(next http.Handler) http.Handler { return h })
				r.Handle("/items/{id}", http.NotFoundHandler())
				return r
			}},
		{name: "no router", declared: "/items/{id}", target: "/items/1",
			mount: func(h http.Handler) http.Handler { return h }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := mustCompile(t, tt.declared, policy.Policy{})
			var got *bool
			h := tt.mount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ok := rt.Routed(r)
				got = &ok
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tt.target, nil))
			if got == nil {
				t.Fatal("the handler did not run")
			}
			if *got != tt.want {
				t.Errorf("Routed = %v, want %v", *got, tt.want)
			}
		})
	}
}

// TestStripPrefix checks that a path rewritten by http.StripPrefix is keyed
// as the client sent it: one inner mux mounted under two prefixes routes
// both to the same pattern with the same parameters, and the handler still
// sees different requests (r.RequestURI).
func TestStripPrefix(t *testing.T) {
	rt := mustCompile(t, "GET /items/{id}", policy.Policy{})
	var keys []Key
	inner := http.NewServeMux()
	inner.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !rt.Routed(r) {
			t.Errorf("Routed = false under StripPrefix (Pattern %q)", r.Pattern)
		}
		k, err := rt.Key(r)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	})
	outer := http.NewServeMux()
	outer.Handle("/v1/", http.StripPrefix("/v1", inner))
	outer.Handle("/v2/", http.StripPrefix("/v2", inner))
	for _, target := range []string{"/v1/items/1", "/v2/items/1"} {
		outer.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
	}
	if len(keys) != 2 {
		t.Fatalf("handler ran %d times, want 2", len(keys))
	}
	if keys[0].Field == keys[1].Field {
		t.Error("/v1/items/1 and /v2/items/1 share a field")
	}
	if keys[0].Bucket != keys[1].Bucket {
		t.Errorf("buckets %q and %q differ; the bucket is the route's and its parameters'", keys[0].Bucket, keys[1].Bucket)
	}
}

// TestLongBucketValues checks that a long bucket parameter value is kept
// as a digest: bounded, distinct from every short value, the same in Key
// and BucketFor.
func TestLongBucketValues(t *testing.T) {
	rt := mustCompile(t, "GET /users/{id}/posts", policy.Policy{})
	long := strings.Repeat("x", 900_000)
	got := serve(t, stdlib, rt, reqSpec{target: "/users/" + long + "/posts"})
	if n := len(got.key.Bucket); n > len(rt.BucketPrefix())+2+32 {
		t.Errorf("bucket of a 900 KB value is %d bytes", n)
	}
	if b := mustBucket(t, rt, map[string]string{"id": long}); b != got.key.Bucket {
		t.Errorf("BucketFor = %q, Key gave %q", b, got.key.Bucket)
	}
	edge := strings.Repeat("y", MaxBucketValue)
	if b := mustBucket(t, rt, map[string]string{"id": edge}); b != rt.BucketPrefix()+edge {
		t.Errorf("a value of MaxBucketValue bytes is not kept as it is: %q", b)
	}
	other := mustBucket(t, rt, map[string]string{"id": long + "y"})
	if other == got.key.Bucket {
		t.Error("two long values share a bucket")
	}
	// The digest form cannot be sent as a short value: its "%#" is
	// escaped.
	digest := strings.TrimPrefix(got.key.Bucket, rt.BucketPrefix())
	if b := mustBucket(t, rt, map[string]string{"id": digest}); b == got.key.Bucket {
		t.Errorf("the short value %q has the bucket of a long one", digest)
	}
}

func TestAppendQueryUnescape(t *testing.T) {
	tests := []string{"", "a", "a+b", "%41", "%4", "%", "a%zz", "%%41", "%C3%A9", "%c3%a9+%2B", "100%", "+%20+", "%0g"}
	for _, give := range tests {
		t.Run(give, func(t *testing.T) {
			checkUnescape(t, give)
		})
	}
}

// checkUnescape compares appendQueryUnescape with url.QueryUnescape.
func checkUnescape(t *testing.T, s string) {
	t.Helper()
	want, werr := url.QueryUnescape(s)
	got, ok := appendQueryUnescape([]byte("prefix"), s)
	if ok != (werr == nil) {
		t.Fatalf("appendQueryUnescape(%q) ok = %v, url.QueryUnescape error = %v", s, ok, werr)
	}
	if !ok {
		if string(got) != "prefix" {
			t.Fatalf("appendQueryUnescape(%q) failed but changed dst to %q", s, got)
		}
		return
	}
	if string(got) != "prefix"+want {
		t.Fatalf("appendQueryUnescape(%q) = %q, want %q", s, got[len("prefix"):], want)
	}
}

func TestFieldHex(t *testing.T) {
	k := Key{Field: "\x00\x01\xfe\xff"}
	if got := k.FieldHex(); got != "0001feff" {
		t.Errorf("FieldHex = %q", got)
	}
}

// A Pattern reads a pattern as a Route does: its parameters, whether a
// request was routed by it (chi's rendering included), and its target.
func TestPattern(t *testing.T) {
	put, err := ParsePattern("PUT example.com/items/{id}/")
	if err != nil {
		t.Fatal(err)
	}
	if got := put.Params(); len(got) != 1 || got[0] != "id" {
		t.Errorf("Params = %q", got)
	}
	for _, tt := range []struct {
		pattern string
		want    bool
	}{
		{"PUT example.com/items/{id}/", true},
		{"PUT example.com/items/{id}", false},
		{"", false},
	} {
		if got := put.Routed(&http.Request{Pattern: tt.pattern}); got != tt.want {
			t.Errorf("Routed(r.Pattern %q) = %t, want %t", tt.pattern, got, tt.want)
		}
	}
	chiPut, err := ParsePattern("/items/{id}/")
	if err != nil {
		t.Fatal(err)
	}
	if !chiPut.Routed(&http.Request{Pattern: "/items/{id}"}) {
		t.Errorf("chi's rendering of %q not taken as routed by it", chiPut)
	}
	for _, tt := range []struct {
		other string
		want  bool
	}{
		{"GET example.com/items/{id}/", true},
		{"Example.COM/items/{id}/", true},
		{"GET /items/{id}/", false},
		{"GET example.com/items/{id}", false},
		{"GET other.example/items/{id}/", false},
	} {
		q, err := ParsePattern(tt.other)
		if err != nil {
			t.Fatal(err)
		}
		if got := put.SameTarget(q); got != tt.want {
			t.Errorf("SameTarget(%q) = %t, want %t", tt.other, got, tt.want)
		}
	}
	rt, err := Compile("GET example.com/items/{id}/", policy.Policy{TTL: 60e9})
	if err != nil {
		t.Fatal(err)
	}
	if !rt.Parsed().SameTarget(put) || rt.Parsed().String() != rt.Pattern() {
		t.Errorf("the Route's pattern reads differently")
	}
}
