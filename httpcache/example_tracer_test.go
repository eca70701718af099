package httpcache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// printTracer is a Tracer that prints each decision as it ends. A service
// uses package otelcache's instead, which reports them as OpenTelemetry
// spans.
type printTracer struct{}

func (printTracer) Start(ctx context.Context, op httpcache.Op, route string) (context.Context, httpcache.Span) {
	return ctx, &printSpan{op: op, route: route}
}

type printSpan struct {
	op    httpcache.Op
	route string
	attrs string
}

func (s *printSpan) SetInt(a httpcache.Attr, v int64) {
	if a == httpcache.AttrOriginStatus { // stored sizes vary with compression
		s.attrs += fmt.Sprintf(" %s=%d", a, v)
	}
}

func (s *printSpan) SetString(a httpcache.Attr, v string) { s.attrs += fmt.Sprintf(" %s=%s", a, v) }

func (s *printSpan) End(o httpcache.Outcome) {
	fmt.Printf("%s %q %s%s\n", s.op, s.route, o, s.attrs)
}

// A tracer sees each decision of the cache: the first request misses and
// fills the entry, the second hits it, a third with a cookie bypasses the
// cache, and a purge removes the entry.
func ExampleWithTracer() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store, httpcache.WithTracer(printTracer{}))
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())
	mux := http.NewServeMux()
	const pattern = "GET /users/{id}"
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{TTL: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "user %s", r.PathValue("id"))
		})))

	for _, cookie := range []string{"", "", "session=1"} {
		r := httptest.NewRequest("GET", "/users/15", nil)
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		mux.ServeHTTP(httptest.NewRecorder(), r)
	}
	if _, err := cache.PurgeBucket(context.Background(), pattern, map[string]string{"id": "15"}); err != nil {
		panic(err)
	}
	// Output:
	// readthrough.lookup "GET /users/{id}" miss
	// readthrough.fill "GET /users/{id}" stored readthrough.origin_status=200
	// readthrough.lookup "GET /users/{id}" hit
	// readthrough.lookup "GET /users/{id}" bypass readthrough.reason=cookie
	// readthrough.purge "" purged readthrough.purge=bucket readthrough.purge_target=GET /users/%7Bid%7D|15
}
