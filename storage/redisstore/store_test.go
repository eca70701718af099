package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
	"github.com/readthrough/readthrough/storage/storetest"
)

var unsafePrefix = regexp.MustCompile(`[^A-Za-z0-9_./=|-]`)

// prefixFor gives each test its own key prefix, so that stores made for one
// test share a backend that holds nothing of other tests.
func prefixFor(t *testing.T) string {
	return "rt-" + unsafePrefix.ReplaceAllString(t.Name(), "_")
}

func newStore(t *testing.T, client redis.UniversalClient, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix(prefixFor(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startStore starts a Redis server for t and returns a store on it, with
// a prefix of t's own, and a client of the server.
func startStore(t *testing.T, opts ...redisstore.Option) (*redisstore.Store, redis.UniversalClient) {
	t.Helper()
	client := redistest.StartT(t).Client()
	return newStore(t, client, opts...), client
}

func conformance(client redis.UniversalClient) func(t *testing.T, fenceTTL time.Duration) storetest.Store {
	return func(t *testing.T, fenceTTL time.Duration) storetest.Store {
		return newStore(t, client, redisstore.WithFenceTTL(fenceTTL))
	}
}

func TestConformanceRedis(t *testing.T) {
	srv := redistest.StartT(t)
	storetest.Run(t, conformance(srv.Client()))
}

func TestConformanceCluster(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	storetest.Run(t, conformance(c.Client()))
}

// startMiniredis starts a miniredis whose keys expire with the wall clock,
// as the examples run it.
func startMiniredis(t *testing.T) *miniredis.Miniredis {
	m := miniredis.RunT(t)
	m.ClockTTL(true)
	return m
}

// TestConformanceMiniredis gives each test its own miniredis: with
// ClockTTL, miniredis walks every key on every command, and the purge
// tombstones of earlier tests (which live for the fence TTL) would make
// later tests slower and slower.
func TestConformanceMiniredis(t *testing.T) {
	var (
		mu      sync.Mutex
		clients = map[*testing.T]redis.UniversalClient{}
	)
	storetest.Run(t, func(t *testing.T, fenceTTL time.Duration) storetest.Store {
		mu.Lock()
		client, ok := clients[t]
		if !ok {
			m := startMiniredis(t)
			c := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			clients[t], client = c, c
		}
		mu.Unlock()
		return newStore(t, client, redisstore.WithFenceTTL(fenceTTL))
	})
}

func TestNewRejectsBadPrefixes(t *testing.T) {
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1"})
	defer client.Close()
	tests := []struct {
		give    string
		wantErr bool
	}{
		{give: "rt"},
		{give: "my-service:prod"},
		{give: "a*b?[c]"},
		{give: ""}, // the default
		{give: "a{b", wantErr: true},
		{give: "a}b", wantErr: true},
		{give: "a b", wantErr: true},
		{give: "a\tb", wantErr: true},
		{give: "a\x00b", wantErr: true},
		{give: "a\u00a0b", wantErr: true},
		{give: "\xff", wantErr: true},
	}
	for _, tt := range tests {
		s, err := redisstore.New(client, redisstore.WithPrefix(tt.give))
		if (err != nil) != tt.wantErr {
			t.Errorf("New(WithPrefix(%q)) error = %v, want error %v", tt.give, err, tt.wantErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "redisstore: WithPrefix(") {
			t.Errorf("New(WithPrefix(%q)) = %v, want an error naming WithPrefix", tt.give, err)
		}
		if s != nil {
			_ = s.Close()
		}
	}
	if _, err := redisstore.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// TestNewOptions checks the rule every option follows: zero means the
// default, negative is an error naming the option.
func TestNewOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1"})
	defer client.Close()
	tests := []struct {
		name    string
		give    redisstore.Option
		wantErr string // the start of the error; "" for none
	}{
		{name: "zero prefix", give: redisstore.WithPrefix("")},
		{name: "zero watch bound", give: redisstore.WithWatchBound(0)},
		{name: "watch bound", give: redisstore.WithWatchBound(time.Millisecond)},
		{name: "negative watch bound", give: redisstore.WithWatchBound(-time.Second), wantErr: "redisstore: WithWatchBound(-1s)"},
		{name: "zero fence TTL", give: redisstore.WithFenceTTL(0)},
		{name: "fence TTL", give: redisstore.WithFenceTTL(time.Microsecond)},
		{name: "negative fence TTL", give: redisstore.WithFenceTTL(-time.Nanosecond), wantErr: "redisstore: WithFenceTTL(-1ns)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := redisstore.New(client, tt.give)
			if err == nil {
				_ = s.Close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("New = %v, want an error starting %q", err, tt.wantErr)
			}
		})
	}
}

// TestZeroPrefix checks that WithPrefix("") gives the default prefix.
func TestZeroPrefix(t *testing.T) {
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1"})
	defer client.Close()
	s, err := redisstore.New(client, redisstore.WithPrefix("app"), redisstore.WithPrefix(""))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.BucketKey("b"), "rt:b:{b}"; got != want {
		t.Errorf("BucketKey with WithPrefix(\"\") = %q, want %q", got, want)
	}
}

func TestBucketKey(t *testing.T) {
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1"})
	defer client.Close()
	s, err := redisstore.New(client)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.BucketKey("users|15"), "rt:b:{users|15}"; got != want {
		t.Errorf("BucketKey = %q, want %q", got, want)
	}
	s, err = redisstore.New(client, redisstore.WithPrefix("svc"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.BucketKey("x"), "svc:b:{x}"; got != want {
		t.Errorf("BucketKey = %q, want %q", got, want)
	}
}

func TestRejectsBraces(t *testing.T) {
	m := startMiniredis(t)
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
	defer client.Close()
	s := newStore(t, client)
	ctx := t.Context()
	if err := s.Set(ctx, "a}b", "f", nil, storage.SetOptions{}); err == nil {
		t.Error("Set accepted a bucket with a brace")
	}
	if _, err := s.TryLock(ctx, "a{b", "f", time.Second); err == nil {
		t.Error("TryLock accepted a bucket with a brace")
	}
	if _, err := s.PurgePrefix(ctx, "a{"); err == nil {
		t.Error("PurgePrefix accepted a prefix with a brace")
	}
}

// commandLog records the commands a client sends.
type commandLog struct {
	mu   sync.Mutex
	cmds [][]string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) record(cmds ...redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cmds {
		if n := strings.ToLower(c.Name()); n == "hello" || n == "client" {
			continue // connection handshake
		}
		var args []string
		for _, a := range c.Args() {
			args = append(args, fmt.Sprint(a))
		}
		l.cmds = append(l.cmds, args)
	}
}

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.record(cmd)
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record(cmds...)
		return next(ctx, cmds)
	}
}

func (l *commandLog) take() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cmds
	l.cmds = nil
	return c
}

func names(cmds [][]string) []string {
	var n []string
	for _, c := range cmds {
		n = append(n, strings.ToLower(c[0]))
	}
	return n
}

// TestCommands checks which commands each method sends: above all that a
// Get is one HGET and nothing else.
func TestCommands(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	log := &commandLog{}
	client.AddHook(log)
	s := newStore(t, client)
	ctx := t.Context()

	// The first Set loads the script: EVALSHA, NOSCRIPT, then EVAL.
	if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Minute, MaxFields: 10}); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha", "eval"}) {
		t.Errorf("first Set sent %v, want EVALSHA, EVAL", got)
	}
	if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Minute, MaxFields: 10}); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha"}) {
		t.Errorf("Set sent %v, want one EVALSHA", got)
	}

	for _, field := range []string{"f", "missing"} {
		_, _ = s.Get(ctx, "b", field)
		got := log.take()
		if len(got) != 1 || !strings.EqualFold(got[0][0], "hget") {
			t.Errorf("Get of %q sent %v, want one HGET", field, got)
		}
	}

	if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Minute, Tags: []string{"t1", "t2"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"evalsha", "sadd", "pexpire", "pexpire", "sadd", "pexpire", "pexpire"}
	if got := names(log.take()); !slices.Equal(got, want) {
		t.Errorf("Set with tags sent %v, want %v", got, want)
	}

	if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"publish"}) {
		t.Errorf("Publish sent %v, want one PUBLISH", got)
	}

	// The miss path: one HMGET of the field and the generation.
	_, gen, _ := s.GetForFill(ctx, "b", "missing")
	got := log.take()
	want2 := [][]string{{"hmget", s.BucketKey("b"), "missing", storage.GenerationField}}
	if len(got) != 1 || !slices.Equal(got[0], want2[0]) {
		t.Errorf("GetForFill sent %q, want %q", got, want2)
	}
	if err := s.Set(ctx, "b", "f", []byte("v"), storage.SetOptions{TTL: time.Minute, Fenced: true, Generation: gen}); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha"}) {
		t.Errorf("fenced Set sent %v, want one EVALSHA", got)
	}

	// A bucket purge is one script: EVALSHA, and EVAL the first time.
	if _, err := s.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha", "eval"}) {
		t.Errorf("first PurgeBucket sent %v, want EVALSHA, EVAL", got)
	}
	if _, err := s.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha"}) {
		t.Errorf("PurgeBucket sent %v, want one EVALSHA", got)
	}
}

