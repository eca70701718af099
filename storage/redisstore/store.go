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
	HMGet(ctx context.Context, key string, fields ...string) *redis.SliceCmd
	HDel(ctx context.Context, key string, fields ...string) *redis.IntCmd
	Unlink(ctx context.Context, keys ...string) *redis.IntCmd
	SScan(ctx context.Context, key string, cursor uint64, match string, count int64) *redis.ScanCmd
	Publish(ctx context.Context, channel string, message any) *redis.IntCmd
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
	SPublish(ctx context.Context, channel string, message any) *redis.IntCmd
	SSubscribe(ctx context.Context, channels ...string) *redis.PubSub
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// scanner is one node of the deployment, which SCAN walks.
type scanner interface {
	Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
}

// The interfaces of the storage contract that a Store implements.
var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Locker          = (*Store)(nil)
	_ storage.Fencer          = (*Store)(nil)
	_ storage.Purger          = (*Store)(nil)
	_ storage.Sampler         = (*Store)(nil)
	_ storage.DictionaryStore = (*Store)(nil)
	_ storage.Tracker         = (*Store)(nil)
)

// Store is a readthrough store in Redis. It implements [storage.Store],
// [storage.Locker], [storage.Fencer], [storage.Purger], [storage.Sampler],
// [storage.DictionaryStore], [storage.HealthChecker] and
// [storage.Tracker]; the method docs say what those leave open: the
// commands, round trips and keys. It is safe for concurrent use; one
// Store per process is meant to be shared by every cache, since each Store
// holds one pub/sub subscription (and each [Store.Track] one tracking
// connection per node). Create it with [New] and stop it, with its
// trackers, with [Store.Close].
type Store struct {
	rdb    rediser
	rs     *redsync.Redsync
	prefix string
	// fenceTTL is the lifetime of a purge tombstone, in milliseconds.
	fenceTTL int64
	// multiSlot is set on clients that spread keys over several nodes
	// (Redis Cluster, Ring), where one command cannot name keys of
	// different slots.
	multiSlot bool
	// eachNode calls fn on every node that holds keys (every master of a
	// cluster); on a single Redis on the client itself.
	eachNode func(ctx context.Context, fn func(context.Context, scanner) error) error
	sub      *subscriber
	trackers trackers
}

// Option configures a [Store] in [New]. For every option, zero means the
// default, and a negative value makes New return an error.
type Option interface {
	apply(*options)
}

type options struct {
	prefix      string
	watchBound  time.Duration
	healthEvery time.Duration
	fenceTTL    time.Duration
}

// Defaults of the options.
const (
	defaultPrefix      = "rt"
	defaultWatchBound  = time.Second
	defaultHealthEvery = 15 * time.Second
)

type prefixOption string

func (p prefixOption) apply(o *options) { o.prefix = string(p) }

// WithPrefix sets the prefix of every key and channel the store uses, so
// that several services or environments can share one Redis. Default
// "rt"; the empty string means the default. A prefix that is not UTF-8 or
// contains '{', '}', spaces or control characters is an error.
func WithPrefix(p string) Option { return prefixOption(p) }

type watchBoundOption time.Duration

func (d watchBoundOption) apply(o *options) { o.watchBound = time.Duration(d) }

// WithWatchBound sets the longest [Store.Watch] waits for the store's
// subscription to be confirmed by Redis while it is being opened or
// reopened, when its context does not end sooner. Past it Watch returns an
// error matching [storage.ErrWatchUnconfirmed], and the caller falls back
// on its own wait bound. Default one second; zero means the default;
// negative is an error.
func WithWatchBound(d time.Duration) Option { return watchBoundOption(d) }

type fenceTTLOption time.Duration

func (d fenceTTLOption) apply(o *options) { o.fenceTTL = time.Duration(d) }

