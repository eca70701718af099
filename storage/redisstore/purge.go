package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// scanCount is the COUNT hint of SCAN and SSCAN, and so about the most keys
// one pipelined batch of purges names: large enough to purge quickly, small
// enough that no single command blocks Redis for long.
const scanCount = 1000

// globEscape escapes the characters that Redis glob patterns (SCAN MATCH)
// treat specially, so that s matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\^`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// tombstoneScript replaces one bucket with a purge tombstone in one atomic
// step.
//
//	KEYS[1]  the bucket key
//	ARGV[1]  the fence TTL, in milliseconds
//
// It reads the bucket's generation (the field "\0g"; absent or not a
// number counts as 0) and its number of entry fields, deletes the key
// (UNLINK, which frees a large hash off the main thread) and recreates it
// as a hash holding only the generation, one higher, with the fence TTL.
// It does the same for a bucket that does not exist, which then gets
// generation 1. It returns 1 when the bucket held at least one entry field
// (or was, against the key layout, not a hash), else 0, so a tombstone
// that is purged again is not counted again.
var tombstoneScript = redis.NewScript(`
local gen = '\0g'
local kind = redis.call('TYPE', KEYS[1])['ok']
local g = false
local entries = 0
if kind == 'hash' then
  g = redis.call('HGET', KEYS[1], gen)
  entries = redis.call('HLEN', KEYS[1])
  if g then
    entries = entries - 1
  end
elseif kind ~= 'none' then
  entries = 1
end
redis.call('UNLINK', KEYS[1])
redis.call('HSET', KEYS[1], gen, string.format('%d', (tonumber(g) or 0) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if entries > 0 then
  return 1
end
return 0
`)

// scriptsPerTrip bounds the tombstone scripts of one pipelined round trip.
// A script costs Redis a few microseconds, but miniredis (the examples'
// embedded server) runs each in a fresh Lua interpreter, which takes about
// a millisecond, more under the race detector: a whole SCAN page in one
// pipeline could outlast the client's read timeout.
const scriptsPerTrip = 100

// purge replaces each of buckets (bucket keys) with a tombstone, one
// script run per key, and removes each of others with UNLINK, in pipelined
// round trips of at most scriptsPerTrip scripts. It returns the number of
// buckets that held at least one entry field plus the number of others
// that existed, and on error what it counted so far.
func (s *Store) purge(ctx context.Context, buckets, others []string) (int64, error) {
	var total int64
	for len(buckets) > 0 || len(others) > 0 {
		batch := buckets[:min(len(buckets), scriptsPerTrip)]
		buckets = buckets[len(batch):]
		n, err := s.purgeTrip(ctx, batch, others)
		others = nil
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// purgeTrip is one round trip of purge: a pipeline of one tombstone script
// per bucket key and the UNLINKs of others. On a single node the others
// share one UNLINK; on a cluster every key has its own command, since the
// keys live in different slots. A second round trip re-runs with EVAL the
// scripts of a node that did not have the script loaded.
func (s *Store) purgeTrip(ctx context.Context, buckets, others []string) (int64, error) {
	tombs := make([]*redis.Cmd, len(buckets))
	var unlinks []*redis.IntCmd
	// The pipeline's own error is that of its first failed command, which
	// may be a NOSCRIPT handled below: each command is checked instead.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range buckets {
			tombs[i] = tombstoneScript.EvalSha(ctx, p, []string{k}, s.fenceTTL)
		}
		switch {
		case len(others) == 0:
		case s.multiSlot:
			for _, k := range others {
				unlinks = append(unlinks, p.Unlink(ctx, k))
			}
		default:
			unlinks = append(unlinks, p.Unlink(ctx, others...))
		}
		return nil
	})
	var retry []int
	for i, c := range tombs {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range retry {
				tombs[i] = tombstoneScript.Eval(ctx, p, []string{buckets[i]}, s.fenceTTL)
			}
			return nil
		})
	}
	var (
		n        int64
		firstErr error
	)
	for _, c := range tombs {
		v, err := c.Int64()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("tombstone: %w", err)
			}
			continue
		}
		n += v
	}
	for _, c := range unlinks {
		v, err := c.Result()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("unlink: %w", err)
			}
			continue
		}
		n += v
	}
	return n, firstErr
}

// lockBucket returns the key of the bucket whose fill lock is key (a key
// starting with "<prefix>:l:{"), or false when key is not a lock key.
func (s *Store) lockBucket(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+":l:{")
	if !ok {
		return "", false
	}
	// Buckets hold no braces, so the first '}' closes the hash tag.
	bucket, _, ok := strings.Cut(rest, "}")
	if !ok {
		return "", false
	}
	return s.BucketKey(bucket), true
}

// sortFunc sorts one batch of scanned keys into bucket keys to tombstone
// and other keys to unlink.
type sortFunc func(keys []string) (buckets, others []string)

