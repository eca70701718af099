package httpcache

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// keyOf is the cache key of target on a route of pattern under p.
func keyOf(t *testing.T, pattern, target string, p policy.Policy) keying.Key {
	t.Helper()
	kr, err := keying.Compile(pattern, p)
	if err != nil {
		t.Fatal(err)
	}
	m := http.NewServeMux()
	var k keying.Key
	m.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) { k, _ = kr.Key(r) })
	do(m, "GET", target)
	return k
}

// plant stores e as the entry of target, as another writer would.
func plant(t *testing.T, s *memstore.Store, pattern, target string, p policy.Policy, e *storage.Entry) {
	t.Helper()
	k := keyOf(t, pattern, target, p)
	err := s.Set(context.Background(), k.Bucket, k.Field, envelope.Encode(nil, e), storage.SetOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
}

// An entry in a coding this release cannot decode (another writer's) is a
// miss, even for a client that lists the coding: ENVELOPE.md's rule.
func TestUnsupportedCodingIsAMiss(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	o := textOrigin(strings.Repeat("fresh from the origin ", 20))
	h := mux(t, c, "GET /doc/{id}", policy.Policy{TTL: time.Hour}, o)
	plant(t, store, "GET /doc/{id}", "/doc/1", policy.Policy{}, &storage.Entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}},
		Stored: time.Now(), Fresh: time.Hour, Coding: "br", CacheEncoded: true, Body: []byte("\x1b\x00 not brotli"),
	})
	if in, err := c.Inspect(context.Background(), "http://example.com/doc/1", nil); err != nil || in.State != "unknown-coding" || in.Coding != "br" {
		t.Errorf("Inspect = %+v, %v; want state unknown-coding", in, err)
	}
	for _, accept := range []string{"br", ""} {
		r := do(h, "GET", "/doc/1", "Accept-Encoding", accept)
		if r.status != 200 || r.header.Get("Content-Encoding") != "" || !strings.HasPrefix(r.body, "fresh") {
			t.Errorf("Accept-Encoding %q: %d %q %q, want the origin's response", accept, r.status, r.header.Get("Content-Encoding"), r.body)
		}
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1 (the miss replaced the entry)", n)
	}
	if r := do(h, "GET", "/doc/1"); !r.isHit() {
		t.Errorf("after the refill: %q, want a hit", r.cacheStatus())
	}
}

// A stored body that does not decode for a client that needs it decoded
// is never sent: the request goes to the origin, and the entry is
// replaced.
func TestUndecodableBodyGoesToOrigin(t *testing.T) {
	store := newMemStore(t)
	var reported atomic.Int64
	c := newTestCache(t, store, WithOnError(func(_ context.Context, err error) {
		if errors.Is(err, codec.ErrCorrupt) {
			reported.Add(1)
		}
	}))
	o := textOrigin(strings.Repeat("fresh from the origin ", 20))
	h := mux(t, c, "GET /doc/{id}", policy.Policy{TTL: time.Hour}, o)
	// A gzip header, then garbage: it decodes as far as the first block.
	plant(t, store, "GET /doc/{id}", "/doc/1", policy.Policy{}, &storage.Entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}},
		Stored: time.Now(), Fresh: time.Hour, Coding: "gzip", CacheEncoded: true,
		Body: []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffgarbage that is not deflate"),
	})
	// An outer middleware's header survives; none of the entry's is left.
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Outer", "kept")
		h.ServeHTTP(w, r)
	})
	r := do(outer, "GET", "/doc/1")
	if r.status != 200 || !strings.HasPrefix(r.body, "fresh") || r.isHit() {
		t.Fatalf("undecodable entry: %d %q %q, want the origin's response", r.status, r.cacheStatus(), r.body)
	}
	if r.header.Get("X-Outer") != "kept" || r.header.Get("Age") != "" || r.header.Get("Content-Encoding") != "" {
		t.Errorf("headers after the undecodable entry: %v", r.header)
	}
	if reported.Load() == 0 {
		t.Error("the undecodable body was not reported")
	}
	if r := do(h, "GET", "/doc/1"); !r.isHit() || !strings.HasPrefix(r.body, "fresh") {
		t.Errorf("after the refill: %q, want a hit", r.cacheStatus())
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1", n)
	}
}

// An entry of an envelope version this release does not know (a newer
// release's) is a miss that is neither reported nor deleted: only the
// fill replaces it.
func TestUnknownVersionIsAQuietMiss(t *testing.T) {
	store := newMemStore(t)
	var reported atomic.Int64
	c := newTestCache(t, store, WithOnError(func(context.Context, error) { reported.Add(1) }))
	o := textOrigin("from the origin")
	gate := make(chan struct{})
	slow := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		<-gate
		o.ServeHTTP(w, r)
	}}
	h := mux(t, c, "GET /doc/{id}", policy.Policy{TTL: time.Hour}, slow)
	k := keyOf(t, "GET /doc/{id}", "/doc/1", policy.Policy{})
	future := append([]byte{3}, envelope.Encode(nil, &storage.Entry{Status: 200, Stored: time.Now(), Fresh: time.Hour, Body: []byte("new")})[1:]...)
	if err := store.Set(context.Background(), k.Bucket, k.Field, future, storage.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	done := make(chan result)
	go func() { done <- do(h, "GET", "/doc/1") }()
	// While the origin runs, the newer entry is still there.
	waitFor(t, "the origin call", func() bool { return slow.calls.Load() == 1 })
	if raw, err := store.Get(context.Background(), k.Bucket, k.Field); err != nil || raw[0] != 3 {
		t.Errorf("the unknown version's entry was removed before the fill: %v", err)
	}
	close(gate)
	if r := <-done; r.status != 200 || r.body != "from the origin" || r.isHit() {
		t.Fatalf("unknown version: %d %q %q, want the origin's response", r.status, r.cacheStatus(), r.body)
	}
	if n := reported.Load(); n != 0 {
		t.Errorf("%d errors reported for an unknown version, want none", n)
	}
	if r := do(h, "GET", "/doc/1"); !r.isHit() {
		t.Errorf("after the fill: %q, want a hit", r.cacheStatus())
	}
}

// A panic in a background refresh outside the origin (which the fill
// recovers itself) is recovered and reported, and the pool goes on.
func TestRefreshPanicRecovered(t *testing.T) {
	var reported atomic.Int64
	c := newTestCache(t, newMemStore(t), WithOnError(func(_ context.Context, err error) {
		if strings.Contains(err.Error(), "refresh panicked") {
			reported.Add(1)
		}
	}))
	ran := make(chan struct{})
	if res := c.refresh.start("k", func() { defer close(ran); panic("compressor fault") }, func() {}); res != started {
		t.Fatalf("refresh not started: %v", res)
	}
	<-ran
	waitFor(t, "the panic reported", func() bool { return reported.Load() == 1 })
	// The pool slot and the key are freed right after the report.
	again := make(chan struct{})
	waitFor(t, "a refresh of the key after the panic", func() bool {
		return c.refresh.start("k", func() { close(again) }, func() {}) == started
	})
	<-again
}