// WithFenceTTL sets the lifetime of the tombstone a purge leaves in each
// purged bucket (see [storage.Fencer] and the package documentation,
// "Purges and fences"). A fill that read the bucket's generation before a
// purge is refused by its fenced [Store.Set] only while the tombstone, or
// the bucket refilled after it, lives: d must exceed the longest fill (the
// origin's time plus storing the response), or a slow fill may store a
// response older than the purge. It is kept to the millisecond, at least
// one. Default [storage.DefaultFenceTTL], two minutes; zero means the
// default; negative is an error.
func WithFenceTTL(d time.Duration) Option { return fenceTTLOption(d) }

// New returns a store on client. The client stays the caller's: Close does
// not close it. New returns an error for a nil client, an invalid option
// (naming it), or a client whose settings would let a slow or dead Redis
// hold requests past the cache's per-call deadlines: a *redis.Client
// (including one from [redis.NewFailoverClient]), *redis.ClusterClient or
// *redis.Ring must set ContextTimeoutEnabled: true, so that those
// deadlines reach the socket, and DialerRetries: 1, so that dialing a
// Redis that is down fails at once instead of being tried 5 times 100ms
// apart. The recommended settings:
//
//	redis.NewClient(&redis.Options{
//		Addr:                  addr,
//		ContextTimeoutEnabled: true, // required
//		DialerRetries:         1,    // required
//		MaxRetries:            -1,   // no retries: an error sends the request to the origin
//		DialTimeout:           200 * time.Millisecond,
//	})
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.resolve(); err != nil {
		return nil, err
	}
	if err := checkClient(client); err != nil {
		return nil, err
	}
	s := &Store{
		rdb:      client,
		rs:       redsync.New(goredis.NewPool(client)),
		prefix:   o.prefix,
		fenceTTL: millis(o.fenceTTL),
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
	s.sub.sharded = s.multiSlot
	return s, nil
}

// resolve checks the options and replaces each zero by its default.
func (o *options) resolve() error {
	if o.prefix == "" {
		o.prefix = defaultPrefix
	}
	if err := checkPrefix(o.prefix); err != nil {
		return fmt.Errorf("redisstore: WithPrefix(%q): %w", o.prefix, err)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"WithWatchBound", &o.watchBound, defaultWatchBound},
		{"WithFenceTTL", &o.fenceTTL, storage.DefaultFenceTTL},
		{"health check interval", &o.healthEvery, defaultHealthEvery},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			return fmt.Errorf("redisstore: %s(%v) is negative", d.name, *d.d)
		case *d.d == 0:
			*d.d = d.def
		}
	}
	return nil
}

// checkPrefix rejects a prefix that would break the key layout; its
// errors are wrapped by the caller.
func checkPrefix(p string) error {
	if !utf8.ValidString(p) {
		return errors.New("not UTF-8")
	}
	for _, r := range p {
		if r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("contains %q", r)
		}
	}
	return nil
}

// millis is d in whole milliseconds, at least 1 for a positive d.
func millis(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d > 0 && ms == 0 {
		ms = 1
	}
	return ms
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

// Get implements [storage.Store.Get] with one HGET on the bucket's hash,
// and no command at all for [storage.GenerationField].
func (s *Store) Get(ctx context.Context, bucket, field string) ([]byte, error) {
	if field == storage.GenerationField {
		return nil, storage.ErrNotFound
	}
	b, err := s.rdb.HGet(ctx, s.BucketKey(bucket), field).Bytes()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, storage.ErrNotFound
		}
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	return b, nil
}

// GetForFill implements [storage.Fencer.GetForFill] with one HMGET of
// field and of [storage.GenerationField], under which the bucket's hash
// holds its purge generation: a decimal count of purges, absent ("") in a
// bucket never purged.
func (s *Store) GetForFill(ctx context.Context, bucket, field string) ([]byte, string, error) {
	vals, err := s.rdb.HMGet(ctx, s.BucketKey(bucket), field, storage.GenerationField).Result()
	if err != nil {
		return nil, "", fmt.Errorf("redisstore: get for fill: %w", err)
	}
	if len(vals) != 2 {
		return nil, "", fmt.Errorf("redisstore: get for fill: HMGET returned %d values, want 2", len(vals))
	}
	gen, _ := vals[1].(string)
	v, ok := vals[0].(string)
	if !ok || field == storage.GenerationField {
		return nil, gen, storage.ErrNotFound
	}
	return []byte(v), gen, nil
}

