package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// scanCount is the COUNT hint of SCAN and SSCAN, and so about the most keys
// one UNLINK names: large enough to purge quickly, small enough that no
// single command blocks Redis for long.
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

// unlink removes keys in one round trip and returns how many existed. On a
// cluster the keys may live in different slots, so each gets its own UNLINK
// in one pipeline.
func (s *Store) unlink(ctx context.Context, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if !s.multiSlot {
		n, err := s.rdb.Unlink(ctx, keys...).Result()
		if err != nil {
			return 0, fmt.Errorf("unlink: %w", err)
		}
		return n, nil
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Unlink(ctx, k)
		}
		return nil
	})
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	if err != nil {
		return n, fmt.Errorf("unlink: %w", err)
	}
	return n, nil
}

// scanUnlink removes every key matching the glob pattern match on every
// node, in batches of about scanCount keys, and returns how many it removed.
func (s *Store) scanUnlink(ctx context.Context, match string) (int64, error) {
	var total atomic.Int64
	err := s.eachNode(ctx, func(ctx context.Context, node scanner) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			n, err := s.unlink(ctx, keys)
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

// PurgeBucket removes bucket with all its fields (one UNLINK) and returns 1
// when it existed, 0 otherwise.
func (s *Store) PurgeBucket(ctx context.Context, bucket string) (int64, error) {
	if err := checkBucket(bucket); err != nil {
		return 0, err
	}
	n, err := s.rdb.Unlink(ctx, s.BucketKey(bucket)).Result()
	if err != nil {
		return 0, fmt.Errorf("redisstore: purge bucket: %w", err)
	}
	return n, nil
}

// PurgePrefix removes every bucket whose name starts with bucketPrefix, for
// example every bucket of one route, and returns how many it removed. It
// walks the keyspace of every master with SCAN and removes the matches in
// batches, so it never blocks Redis for long; buckets written while it runs
// may survive. On error it returns how many it removed so far.
func (s *Store) PurgePrefix(ctx context.Context, bucketPrefix string) (int64, error) {
	if err := checkBucket(bucketPrefix); err != nil {
		return 0, err
	}
	match := globEscape(s.prefix) + ":b:{" + globEscape(bucketPrefix) + "*"
	n, err := s.scanUnlink(ctx, match)
	if err != nil {
		return n, fmt.Errorf("redisstore: purge prefix: %w", err)
	}
	return n, nil
}

// PurgeTag removes every bucket recorded under tag, then the tag's set, and
// returns how many buckets it removed. It reads the set with SSCAN and
// removes the buckets in batches. On error it returns how many it removed so
// far, and the set is kept for a retry.
func (s *Store) PurgeTag(ctx context.Context, tag string) (int64, error) {
	key := s.tagKey(tag)
	// Only keys of this store's buckets are removed, whatever else the
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
		keys := members[:0]
		for _, m := range members {
			if strings.HasPrefix(m, own) {
				keys = append(keys, m)
			}
		}
		n, err := s.unlink(ctx, keys)
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

// PurgeAll removes every key under the store's prefix (buckets, tag sets and
// locks; held locks are lost) on every master, with SCAN and batched
// UNLINKs, and returns how many keys it removed. On error it returns how
// many it removed so far.
func (s *Store) PurgeAll(ctx context.Context) (int64, error) {
	n, err := s.scanUnlink(ctx, globEscape(s.prefix)+":*")
	if err != nil {
		return n, fmt.Errorf("redisstore: purge all: %w", err)
	}
	return n, nil
}
