package memstore

import (
	"context"
	"strings"
	"time"
)

// tombstone replaces bucket, live or not, with a purge tombstone: no
// fields, the generation one higher than the live bucket's (or 1), and a
// lifetime of the fence TTL, and reports the bucket to the trackers. It
// returns whether the bucket held at least one field. The caller holds
// s.mu.
func (s *Store) tombstone(name string, now time.Time) bool {
	var (
		gen  uint64
		full bool
	)
	if b := s.bucket(name, now); b != nil {
		gen, full = b.gen, len(b.fields) > 0
	}
	s.buckets[name] = &memBucket{
		fields:  make(map[string][]byte),
		gen:     gen + 1,
		expires: now.Add(s.fenceTTL),
	}
	s.changed(name)
	return full
}

// PurgeBucket implements [storage.Purger.PurgeBucket].
func (s *Store) PurgeBucket(_ context.Context, bucket string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tombstone(bucket, time.Now()) {
		return 1, nil
	}
	return 0, nil
}

// PurgePrefix implements [storage.Purger.PurgePrefix]. It holds the
// store's mutex throughout, so no bucket written while it runs survives
// it.
func (s *Store) PurgePrefix(_ context.Context, bucketPrefix string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	purge := make(map[string]struct{})
	for name := range s.buckets {
		if strings.HasPrefix(name, bucketPrefix) && s.bucket(name, now) != nil {
			purge[name] = struct{}{}
		}
	}
	for k := range s.locks {
		if strings.HasPrefix(k.bucket, bucketPrefix) && s.lock(k, now) != nil {
			purge[k.bucket] = struct{}{}
		}
	}
	var n int64
	for name := range purge {
		if s.tombstone(name, now) {
			n++
		}
	}
	return n, nil
}

// PurgeTag implements [storage.Purger.PurgeTag].
func (s *Store) PurgeTag(_ context.Context, tag string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	t := s.tag(tag, now)
	if t == nil {
		return 0, nil
	}
	var n int64
	for name := range t.buckets {
		if s.tombstone(name, now) {
			n++
		}
	}
	delete(s.tags, tag)
	return n, nil
}

// PurgeAll implements [storage.Purger.PurgeAll]: the Store holds nothing
// but the cache's, so it purges every bucket, tag and lock, and keeps the
// compression dictionaries.
func (s *Store) PurgeAll(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	purge := make(map[string]struct{}, len(s.buckets))
	for name := range s.buckets {
		if s.bucket(name, now) != nil {
			purge[name] = struct{}{}
		}
	}
	var n int64
	for _, t := range s.tags {
		if !expired(t.expires, now) {
			n++
		}
	}
	for k, l := range s.locks {
		if !expired(l.expires, now) {
			n++
			purge[k.bucket] = struct{}{}
		}
	}
	for name := range purge {
		if s.tombstone(name, now) {
			n++
		}
	}
	clear(s.tags)
	clear(s.locks)
	return n, nil
}