// setScript stores one field and maintains its bucket in one atomic step.
//
//	KEYS[1]  the bucket key
//	ARGV[1]  the field
//	ARGV[2]  the value
//	ARGV[3]  the lifetime the bucket needs, in milliseconds; 0 leaves it
//	ARGV[4]  the most fields the bucket may hold; 0 is no bound
//	ARGV[5]  1 for a fenced write, 0 otherwise
//	ARGV[6]  the purge generation a fenced write expects
//
// A fenced write first compares the bucket's generation (the field "\0g",
// "" when absent) with ARGV[6] and writes nothing when they differ. Then,
// with a bound, a bucket that already holds that many fields or more
// refuses a field it does not hold: nothing is written, and its TTL is
// left as it is. The generation field is not an entry and does not count.
// A field the bucket holds is always overwritten, and no field is ever
// removed. The TTL only grows: PTTL is -1 for a key without one, so such
// a key gets one. It returns 0 when the value was stored, -1 when the
// fence refused the write and -2 when the bound did.
var setScript = redis.NewScript(`
local gen = '\0g'
if ARGV[5] == '1' and (redis.call('HGET', KEYS[1], gen) or '') ~= ARGV[6] then
  return -1
end
local bound = tonumber(ARGV[4])
if bound > 0
  and redis.call('HLEN', KEYS[1]) - redis.call('HEXISTS', KEYS[1], gen) >= bound
  and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 0
`)

// Set codes of setScript.
const (
	setStored = 0
	setPurged = -1
	setFull   = -2
)

// Set implements [storage.Store.Set] with one Lua script on the bucket's
// hash (the fence, the field bound, HSET and the TTL that only grows, kept
// to the millisecond, in one atomic step). When opt.Tags is not empty and
// the value was stored, a second, pipelined round trip adds the bucket's
// key to each tag's set and grows the set's TTL: tag sets live in other
// cluster slots than the bucket, so they cannot be part of the script. If
// that round trip fails, Set returns an error although the value was
// stored. A write Redis refuses (OOM under the noeviction policy) matches
// [storage.ErrRefused].
func (s *Store) Set(ctx context.Context, bucket, field string, value []byte, opt storage.SetOptions) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	if field == storage.GenerationField {
		return fmt.Errorf("redisstore: field %q is reserved", field)
	}
	key := s.BucketKey(bucket)
	ttl := millis(opt.TTL)
	fenced := 0
	if opt.Fenced {
		fenced = 1
	}
	code, err := setScript.Run(ctx, s.rdb, []string{key},
		field, value, ttl, max(opt.MaxFields, 0), fenced, opt.Generation).Int64()
	if err != nil {
		if refused(err) {
			return fmt.Errorf("redisstore: set: %w: %w", storage.ErrRefused, err)
		}
		return fmt.Errorf("redisstore: set: %w", err)
	}
	switch code {
	case setStored:
	case setPurged:
		return storage.ErrPurged
	case setFull:
		return storage.ErrBucketFull
	default:
		return fmt.Errorf("redisstore: set: script returned %d", code)
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
		if refused(err) {
			return fmt.Errorf("redisstore: record tags: %w: %w", storage.ErrRefused, err)
		}
		return fmt.Errorf("redisstore: record tags: %w", err)
	}
	return nil
}

