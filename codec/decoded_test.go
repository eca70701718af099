package codec

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestDecodedCache(t *testing.T) {
	c := NewDecodedCache(16 * 64 << 10) // 64 KiB per shard
	stored := bytes.Repeat([]byte("s"), 200)
	if c.Get(stored) != nil {
		t.Fatal("empty cache returned a body")
	}
	c.Put(stored, []byte("body"))
	if got := c.Get(stored); string(got) != "body" {
		t.Fatalf("get = %q", got)
	}
	// The stored bytes are compared in full, not only by hash: a body put
	// under other bytes with the same hash is not returned.
	s, h := c.shard(stored)
	s.mu.Lock()
	s.m[h] = &decodedBody{stored: bytes.Repeat([]byte("t"), 200), body: []byte("other")}
	s.mu.Unlock()
	if got := c.Get(stored); got != nil {
		t.Fatalf("a colliding entry was returned: %q", got)
	}
	// The cache kept a copy of the stored bytes: changing the caller's
	// slice changes nothing.
	other := bytes.Repeat([]byte("u"), 200)
	c.Put(other, []byte("u-body"))
	other[0] = 'x'
	if got := c.Get(bytes.Repeat([]byte("u"), 200)); string(got) != "u-body" {
		t.Fatalf("after the caller changed its slice: %q", got)
	}
	// Small stored bodies are not worth it; neither are huge ones.
	c.Put([]byte("tiny"), []byte("tiny body"))
	if c.Get([]byte("tiny")) != nil {
		t.Error("a body under decodedMinStored was cached")
	}
	huge := bytes.Repeat([]byte("h"), 32<<10)
	c.Put(huge, make([]byte, 32<<10))
	if c.Get(huge) != nil {
		t.Error("a body over a quarter of a shard was cached")
	}
	var nilCache *DecodedCache
	nilCache.Put(stored, []byte("x"))
	if nilCache.Get(stored) != nil {
		t.Error("a nil cache returned a body")
	}
}

func TestDecodedCacheStaysWithinItsBound(t *testing.T) {
	const limit = 16 * 8 << 10
	c := NewDecodedCache(limit)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				stored := []byte(fmt.Sprintf("%0200d", g*10000+i))
				c.Put(stored, make([]byte, 1000))
				c.Get(stored)
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
