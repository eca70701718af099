package httpcache

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// quietLogger drops logs below errors so expected warnings (lost locks,
// panics under test) do not flood test output.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestCache(t testing.TB, store storage.Store, opts ...Option) *Cache {
	t.Helper()
	c, err := New(store, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(t.Context()) })
	return c
}

// origin is a counting origin handler.
type origin struct {
	calls atomic.Int64
	fn    http.HandlerFunc
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.calls.Add(1)
	o.fn(w, r)
}

func textOrigin(body string, headers ...string) *origin {
	return &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Add(headers[i], headers[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		io.WriteString(w, body)
	}}
}

// mux routes pattern through the cache to h on a ServeMux.
func mux(t testing.TB, c *Cache, pattern string, p policy.Policy, h http.Handler) *http.ServeMux {
	t.Helper()
	mw, err := c.Route(pattern, p)
	if err != nil {
		t.Fatal(err)
	}
	m := http.NewServeMux()
	m.Handle(pattern, mw(h))
	return m
}

type result struct {
	status int
	header http.Header
	body   string
}

func do(h http.Handler, method, target string, headers ...string) result {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return result{status: w.Code, header: w.Header(), body: w.Body.String()}
}

func (r result) cacheStatus() string { return r.header.Get("Cache-Status") }

func (r result) isHit() bool { return strings.Contains(r.cacheStatus(), "; hit") }

// storeFuncs injects errors into a store.
type storeFuncs struct {
	storage.Store
	get func() error
	set func() error
}

func (s storeFuncs) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	if s.get != nil {
		if err := s.get(); err != nil {
			return nil, err
		}
	}
	return s.Store.Get(ctx, bucket, field)
}

func (s storeFuncs) Set(ctx context.Context, bucket, field string, v []byte, o storage.SetOptions) error {
	if s.set != nil {
		if err := s.set(); err != nil {
			return err
		}
	}
	return s.Store.Set(ctx, bucket, field, v, o)
}

// newMemStore returns an empty in-process store.
func newMemStore(t testing.TB) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// httptestRequest is a request with a body, as a server would read it.
func httptestRequest(method, target, body string) *http.Request {
	return httptest.NewRequest(method, target, strings.NewReader(body))
}

// doRequest serves r with h and returns the response.
func doRequest(h http.Handler, r *http.Request) result {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return result{status: w.Code, header: w.Header(), body: w.Body.String()}
}

// waiting returns the number of requests waiting on any flight now
// (tests only).
func (fs *flights) waiting() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, f := range fs.m {
		n += int(f.waiters.Load())
	}
	return n
}
