package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage"
)

// rediser is the part of the go-redis client the store uses.
type rediser interface {
	redis.Scripter
	HGet(ctx context.Context, key, field string) *redis.StringCmd
	HDel(ctx context.Context, key string, fields ...string) *redis.IntCmd
	Unlink(ctx context.Context, keys ...string) *redis.IntCmd
	SScan(ctx context.Context, key string, cursor uint64, match string, count int64) *redis.ScanCmd
	Publish(ctx context.Context, channel string, message any) *redis.IntCmd
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// scanner is one node of the deployment, which SCAN walks.
type scanner interface {
	Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
}

// Store is a readthrough store in Redis. It is safe for concurrent use; one
// Store per process is meant to be shared by every middleware instance, since
// each Store holds one pub/sub subscription. Create it with [New] and stop it
// with [Store.Close].
type Store struct {
	rdb    rediser
	rs     *redsync.Redsync
	prefix string
	// multiSlot is set on clients that spread keys over several nodes
	// (Redis Cluster, Ring), where one command cannot name keys of
	// different slots.
	multiSlot bool
	// eachNode calls fn on every node that holds keys (every master of a
	// cluster); on a single Redis on the client itself.
	eachNode func(ctx context.Context, fn func(context.Context, scanner) error) error
	sub      *subscriber
}

// Option configures a [Store] in [New].
type Option interface {
	apply(*options)
}

type options struct {
	prefix      string
	watchBound  time.Duration
	healthEvery time.Duration
}

type prefixOption string

func (p prefixOption) apply(o *options) { o.prefix = string(p) }

// WithPrefix sets the prefix of every key and channel the store uses, so
// that several services or environments can share one Redis. The default
// is "rt". It must be non-empty and must not contain '{', '}', spaces or
// control characters; [New] returns an error otherwise.
func WithPrefix(p string) Option { return prefixOption(p) }

type watchBoundOption time.Duration

func (d watchBoundOption) apply(o *options) { o.watchBound = time.Duration(d) }

// WithWatchBound sets the longest [Store.Watch] waits for the store's
// subscription to be confirmed by Redis while it is being opened or
// reopened. Past it Watch returns a channel that may never fire, and the
// caller falls back on its own wait bound. The default is one second; zero
// or less keeps it.
func WithWatchBound(d time.Duration) Option { return watchBoundOption(d) }

// New returns a store on client. The client stays the caller's: Close does
// not close it. New returns an error for a nil client or an invalid prefix.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	o := options{prefix: "rt", watchBound: time.Second, healthEvery: 15 * time.Second}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := checkPrefix(o.prefix); err != nil {
		return nil, err
	}
	s := &Store{
		rdb:    client,
		rs:     redsync.New(goredis.NewPool(client)),
		prefix: o.prefix,
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		s.multiSlot = true
		s.eachNode = func(ctx context.Context, fn func(context.Context, scanner) error) error {
			return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
				return fn(ctx, node)
			})
		}
	case *redis.Ring:
		s.multiSlot = true
		s.eachNode = func(ctx context.Context, fn func(context.Context, scanner) error) error {
			return c.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
				return fn(ctx, node)
			})
		}
	default:
		s.eachNode = func(ctx context.Context, fn func(context.Context, scanner) error) error {
			return fn(ctx, client)
		}
	}
	s.sub = newSubscriber(client, o.prefix+":fill", o.watchBound, o.healthEvery)
	return s, nil
}

func checkPrefix(p string) error {
	if p == "" {
		return errors.New("redisstore: empty prefix")
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("redisstore: prefix %q is not UTF-8", p)
	}
	for _, r := range p {
		if r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("redisstore: prefix %q contains %q", p, r)
		}
	}
	return nil
}

func checkBucket(bucket string) error {
	if strings.ContainsAny(bucket, "{}") {
		return fmt.Errorf("redisstore: bucket %q contains a brace", bucket)
	}
	return nil
}

// BucketKey returns the Redis key of bucket's hash, "<prefix>:b:{<bucket>}".
// Tests and the admin inspect view use it to look at a bucket directly.
func (s *Store) BucketKey(bucket string) string {
	return s.prefix + ":b:{" + bucket + "}"
}

