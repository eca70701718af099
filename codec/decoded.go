package codec

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// DecodedCache keeps the decoded bodies of recently served entries, keyed
// by the stored bytes they were decoded from, so that the hits on a hot
// entry whose stored form the client cannot take (a dictionary-compressed
// body, or gzip to a client that does not accept it) decode it once rather
// than on every hit.
//
// It caches work, not entries: every hit still reads the entry from the
// store and looks its stored bytes up here, compared in full, so a purge, a
// refill or an eviction is seen exactly as without it. Bodies are shared by
// concurrent hits and never modified. When a shard is full, random
// bodies make room: a hot entry is back after its next hit.
type DecodedCache struct {
	seed   maphash.Seed
	limit  int // bytes per shard
	shards [decodedShards]decodedShard
}

const (
	decodedShards = 16
	// decodedMinStored is the smallest stored body worth caching the
	// decoding of: smaller ones decode faster than the lookup.
	decodedMinStored = 128
)

type decodedShard struct {
	mu    sync.Mutex
	m     map[uint64]*decodedBody
	bytes int
}

type decodedBody struct{ stored, body []byte }

// NewDecodedCache returns a cache of at most maxBytes of stored and
// decoded bytes together, or nil, which caches nothing and whose methods
// may be called, when maxBytes is 0 or less.
func NewDecodedCache(maxBytes int) *DecodedCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &DecodedCache{seed: maphash.MakeSeed(), limit: max(maxBytes/decodedShards, 1)}
	for i := range c.shards {
		c.shards[i].m = map[uint64]*decodedBody{}
	}
	return c
}

func (c *DecodedCache) shard(stored []byte) (*decodedShard, uint64) {
	h := maphash.Bytes(c.seed, stored)
	return &c.shards[h%decodedShards], h
}

// Get returns the decoded body of stored, or nil. The caller must not
// modify it.
func (c *DecodedCache) Get(stored []byte) []byte {
	if c == nil || len(stored) < decodedMinStored {
		return nil
	}
	s, h := c.shard(stored)
	s.mu.Lock()
	d := s.m[h]
	s.mu.Unlock()
	if d == nil || !bytes.Equal(d.stored, stored) {
		return nil
	}
	return d.body
}

// Takes reports whether Put would keep a decoded body of bodyLen bytes
// decoded from storedLen stored bytes, so that a caller can skip copying
// one it would not.
func (c *DecodedCache) Takes(storedLen, bodyLen int) bool {
	return c != nil && storedLen >= decodedMinStored && storedLen+bodyLen <= c.limit/4
}

// Put records body as the decoded form of stored. It keeps a copy of
// stored and body itself, which the caller must not modify afterwards.
func (c *DecodedCache) Put(stored, body []byte) {
	if !c.Takes(len(stored), len(body)) {
		return
	}
	size := len(stored) + len(body)
	d := &decodedBody{stored: bytes.Clone(stored), body: body}
	s, h := c.shard(stored)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[h]; old != nil {
		s.bytes -= len(old.stored) + len(old.body)
		delete(s.m, h)
	}
	for k, v := range s.m { // random order: random eviction
		if s.bytes+size <= c.limit {
			break
		}
		s.bytes -= len(v.stored) + len(v.body)
		delete(s.m, k)
	}
	s.m[h] = d
	s.bytes += size
}

// Len returns the number of bodies c holds.
func (c *DecodedCache) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
