package keying

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/readthrough/readthrough/policy"
)

// Routers the tests serve requests through, so that path values are the
// ones a real router sets.
const (
	stdlib = "stdlib"
	chiR   = "chi"
)

// reqSpec describes one test request.
type reqSpec struct {
	method string // default GET
	target string // request target, as on the request line
	host   string // default "example.com"
	header http.Header
}

func (q reqSpec) build() *http.Request {
	method := q.method
	if method == "" {
		method = http.MethodGet
	}
	r := httptest.NewRequest(method, q.target, nil)
	r.Host = "example.com"
	if q.host != "" {
		r.Host = q.host
	}
	for k, v := range q.header {
		r.Header[k] = v
	}
	return r
}

// routed is what a handler saw: the key and the bucket parameter values.
type routed struct {
	key    Key
	err    error             // from Key
	routed bool              // Routed
	bucket map[string]string // bucket parameter values from PathValue
	req    *http.Request
}

// serve routes q through router with pattern declared and returns what the
// handler computed. The test fails if the route does not match or Key
// fails.
func serve(t testing.TB, router string, rt *Route, q reqSpec) routed {
	t.Helper()
	got := serveErr(t, router, rt, q)
	if got.err != nil {
		t.Fatalf("%s: Key(%s %s): %v", router, q.method, q.target, got.err)
	}
	return got
}

// serveErr is serve without the check of Key's error.
func serveErr(t testing.TB, router string, rt *Route, q reqSpec) routed {
	t.Helper()
	var got *routed
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, err := rt.Key(r)
		out := routed{key: k, err: err, routed: rt.Routed(r), bucket: map[string]string{}, req: r}
		for _, name := range rt.bucketParams {
			out.bucket[name] = r.PathValue(name)
		}
		got = &out
	})
	var mux http.Handler
	switch router {
	case stdlib:
		m := http.NewServeMux()
		m.Handle(rt.Pattern(), h)
		mux = m
	case chiR:
		m := chi.NewRouter()
		m.Handle(rt.Pattern(), h)
		mux = m
	default:
		t.Fatalf("unknown router %q", router)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, q.build())
	if got == nil {
		t.Fatalf("%s: %s %s did not match %q: status %d", router, q.method, q.target, rt.Pattern(), w.Code)
	}
	return *got
}

// mustCompile compiles pattern with p or fails the test.
func mustCompile(t testing.TB, pattern string, p policy.Policy) *Route {
	t.Helper()
	rt, err := Compile(pattern, p)
	if err != nil {
		t.Fatalf("Compile(%q): %v", pattern, err)
	}
	return rt
}