// lockKey is the key of the fill lock of one field.
func (s *Store) lockKey(bucket, field string) string {
	return s.prefix + ":l:{" + bucket + "}:" + field
}

// tagKey is the key of a tag's set of bucket keys.
func (s *Store) tagKey(tag string) string {
	return s.prefix + ":t:" + tag
}

// Get returns the value of field in bucket with one HGET, or an error
// matching [storage.ErrNotFound] when the bucket or the field does not exist.
func (s *Store) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	b, err := s.rdb.HGet(ctx, s.BucketKey(bucket), field).Bytes()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, storage.ErrNotFound
		}
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	return b, nil
}

// maxEvict bounds the fields one Set evicts, to keep the script short. A
// bucket only exceeds its bound by more than one when the bound was lowered;
// it then shrinks by up to maxEvict fields per write.
const maxEvict = 100

// setScript stores one field and maintains its bucket in one atomic step.
//
//	KEYS[1]  the bucket key
//	ARGV[1]  the field
//	ARGV[2]  the value
//	ARGV[3]  the lifetime the bucket needs, in milliseconds; 0 leaves it
//	ARGV[4]  the most fields the bucket may hold; 0 is no bound
//	ARGV[5]  the most fields to evict in this call
//
// Victims are random fields other than the one written (HRANDFIELD with a
// count returns distinct fields, so excess+1 of them hold at least excess
// others). The TTL only grows: PTTL is -1 for a key without one, so such a
// key gets one. It returns the number of fields evicted.
var setScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local evicted = 0
local bound = tonumber(ARGV[4])
if bound > 0 then
  local excess = redis.call('HLEN', KEYS[1]) - bound
  if excess > tonumber(ARGV[5]) then
    excess = tonumber(ARGV[5])
  end
  if excess > 0 then
    local victims = redis.call('HRANDFIELD', KEYS[1], excess + 1)
    for _, f in ipairs(victims) do
      if evicted >= excess then
        break
      end
      if f ~= ARGV[1] then
        redis.call('HDEL', KEYS[1], f)
        evicted = evicted + 1
      end
    end
  end
end
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return evicted
`)

// Set stores value as field of bucket in one round trip: it grows the
// bucket's lifetime to at least opt.TTL (never shortens it; zero leaves it
// as it is), and when the bucket then holds more than opt.MaxFields fields
// it evicts random other fields. When opt.Tags is not empty a second round
// trip records the bucket under each tag; if that one fails, Set returns an
// error although the value was stored.
func (s *Store) Set(ctx context.Context, bucket, field string, value []byte, opt storage.SetOptions) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	key := s.BucketKey(bucket)
	ttl := opt.TTL.Milliseconds()
	if opt.TTL > 0 && ttl == 0 {
		ttl = 1
	}
	err := setScript.Run(ctx, s.rdb, []string{key},
		field, value, ttl, max(opt.MaxFields, 0), maxEvict).Err()
	if err != nil {
		return fmt.Errorf("redisstore: set: %w", err)
	}
	if len(opt.Tags) == 0 {
		return nil
	}
	ms := strconv.FormatInt(ttl, 10)
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, tag := range opt.Tags {
			tk := s.tagKey(tag)
			p.SAdd(ctx, tk, key)
			if ttl > 0 {
				// NX gives a TTL to a set without one, GT grows an
				// existing one: together, "at least ttl".
				p.Do(ctx, "pexpire", tk, ms, "nx")
				p.Do(ctx, "pexpire", tk, ms, "gt")
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: record tags: %w", err)
	}
	return nil
}

// Delete removes field from bucket with one HDEL. Deleting a missing field
// is not an error.
func (s *Store) Delete(ctx context.Context, bucket, field string) error {
	if err := s.rdb.HDel(ctx, s.BucketKey(bucket), field).Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// Close stops the store's subscription and its goroutine. It does not close
// the client. Close is idempotent and always returns nil.
func (s *Store) Close() error {
	s.sub.close()
	return nil
}