// Delete implements [storage.Store.Delete] with one HDEL, and no command
// at all for [storage.GenerationField].
func (s *Store) Delete(ctx context.Context, bucket, field string) error {
	if field == storage.GenerationField {
		return nil
	}
	if err := s.rdb.HDel(ctx, s.BucketKey(bucket), field).Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// sampleScript returns ARGV[1] random fields of the hash KEYS[1] and
// their values, flat: field, value, field, value, ...
var sampleScript = redis.NewScript(`
local fields = redis.call('HRANDFIELD', KEYS[1], tonumber(ARGV[1]))
local out = {}
for _, f in ipairs(fields) do
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    out[#out + 1] = f
    out[#out + 1] = v
  end
end
return out
`)

// SampleFields returns up to n fields of bucket with their values, chosen
// by HRANDFIELD (Redis 6.2 and later) in one script run; never
// [storage.GenerationField].
func (s *Store) SampleFields(ctx context.Context, bucket string, n int) (map[string][]byte, error) {
	out := make(map[string][]byte, min(max(n, 0), 64))
	if n <= 0 {
		return out, nil
	}
	// One more than asked for, in case the generation field is drawn.
	flat, err := sampleScript.Run(ctx, s.rdb, []string{s.BucketKey(bucket)}, n+1).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: sample fields: %w", err)
	}
	for i := 0; i+1 < len(flat); i += 2 {
		if flat[i] != storage.GenerationField && len(out) < n {
			out[flat[i]] = []byte(flat[i+1])
		}
	}
	return out, nil
}

// Close stops the store's subscription and its goroutine, and every
// tracker started by [Store.Track], which then refuses to start new ones.
// It does not close the client. Close is idempotent and always returns
// nil.
func (s *Store) Close() error {
	s.sub.close()
	s.trackers.closeAll()
	return nil
}

// refused reports a Redis error reply that refuses a write while the
// server is otherwise healthy: out of memory under noeviction.
func refused(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "OOM ")
}

// checkClient rejects clients that would let a slow or dead Redis cost
// requests more than the cache's per-call deadlines, on the client types
// whose options it can read (*redis.Client, which includes Sentinel
// clients made by [redis.NewFailoverClient], *redis.ClusterClient and
// *redis.Ring):
//
//   - ContextTimeoutEnabled must be true. The cache bounds every Redis call
//     by a short deadline so that a slow or dead Redis costs requests
//     milliseconds, and go-redis honours those deadlines on the socket only
//     with ContextTimeoutEnabled. Without it a paused Redis would hold each
//     request for the client's ReadTimeout (3s by default).
//   - DialerRetries must be 1: one dial attempt per new connection. go-redis
//     dials up to DialerRetries times (5 by default, and any value of 0 or
//     less means 5), pausing DialerRetryTimeout (100ms) between attempts. With
//     Redis down, each call that needs a connection then sleeps out its
//     whole deadline in those pauses instead of failing at once on the
//     refused connection, so requests pay the deadline before going to the
//     origin. The cache needs no retries: an error sends the request to
//     the origin, the circuit breaker decides when to try Redis again, and
//     the next call dials afresh.
func checkClient(client redis.UniversalClient) error {
	var (
		contextTimeout = true
		dialerRetries  = 1
	)
	switch c := client.(type) {
	case *redis.Client:
		contextTimeout, dialerRetries = c.Options().ContextTimeoutEnabled, c.Options().DialerRetries
	case *redis.ClusterClient:
		contextTimeout, dialerRetries = c.Options().ContextTimeoutEnabled, c.Options().DialerRetries
	case *redis.Ring:
		contextTimeout, dialerRetries = c.Options().ContextTimeoutEnabled, c.Options().DialerRetries
	}
	if !contextTimeout {
		return errors.New("redisstore: the go-redis client must set ContextTimeoutEnabled: true, or the cache's per-call deadlines are ignored and a slow Redis stalls requests")
	}
	if dialerRetries != 1 {
		return fmt.Errorf("redisstore: the go-redis client must set DialerRetries: 1 (it has %d; 0 or less means 5), or while Redis is down every call retries its dial with DialerRetryTimeout pauses and holds its request for the cache's whole per-call deadline instead of failing fast to the origin", dialerRetries)
	}
	return nil
}