// scanPurge walks every node's keys matching the glob pattern match with
// SCAN, in batches of about scanCount keys, sorts each batch with sort and
// purges it. SCAN may return a key that a purge of this walk recreated as
// a tombstone; purging it again only raises its generation and does not
// count it. It returns the total purge counts.
func (s *Store) scanPurge(ctx context.Context, match string, sort sortFunc) (int64, error) {
	var total atomic.Int64
	err := s.eachNode(ctx, func(ctx context.Context, node scanner) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			buckets, others := sort(keys)
			n, err := s.purge(ctx, buckets, others)
			total.Add(n)
			if err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	})
	return total.Load(), err
}

// PurgeBucket implements [storage.Purger.PurgeBucket] with one run of
// the tombstone script on the bucket's key (see the package
// documentation, "Purges and fences").
func (s *Store) PurgeBucket(ctx context.Context, bucket string) (int64, error) {
	if err := checkBucket(bucket); err != nil {
		return 0, err
	}
	n, err := tombstoneScript.Run(ctx, s.rdb, []string{s.BucketKey(bucket)}, s.fenceTTL).Int64()
	if err != nil {
		return 0, fmt.Errorf("redisstore: purge bucket: %w", err)
	}
	return n, nil
}

// PurgePrefix implements [storage.Purger.PurgePrefix]. It walks the
// keyspace of every master with SCAN MATCH "<prefix>:[bl]:{<bucketPrefix>*"
// (the prefix's glob characters escaped), which finds the buckets and the
// fill locks under the prefix, and runs the tombstone script on each
// bucket in pipelined batches.
func (s *Store) PurgePrefix(ctx context.Context, bucketPrefix string) (int64, error) {
	if err := checkBucket(bucketPrefix); err != nil {
		return 0, err
	}
	match := globEscape(s.prefix) + ":[bl]:{" + globEscape(bucketPrefix) + "*"
	bucketKey := s.prefix + ":b:{"
	n, err := s.scanPurge(ctx, match, func(keys []string) ([]string, []string) {
		var buckets []string
		seen := make(map[string]bool, len(keys))
		for _, k := range keys {
			if !strings.HasPrefix(k, bucketKey) {
				var ok bool
				if k, ok = s.lockBucket(k); !ok {
					continue
				}
			}
			if !seen[k] {
				seen[k] = true
				buckets = append(buckets, k)
			}
		}
		return buckets, nil
	})
	if err != nil {
		return n, fmt.Errorf("redisstore: purge prefix: %w", err)
	}
	return n, nil
}

// PurgeTag implements [storage.Purger.PurgeTag]. It reads the tag's set
// with SSCAN, runs the tombstone script on its buckets in pipelined
// batches, then removes the set. On error the set is kept for a retry.
func (s *Store) PurgeTag(ctx context.Context, tag string) (int64, error) {
	key := s.tagKey(tag)
	// Only keys of this store's buckets are purged, whatever else the
	// set may have been given.
	own := s.prefix + ":b:{"
	var (
		total  int64
		cursor uint64
	)
	for {
		members, next, err := s.rdb.SScan(ctx, key, cursor, "", scanCount).Result()
		if err != nil {
			return total, fmt.Errorf("redisstore: purge tag: sscan: %w", err)
		}
		buckets := members[:0]
		for _, m := range members {
			if strings.HasPrefix(m, own) && strings.HasSuffix(m, "}") {
				buckets = append(buckets, m)
			}
		}
		n, err := s.purge(ctx, buckets, nil)
		total += n
		if err != nil {
			return total, fmt.Errorf("redisstore: purge tag: %w", err)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if err := s.rdb.Unlink(ctx, key).Err(); err != nil {
		return total, fmt.Errorf("redisstore: purge tag: unlink set: %w", err)
	}
	return total, nil
}

// PurgeAll implements [storage.Purger.PurgeAll] on every key under the
// store's prefix: it walks them on every master with SCAN ("<prefix>:*")
// and, in pipelined batches, runs the tombstone script on each bucket and
// on the bucket of each fill lock, and UNLINKs the locks, tag sets and any
// other key, except the routes' compression dictionaries
// ("<prefix>:d:{<route>}"). Keys of other prefixes on the same Redis are
// left alone.
func (s *Store) PurgeAll(ctx context.Context) (int64, error) {
	bucketKey := s.prefix + ":b:{"
	dictionaryKey := s.prefix + ":d:{"
	n, err := s.scanPurge(ctx, globEscape(s.prefix)+":*", func(keys []string) ([]string, []string) {
		var buckets, others []string
		seen := make(map[string]bool)
		add := func(k string) {
			if !seen[k] {
				seen[k] = true
				buckets = append(buckets, k)
			}
		}
		for _, k := range keys {
			if strings.HasPrefix(k, bucketKey) {
				add(k)
				continue
			}
			if strings.HasPrefix(k, dictionaryKey) {
				continue
			}
			others = append(others, k)
			if b, ok := s.lockBucket(k); ok {
				add(b)
			}
		}
		return buckets, others
	})
	if err != nil {
		return n, fmt.Errorf("redisstore: purge all: %w", err)
	}
	return n, nil
}
