package httpcache

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

func TestDecodedCache(t *testing.T) {
	c := newDecodedCache(16 * 64 << 10) // 64 KiB per shard
	stored := bytes.Repeat([]byte("s"), 200)
	if c.get(stored) != nil {
		t.Fatal("empty cache returned a body")
	}
	c.put(stored, []byte("body"))
	if got := c.get(stored); string(got) != "body" {
		t.Fatalf("get = %q", got)
	}
	// The stored bytes are compared in full, not only by hash: a body put
	// under other bytes with the same hash is not returned.
	s, h := c.shard(stored)
	s.mu.Lock()
	s.m[h] = &decodedBody{stored: bytes.Repeat([]byte("t"), 200), body: []byte("other")}
	s.mu.Unlock()
	if got := c.get(stored); got != nil {
		t.Fatalf("a colliding entry was returned: %q", got)
	}
	// The cache kept a copy of the stored bytes: changing the caller's
	// slice changes nothing.
	other := bytes.Repeat([]byte("u"), 200)
	c.put(other, []byte("u-body"))
	other[0] = 'x'
	if got := c.get(bytes.Repeat([]byte("u"), 200)); string(got) != "u-body" {
		t.Fatalf("after the caller changed its slice: %q", got)
	}
	// Small stored bodies are not worth it; neither are huge ones.
	c.put([]byte("tiny"), []byte("tiny body"))
	if c.get([]byte("tiny")) != nil {
		t.Error("a body under decodedMinStored was cached")
	}
	huge := bytes.Repeat([]byte("h"), 32<<10)
	c.put(huge, make([]byte, 32<<10))
	if c.get(huge) != nil {
		t.Error("a body over a quarter of a shard was cached")
	}
	var nilCache *decodedCache
	nilCache.put(stored, []byte("x"))
	if nilCache.get(stored) != nil {
		t.Error("a nil cache returned a body")
	}
}

func TestDecodedCacheStaysWithinItsBound(t *testing.T) {
	const limit = 16 * 8 << 10
	c := newDecodedCache(limit)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				stored := []byte(fmt.Sprintf("%0200d", g*10000+i))
				c.put(stored, make([]byte, 1000))
				c.get(stored)
			}
		})
	}
	wg.Wait()
	total := 0
	for i := range c.shards {
		s := &c.shards[i]
		sum := 0
		for _, d := range s.m {
			sum += len(d.stored) + len(d.body)
		}
		if sum != s.bytes || s.bytes > c.limit {
			t.Errorf("shard %d: accounted %d, holds %d, limit %d", i, s.bytes, sum, c.limit)
		}
		total += sum
	}
	if total == 0 || total > limit {
		t.Errorf("cache holds %d bytes, want some and at most %d", total, limit)
	}
}

// The decoded cache never serves a body the store no longer holds: a
// refill with a new body, for a client that does not accept gzip, sends
// the new body.
func TestDecodedBodyFollowsTheStore(t *testing.T) {
	for _, comp := range []policy.Compression{policy.CompressGzip, policy.CompressDictionary} {
		t.Run(string(comp), func(t *testing.T) {
			store := storage.NewMemoryStore()
			c := newTestCache(t, store)
			var mu sync.Mutex
			version := "one"
			items := itemOrigin()
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				if r.PathValue("id") != "7" {
					items.ServeHTTP(w, r)
					return
				}
				mu.Lock()
				v := version
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"version":%q,"doc":%s}`, v, itemDoc(7))
			}}
			p := policy.Policy{TTL: time.Hour, Compression: comp}
			h := mux(t, c, "GET /items/{id}", p, o)
			if comp == policy.CompressDictionary {
				train(t, c, h, 100)
			}
			do(h, "GET", "/items/7")
			for range 3 {
				if r := do(h, "GET", "/items/7"); !r.isHit() || !strings.Contains(r.body, `"version":"one"`) {
					t.Fatalf("hit: %q, %.30q", r.cacheStatus(), r.body)
				}
			}
			if decodedEntries(c.decoded) == 0 {
				t.Fatal("the hits did not go through the decoded-body cache: the test tests nothing")
			}
			mu.Lock()
			version = "two"
			mu.Unlock()
			if _, err := c.PurgeURL(t.Context(), "http://example.com/items/7"); err != nil {
				t.Fatal(err)
			}
			do(h, "GET", "/items/7")
			r := do(h, "GET", "/items/7")
			if !r.isHit() || !strings.Contains(r.body, `"version":"two"`) {
				t.Fatalf("after the refill: %q, %.30q; want a hit on the new body", r.cacheStatus(), r.body)
			}
		})
	}
}

// decodedEntries counts the bodies c holds.
func decodedEntries(c *decodedCache) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