// TestPurgeScriptFlushed checks the pipelined purges of a server that lost
// its scripts (SCRIPT FLUSH, a restart, a failover): every bucket is still
// purged, in round trips of at most 100 scripts.
func TestPurgeScriptFlushed(t *testing.T) {
	s, client := startStore(t)
	ctx := t.Context()
	const buckets = 250
	for i := range buckets {
		if err := s.Set(ctx, fmt.Sprintf("r|%d", i), "f", []byte("v"), storage.SetOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	log := &commandLog{}
	client.AddHook(log)
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgePrefix(ctx, "r|")
	if err != nil || n != buckets {
		t.Fatalf("PurgePrefix after SCRIPT FLUSH = %d, %v; want %d", n, err, buckets)
	}
	count := map[string]int{}
	for _, c := range names(log.take()) {
		count[c]++
	}
	if count["keys"] != 0 {
		t.Errorf("PurgePrefix sent KEYS")
	}
	// The first trip fails with NOSCRIPT and is re-run with EVAL, which
	// loads the script for the later trips.
	if count["eval"] != 100 || count["evalsha"] != buckets {
		t.Errorf("PurgePrefix sent %d EVALSHA and %d EVAL, want %d and 100", count["evalsha"], count["eval"], buckets)
	}
	for i := range buckets {
		if _, err := s.Get(ctx, fmt.Sprintf("r|%d", i), "f"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("bucket %d survived the purge: %v", i, err)
		}
	}
}

// TestFenceLayout checks the purge generation and the tombstones in Redis.
func TestFenceLayout(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	s := newStore(t, client) // the default fence TTL
	ctx := t.Context()
	key := s.BucketKey("b")
	hash := func() map[string]string {
		t.Helper()
		h, err := client.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	pttl := func() time.Duration {
		t.Helper()
		d, err := client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// A bucket never purged holds its entries only: HLEN counts them.
	for _, f := range []string{"f", "g"} {
		if err := s.Set(ctx, "b", f, []byte("v"), storage.SetOptions{TTL: time.Hour, MaxFields: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := client.HLen(ctx, key).Result(); n != 2 {
		t.Errorf("HLEN of a bucket never purged = %d, want 2", n)
	}

	// A purge leaves only the generation, for the fence TTL.
	if n, err := s.PurgeBucket(ctx, "b"); err != nil || n != 1 {
		t.Fatalf("PurgeBucket = %d, %v", n, err)
	}
	if h := hash(); len(h) != 1 || h[storage.GenerationField] != "1" {
		t.Errorf("tombstone = %q, want only the generation 1", h)
	}
	if d := pttl(); d <= storage.DefaultFenceTTL-5*time.Second || d > storage.DefaultFenceTTL {
		t.Errorf("PTTL of the tombstone = %v, want %v", d, storage.DefaultFenceTTL)
	}
	if n, err := s.PurgeBucket(ctx, "b"); err != nil || n != 0 {
		t.Fatalf("PurgeBucket of a tombstone = %d, %v; want 0", n, err)
	}
	if h := hash(); len(h) != 1 || h[storage.GenerationField] != "2" {
		t.Errorf("tombstone purged again = %q, want only the generation 2", h)
	}

	// A short-lived fill leaves the fence TTL; a long one grows it.
	opt := storage.SetOptions{TTL: time.Second, Fenced: true, Generation: "2"}
	if err := s.Set(ctx, "b", "f", []byte("v"), opt); err != nil {
		t.Fatal(err)
	}
	if d := pttl(); d <= storage.DefaultFenceTTL-5*time.Second {
		t.Errorf("PTTL after a shorter fill = %v, want the fence TTL", d)
	}
	opt.TTL = time.Hour
	if err := s.Set(ctx, "b", "g", []byte("v"), opt); err != nil {
		t.Fatal(err)
	}
	if d := pttl(); d <= 59*time.Minute {
		t.Errorf("PTTL after a longer fill = %v, want an hour", d)
	}
	if h := hash(); len(h) != 3 || h[storage.GenerationField] != "2" {
		t.Errorf("refilled bucket = %q, want f, g and the generation 2", h)
	}

	// A generation that is not a number counts as 0; a key of another
	// type under a bucket's name is replaced (and counted).
	client.HSet(ctx, key, storage.GenerationField, "junk")
	if _, err := s.PurgeBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if h := hash(); h[storage.GenerationField] != "1" {
		t.Errorf("generation after a junk one = %q, want 1", h[storage.GenerationField])
	}
	client.Set(ctx, key, "not a hash", 0)
	if n, err := s.PurgeBucket(ctx, "b"); err != nil || n != 1 {
		t.Errorf("PurgeBucket of a string = %d, %v; want 1", n, err)
	}
	if h := hash(); len(h) != 1 || h[storage.GenerationField] != "1" {
		t.Errorf("tombstone of a string = %q, want only the generation 1", h)
	}
}

// TestWithFenceTTL checks the option's bounds.
func TestWithFenceTTL(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	ctx := t.Context()
	tests := []struct {
		give     time.Duration
		min, max time.Duration
	}{
		{give: 0, min: storage.DefaultFenceTTL - 5*time.Second, max: storage.DefaultFenceTTL},
		{give: 10 * time.Minute, min: 10*time.Minute - 5*time.Second, max: 10 * time.Minute},
		{give: 30 * time.Second, min: 25 * time.Second, max: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.give.String(), func(t *testing.T) {
			s := newStore(t, client, redisstore.WithFenceTTL(tt.give))
			if _, err := s.PurgeBucket(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			d, err := client.PTTL(ctx, s.BucketKey("b")).Result()
			if err != nil || d <= tt.min || d > tt.max {
				t.Errorf("PTTL of the tombstone = %v, %v; want in (%v, %v]", d, err, tt.min, tt.max)
			}
		})
	}
}

// TestKeys checks the layout of the keys in Redis and their lifetimes.
func TestKeys(t *testing.T) {
	s, client := startStore(t, redisstore.WithPrefix("app")) // the last prefix option wins
	ctx := t.Context()

	field := "\x00\x01bin"
	if err := s.Set(ctx, "users|15", field, []byte("v"), storage.SetOptions{TTL: time.Hour, Tags: []string{"user:15"}}); err != nil {
		t.Fatal(err)
	}
	l, err := s.TryLock(ctx, "users|15", field, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{"app:b:{users|15}", "app:l:{users|15}:" + field, "app:t:user:15"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if got, err := client.HGet(ctx, "app:b:{users|15}", field).Result(); err != nil || got != "v" {
		t.Errorf("HGET = %q, %v", got, err)
	}
	members, err := client.SMembers(ctx, "app:t:user:15").Result()
	if err != nil || !slices.Equal(members, []string{"app:b:{users|15}"}) {
		t.Errorf("tag members = %q, %v", members, err)
	}
	for _, k := range []string{"app:b:{users|15}", "app:t:user:15"} {
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("PTTL(%s) = %v, %v; want about an hour", k, ttl, err)
		}
	}

	// A shorter TTL leaves both lifetimes alone; a longer one grows them.
	if err := s.Set(ctx, "users|15", "g", []byte("v"), storage.SetOptions{TTL: time.Second, Tags: []string{"user:15"}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app:b:{users|15}", "app:t:user:15"} {
		if ttl, _ := client.PTTL(ctx, k).Result(); ttl <= 59*time.Minute {
			t.Errorf("PTTL(%s) = %v after a shorter write", k, ttl)
		}
	}
	if err := s.Set(ctx, "users|15", "g", []byte("v"), storage.SetOptions{TTL: 2 * time.Hour, Tags: []string{"user:15"}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app:b:{users|15}", "app:t:user:15"} {
		if ttl, _ := client.PTTL(ctx, k).Result(); ttl <= time.Hour {
			t.Errorf("PTTL(%s) = %v after a longer write", k, ttl)
		}
	}

	// A bucket that lost its TTL (PERSIST) gets one again.
	client.Persist(ctx, "app:b:{users|15}")
	if err := s.Set(ctx, "users|15", "g", []byte("v"), storage.SetOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := client.PTTL(ctx, "app:b:{users|15}").Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL after PERSIST and a write = %v, want a minute", ttl)
	}
	// A zero TTL leaves the lifetime as it is.
	if err := s.Set(ctx, "users|15", "g", []byte("v"), storage.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := client.PTTL(ctx, "app:b:{users|15}").Result(); ttl <= 0 {
		t.Errorf("PTTL after a write without TTL = %v", ttl)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMaxFieldsLowered checks in Redis that a bucket far over a lowered
// bound keeps every field, refuses a new one without touching the hash,
// its TTL or the tag sets, and still lets its fields be refreshed.
func TestMaxFieldsLowered(t *testing.T) {
	s, client := startStore(t)
	ctx := t.Context()
	for i := range 300 {
		if err := s.Set(ctx, "b", fmt.Sprint(i), []byte("v"), storage.SetOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	key := s.BucketKey("b")
	bounded := storage.SetOptions{TTL: time.Hour, MaxFields: 10, Tags: []string{"t"}}
	if err := s.Set(ctx, "b", "new", []byte("v"), bounded); !errors.Is(err, storage.ErrBucketFull) {
		t.Fatalf("Set of a new field = %v, want ErrBucketFull", err)
	}
	if n, _ := client.HLen(ctx, key).Result(); n != 300 {
		t.Errorf("HLEN after a refused write = %d, want 300", n)
	}
	if d, _ := client.PTTL(ctx, key).Result(); d > time.Minute {
		t.Errorf("PTTL after a refused write = %v, want at most a minute", d)
	}
	if n, _ := client.Exists(ctx, prefixFor(t)+":t:t").Result(); n != 0 {
		t.Errorf("a refused write recorded its tag")
	}
	if err := s.Set(ctx, "b", "7", []byte("refreshed"), bounded); err != nil {
		t.Fatalf("refresh of a field of a bucket over its bound: %v", err)
	}
	if n, _ := client.HLen(ctx, key).Result(); n != 300 {
		t.Errorf("HLEN after a refresh = %d, want 300", n)
	}
	if d, _ := client.PTTL(ctx, key).Result(); d <= 59*time.Minute {
		t.Errorf("PTTL after a refresh = %v, want an hour", d)
	}
	if v, err := s.Get(ctx, "b", "7"); err != nil || string(v) != "refreshed" {
		t.Errorf("Get of the refreshed field = %q, %v", v, err)
	}
}

// TestPurgeAllKeepsOtherPrefixes checks that prefixes with glob characters
// are matched literally.
func TestPurgeAllKeepsOtherPrefixes(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	ctx := t.Context()
	stores := map[string]*redisstore.Store{}
	for _, p := range []string{"a?", "ab", "c*", "cd", "e[f]", "ef", `g\`, "g", "h^"} {
		s, err := redisstore.New(client, redisstore.WithPrefix(p))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[p] = s
		if err := s.Set(ctx, "b", "f", []byte(p), storage.SetOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	for p, s := range stores {
		n, err := s.PurgeAll(ctx)
		if err != nil || n != 1 {
			t.Errorf("PurgeAll of prefix %q = %d, %v; want 1", p, n, err)
		}
	}
}

// TestLockRedisErrors checks that a Redis failure is not mistaken for a
// held or lost lock.
func TestLockRedisErrors(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	s := newStore(t, client)
	ctx := t.Context()
	l, err := s.TryLock(ctx, "b", "f", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryLock(ctx, "b", "g", time.Minute); err == nil || errors.Is(err, storage.ErrLockHeld) {
		t.Errorf("TryLock with Redis down: %v, want a Redis error", err)
	}
	if err := l.Extend(ctx); err == nil || errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend with Redis down: %v, want a Redis error", err)
	}
	if _, err := s.Get(ctx, "b", "f"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get with Redis down: %v, want a Redis error", err)
	}
	// After a restart the lock is gone: lost, not an error of Redis.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return client.Ping(ctx).Err() == nil })
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend after a restart: %v, want ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock after a restart: %v, want ErrLockLost", err)
	}
}

// TestLockLostOnFlush checks FLUSHALL, which the design names as a way
// locks vanish.
func TestLockLostOnFlush(t *testing.T) {
	m := startMiniredis(t)
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
	defer client.Close()
	s := newStore(t, client)
	ctx := t.Context()
	l, err := s.TryLock(ctx, "b", "f", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	m.FlushAll()
	if err := l.Extend(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Extend after FLUSHALL: %v, want ErrLockLost", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("Unlock after FLUSHALL: %v, want ErrLockLost", err)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantFill waits for a notification on ch, up to a deadline only a broken
// store reaches.
func wantFill(t *testing.T, ch <-chan storage.Fill) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after 5s")
	}
}

// TestWatchSurvivesRestart checks that the subscription comes back after
// Redis restarts, and that Watch does not hang while Redis is down.
func TestWatchSurvivesRestart(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	bound := 300 * time.Millisecond
	s := newStore(t, client, redisstore.WithWatchBound(bound))
	ctx := t.Context()

	_, stop, err := s.Watch(ctx, "b", "f")
	stop()
	if err != nil {
		t.Fatal(err)
	}

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 5 {
		_, stop, err := s.Watch(ctx, "b", "f")
		stop()
		// Until the store notices the kill, its subscription is up.
		if err != nil && !errors.Is(err, storage.ErrWatchUnconfirmed) {
			t.Errorf("Watch with Redis down: %v, want nil or an error matching storage.ErrWatchUnconfirmed", err)
		}
	}
	if d := time.Since(start); d > 2*bound+time.Second {
		t.Errorf("five Watch calls with Redis down took %v", d)
	}
	// The store notices: Watch no longer promises delivery.
	eventually(t, func() bool {
		_, stop, err := s.Watch(ctx, "b", "f")
		stop()
		return err != nil
	})

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Once a new subscription is confirmed, Watch keeps its promise: a
	// Publish after it is delivered.
	var ch <-chan storage.Fill
	eventually(t, func() bool {
		ch, stop, err = s.Watch(ctx, "b", "f")
		if err != nil {
			stop()
		}
		return err == nil
	})
	defer stop()
	if err := s.Publish(ctx, "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	wantFill(t, ch)
}

// TestWatchAfterClose checks that a closed store's Watch returns at once,
// says it cannot keep its promise, and never delivers.
func TestWatchAfterClose(t *testing.T) {
	m := startMiniredis(t)
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
	defer client.Close()
	s := newStore(t, client)
	other := newStore(t, client)
	_ = s.Close()
	ch, stop, err := s.Watch(t.Context(), "b", "f")
	defer stop()
	if !errors.Is(err, storage.ErrWatchUnconfirmed) {
		t.Errorf("Watch on a closed store: %v, want an error matching storage.ErrWatchUnconfirmed", err)
	}
	// other delivers this notification once it has handled the first.
	seen, stopSeen, err := other.Watch(t.Context(), "b", "f")
	if err != nil {
		t.Fatal(err)
	}
	defer stopSeen()
	if err := other.Publish(t.Context(), "b", "f", storage.Fill{Stored: true}); err != nil {
		t.Fatal(err)
	}
	wantFill(t, seen)
	select {
	case <-ch:
		t.Error("a closed store delivered a notification")
	default:
	}
}

// TestWatchUnreachable checks that the first Watch gives up at once when
// Redis cannot be reached, or after its bound.
func TestWatchUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	bound := 200 * time.Millisecond
	s := newStore(t, client, redisstore.WithWatchBound(bound))
	start := time.Now()
	_, stop, err := s.Watch(t.Context(), "b", "f")
	stop()
	if !errors.Is(err, storage.ErrWatchUnconfirmed) {
		t.Errorf("Watch with Redis unreachable: %v, want an error matching storage.ErrWatchUnconfirmed", err)
	}
	if d := time.Since(start); d > bound+time.Second {
		t.Errorf("Watch took %v with Redis unreachable", d)
	}
	start = time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// silentServer accepts TCP connections and never answers, as a Redis
// that hangs would; it closes them when the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestWatchContext checks that a Watch waiting for its subscription's
// confirmation returns when its context ends, well before its bound, with
// an error matching both ErrWatchUnconfirmed and the context's; and that
// the bound applies when the context does not end.
func TestWatchContext(t *testing.T) {
	// Each attempt to subscribe waits for the read timeout of go-redis's
	// handshake, which Close waits for too; the store is in the
	// connecting state all that time.
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: silentServer(t), MaxRetries: -1, ReadTimeout: time.Second})
	defer client.Close()
	tests := []struct {
		name    string
		bound   time.Duration
		timeout time.Duration // of Watch's context; 0: none
		wantCtx bool
	}{
		{name: "context", bound: time.Minute, timeout: 50 * time.Millisecond, wantCtx: true},
		{name: "bound", bound: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, client, redisstore.WithWatchBound(tt.bound))
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			done := make(chan error, 1)
			go func() {
				_, stop, err := s.Watch(ctx, "b", "f")
				stop()
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Watch on a Redis that does not answer still waits after 10s")
			}
			if !errors.Is(err, storage.ErrWatchUnconfirmed) {
				t.Errorf("Watch = %v, want an error matching storage.ErrWatchUnconfirmed", err)
			}
			if got := errors.Is(err, context.DeadlineExceeded); got != tt.wantCtx {
				t.Errorf("Watch = %v: matches context.DeadlineExceeded %v, want %v", err, got, tt.wantCtx)
			}
			if !strings.HasPrefix(err.Error(), "redisstore: ") {
				t.Errorf("Watch = %v, want a redisstore error", err)
			}
		})
	}
}

// TestOutOfMemoryIsRefused: a server out of memory under noeviction refuses
// writes with ErrRefused (no outage: reads still work).
func TestOutOfMemoryIsRefused(t *testing.T) {
	srv := redistest.StartT(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	s := newStore(t, srv.Client())
	ctx := context.Background()
	value := bytes.Repeat([]byte("x"), 4096)
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = s.Set(ctx, fmt.Sprintf("b%d", i), "f", value, storage.SetOptions{TTL: time.Hour})
	}
	if !errors.Is(err, storage.ErrRefused) {
		t.Fatalf("Set on a full server = %v, want ErrRefused", err)
	}
	if _, err := s.AddDictionary(ctx, "r|", 1, value); !errors.Is(err, storage.ErrRefused) {
		t.Errorf("AddDictionary on a full server = %v, want ErrRefused", err)
	}
	if _, err := s.CurrentDictionary(ctx, "r|"); err != nil {
		t.Errorf("CurrentDictionary on a full server = %v", err)
	}
	if _, err := s.Get(ctx, "b0", "f"); err != nil {
		t.Errorf("Get on a full server = %v", err)
	}
}

func TestNewRejectsClientIgnoringDeadlines(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	if _, err := redisstore.New(client); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("New = %v, want an error naming ContextTimeoutEnabled", err)
	}
}

// TestNewRequiresFailFastDials checks that New refuses clients that retry
// a failed dial, on every client type whose options it can read.
func TestNewRequiresFailFastDials(t *testing.T) {
	const addr = "127.0.0.1:1"
	tests := []struct {
		name    string
		give    func() redis.UniversalClient
		wantErr string // a word of the error; "" for none
	}{
		{
			name: "client",
			give: func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialerRetries: 1})
			},
		},
		{
			name: "client default retries",
			give: func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "client negative retries",
			give: func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialerRetries: -1})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "client two retries",
			give: func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialerRetries: 2})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "failover",
			give: func() redis.UniversalClient {
				return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{addr}, ContextTimeoutEnabled: true, DialerRetries: 1})
			},
		},
		{
			name: "failover default retries",
			give: func() redis.UniversalClient {
				return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{addr}, ContextTimeoutEnabled: true})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "cluster",
			give: func() redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, DialerRetries: 1})
			},
		},
		{
			name: "cluster default retries",
			give: func() redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "cluster negative retries",
			give: func() redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, DialerRetries: -1})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "ring",
			give: func() redis.UniversalClient {
				return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true, DialerRetries: 1})
			},
		},
		{
			name: "ring default retries",
			give: func() redis.UniversalClient {
				return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true})
			},
			wantErr: "DialerRetries: 1",
		},
		{
			name: "ring ignoring deadlines",
			give: func() redis.UniversalClient {
				return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, DialerRetries: 1})
			},
			wantErr: "ContextTimeoutEnabled",
		},
		{
			name: "universal",
			give: func() redis.UniversalClient {
				return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, DialerRetries: 1})
			},
		},
		{
			name: "universal default retries",
			give: func() redis.UniversalClient {
				return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
			},
			wantErr: "DialerRetries: 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := tt.give()
			defer client.Close()
			s, err := redisstore.New(client)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New = %v, want no error", err)
				}
				_ = s.Close()
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatalf("New succeeded, want an error naming %s", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "redisstore: ") {
				t.Errorf("New = %v, want a redisstore error naming %s", err, tt.wantErr)
			}
		})
	}
}
