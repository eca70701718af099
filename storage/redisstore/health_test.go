package redisstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// fillEntries stores fields entries of size bytes (incompressible, as
// compressed bodies are) in each of buckets buckets, through the store,
// with 16-byte fields like the cache's digests.
func fillEntries(t *testing.T, s *redisstore.Store, buckets, fields, size int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, size)
	for b := range buckets {
		for f := range fields {
			for i := range value {
				value[i] = byte(r.Uint32())
			}
			field := fmt.Sprintf("field-%010d", b*fields+f)
			if err := s.Set(t.Context(), "route|"+strconv.Itoa(b), field, value, storage.SetOptions{TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkHealth runs the check with a bound and logs the report.
func checkHealth(t *testing.T, s *redisstore.Store) storage.HealthReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rep, err := s.CheckHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		t.Logf("%-24s %-5s %s | %s", f.Check, f.Level, f.Message, f.Fix)
	}
	return rep
}

// findings returns the findings of check.
func findings(rep storage.HealthReport, check string) []storage.Finding {
	var out []storage.Finding
	for _, f := range rep.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

// finding returns the one finding of check, failing t unless there is
// exactly one.
func finding(t *testing.T, rep storage.HealthReport, check string) storage.Finding {
	t.Helper()
	got := findings(rep, check)
	if len(got) != 1 {
		t.Fatalf("%d findings %q, want 1: %+v", len(got), check, got)
	}
	return got[0]
}

// TestCheckHealth runs the check on servers set up to trigger each
// finding, and on a healthy one.
func TestCheckHealth(t *testing.T) {
	healthy := []string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--hash-max-listpack-value", "1024"}
	type want struct {
		check, level string
		contains     []string
	}
	tests := []struct {
		name  string
		args  []string
		fill  func(t *testing.T, s *redisstore.Store)
		wants []want
	}{
		{
			name: "healthy",
			args: healthy,
			fill: func(t *testing.T, s *redisstore.Store) { fillEntries(t, s, 20, 4, 500) },
			wants: []want{
				{"version", storage.LevelOK, []string{"Redis 7"}},
				{"mode", storage.LevelOK, []string{"single server 127.0.0.1:"}},
				{"config", storage.LevelOK, nil},
				{"maxmemory", storage.LevelOK, []string{"64.0 MiB"}},
				{"maxmemory-policy", storage.LevelOK, []string{"allkeys-lru"}},
				{"hash-max-listpack-value", storage.LevelOK, []string{"is 1024", "0 of 64 sampled entries", "500 bytes at the median"}},
				{"persistence", storage.LevelOK, []string{"off"}},
				{"round-trip", storage.LevelOK, []string{"median round trip (5 PINGs)"}},
				{"key-prefix", storage.LevelInfo, []string{"20 buckets", "counted"}},
				{"client-tracking", storage.LevelOK, []string{"available"}},
				{"sharded-pubsub", storage.LevelOK, []string{"available"}},
			},
		},
		{
			name:  "noeviction",
			args:  []string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction"},
			wants: []want{{"maxmemory-policy", storage.LevelWarn, []string{"noeviction", "refuses writes"}}},
		},
		{
			name: "noeviction and full",
			args: []string{"--maxmemory", "2mb", "--maxmemory-policy", "noeviction"},
			fill: func(t *testing.T, s *redisstore.Store) {
				value := make([]byte, 4096)
				var err error
				for i := 0; i < 10000 && err == nil; i++ {
					err = s.Set(t.Context(), "b"+strconv.Itoa(i), "f", value, storage.SetOptions{TTL: time.Hour})
				}
				if !errors.Is(err, storage.ErrRefused) {
					t.Fatalf("filling the server: %v", err)
				}
			},
			wants: []want{{"maxmemory-policy", storage.LevelError, []string{"noeviction", "full", "of 2.0 MiB"}}},
		},
		{
			name:  "unbounded",
			args:  []string{"--maxmemory", "0"},
			wants: []want{{"maxmemory", storage.LevelWarn, []string{"unbounded"}}},
		},
		{
			name: "small listpack values",
			args: append(healthy, "--hash-max-listpack-value", "64"),
			fill: func(t *testing.T, s *redisstore.Store) { fillEntries(t, s, 20, 8, 450) },
			wants: []want{{"hash-max-listpack-value", storage.LevelWarn, []string{
				"is 64;", "128 of 128 sampled entries (100%) are larger", "16 of 16 sampled buckets",
				"at 1024 the sampled buckets would take about 12% less memory", "over the 20 buckets",
			}}},
		},
		{
			name:  "RDB snapshots",
			args:  append(healthy, "--save", "60 1"),
			wants: []want{{"persistence", storage.LevelInfo, []string{`RDB snapshots (save "60 1")`, "fork"}}},
		},
		{
			name:  "append-only file",
			args:  append(healthy, "--appendonly", "yes"),
			wants: []want{{"persistence", storage.LevelInfo, []string{"append-only file (appendfsync everysec)"}}},
		},
		{
			// Managed Redis often disables CONFIG: the check falls
			// back on INFO.
			name: "CONFIG disabled",
			args: []string{"--maxmemory", "64mb", "--maxmemory-policy", "noeviction", "--appendonly", "yes", "--rename-command", "CONFIG", ""},
			fill: func(t *testing.T, s *redisstore.Store) { fillEntries(t, s, 4, 2, 500) },
			wants: []want{
				{"config", storage.LevelInfo, []string{"CONFIG GET is unavailable", "read from INFO"}},
				{"maxmemory", storage.LevelOK, []string{"64.0 MiB"}},
				{"maxmemory-policy", storage.LevelWarn, []string{"noeviction"}},
				{"persistence", storage.LevelInfo, []string{"append-only file"}},
				{"hash-max-listpack-value", storage.LevelInfo, []string{"could not be read", "4 of 4 sampled buckets are hashtables"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartT(t, tt.args...)
			s := newStore(t, srv.Client(func(o *redis.Options) { o.MaxRetries = -1 }))
			if tt.fill != nil {
				tt.fill(t, s)
			}
			rep := checkHealth(t, s)
			if rep.Store != "redis" || rep.Mode != "single" || !strings.HasPrefix(rep.Version, "7.") {
				t.Errorf("store %q, mode %q, version %q", rep.Store, rep.Mode, rep.Version)
			}
			if rep.RoundTrip <= 0 || rep.RoundTrip > time.Second {
				t.Errorf("round trip %v", rep.RoundTrip)
			}
			for _, w := range tt.wants {
				f := finding(t, rep, w.check)
				if f.Level != w.level {
					t.Errorf("%s: level %q, want %q: %s", w.check, f.Level, w.level, f.Message)
				}
				for _, s := range w.contains {
					if !strings.Contains(f.Message, s) {
						t.Errorf("%s: message %q lacks %q", w.check, f.Message, s)
					}
				}
				if f.Level != storage.LevelOK && f.Level != storage.LevelInfo && f.Fix == "" {
					t.Errorf("%s: %s without a fix", w.check, f.Level)
				}
			}
			if tt.name == "healthy" {
				if worst := rep.Worst(); worst != storage.LevelOK && worst != storage.LevelInfo {
					t.Errorf("a healthy server's worst finding is %q", worst)
				}
				if len(rep.Findings) != len(tt.wants) {
					t.Errorf("%d findings, want %d", len(rep.Findings), len(tt.wants))
				}
			}
		})
	}
}

// TestCheckHealthListpackEstimate compares what the check says raising
// hash-max-listpack-value to 1024 saves with what it saves: the same
// buckets, re-encoded by DUMP and RESTORE under the new limit, measured
// with MEMORY USAGE.
func TestCheckHealthListpackEstimate(t *testing.T) {
	tests := []struct {
		fields, size int
	}{
		{fields: 8, size: 450},
		{fields: 2, size: 150},
		{fields: 40, size: 900},
		{fields: 1, size: 515}, // DESIGN.md's 1.4 KB JSON body, gzipped, in its envelope
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%dB", tt.fields, tt.size), func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartT(t, "--hash-max-listpack-value", "64")
			client := srv.Client()
			s := newStore(t, client)
			const buckets = 12 // fewer than the check samples: it sees all of them
			fillEntries(t, s, buckets, tt.fields, tt.size)
			f := finding(t, checkHealth(t, s), "hash-max-listpack-value")
			m := regexp.MustCompile(`about (\d+)% less memory`).FindStringSubmatch(f.Message)
			if m == nil {
				t.Fatalf("no estimate in %q", f.Message)
			}
			pct, _ := strconv.ParseFloat(m[1], 64)

			ctx := t.Context()
			if err := client.ConfigSet(ctx, "hash-max-listpack-value", "1024").Err(); err != nil {
				t.Fatal(err)
			}
			var was, now int64
			for b := range buckets {
				key := s.BucketKey("route|" + strconv.Itoa(b))
				was += client.MemoryUsage(ctx, key, 0).Val()
				dump := client.Dump(ctx, key).Val()
				if err := client.RestoreReplace(ctx, key, time.Hour, dump).Err(); err != nil {
					t.Fatal(err)
				}
				if enc := client.ObjectEncoding(ctx, key).Val(); enc != "listpack" {
					t.Fatalf("%s is a %s after RESTORE", key, enc)
				}
				now += client.MemoryUsage(ctx, key, 0).Val()
			}
			real := 100 * float64(was-now) / float64(was)
			t.Logf("estimated saving %.0f%%, measured %.1f%% (%d -> %d bytes over %d buckets)", pct, real, was, now, buckets)
			if pct < real-5 || pct > real+5 {
				t.Errorf("estimated saving %.0f%%, measured %.1f%%", pct, real)
			}
		})
	}
}

// TestCheckHealthCluster checks a three-master cluster: its mode, every
// master answering, the prefix counted over every master, and a setting
// that differs on one node reported per node.
func TestCheckHealthCluster(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	client := c.Client()
	s := newStore(t, client)
	fillEntries(t, s, 30, 2, 200)
	ctx := t.Context()
	if err := client.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err()
	}); err != nil {
		t.Fatal(err)
	}
	odd := c.Addrs()[1]
	oddClient := redis.NewClient(&redis.Options{Addr: odd})
	defer oddClient.Close()
	if err := oddClient.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}

	rep := checkHealth(t, s)
	if rep.Mode != "cluster" {
		t.Errorf("mode %q", rep.Mode)
	}
	if f := finding(t, rep, "mode"); f.Level != storage.LevelOK || !strings.Contains(f.Message, "3 masters and 0 replicas answered") {
		t.Errorf("mode finding %+v", f)
	}
	if f := finding(t, rep, "key-prefix"); !strings.Contains(f.Message, "(30 buckets)") {
		t.Errorf("key-prefix finding %+v", f)
	}
	if f := finding(t, rep, "sharded-pubsub"); f.Level != storage.LevelOK {
		t.Errorf("sharded-pubsub finding %+v", f)
	}
	policies := findings(rep, "maxmemory-policy")
	if len(policies) != 3 {
		t.Fatalf("%d maxmemory-policy findings, want one per node: %+v", len(policies), policies)
	}
	for _, f := range policies {
		odd := strings.HasPrefix(f.Message, "node "+odd+": ")
		if odd != (f.Level == storage.LevelWarn) || !strings.HasPrefix(f.Message, "node 127.0.0.1:") {
			t.Errorf("per-node finding %+v", f)
		}
	}
}

// TestCheckHealthUnreachable: a Redis that does not answer is an error,
// not a report.
func TestCheckHealthUnreachable(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client(func(o *redis.Options) { o.MaxRetries = -1 }))
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.CheckHealth(ctx); err == nil || !strings.HasPrefix(err.Error(), "redisstore: check health: ") {
		t.Fatalf("CheckHealth of a dead Redis = %v", err)
	}
}

// TestCheckHealthPrefixSize: the prefix's keys are counted when the
// database is small and estimated from random keys when it is not, and a
// prefix with glob characters matches only its own keys.
func TestCheckHealthPrefixSize(t *testing.T) {
	tests := []struct {
		name   string
		decoys int
		want   *regexp.Regexp
	}{
		{"counted", 100, regexp.MustCompile(`^20 keys under "svc\*\?\[a\]:" \(20 buckets\) of the 120 keys of the database, counted$`)},
		{"estimated", 6000, regexp.MustCompile(`^about \d+ keys under "svc\*\?\[a\]:" \(about \d+ buckets\), \d+% of the 6020 keys of the database, estimated from 64 random keys$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartT(t, "--hash-max-listpack-value", "64")
			client := srv.Client()
			s, err := redisstore.New(client, redisstore.WithPrefix("svc*?[a]"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			fillEntries(t, s, 20, 2, 300)
			// Keys that the prefix read as a glob pattern would match.
			_, err = client.Pipelined(t.Context(), func(p redis.Pipeliner) error {
				for i := range tt.decoys {
					p.HSet(t.Context(), fmt.Sprintf("svc%dxa:b:{decoy}", i), "f", "v")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rep := checkHealth(t, s)
			if f := finding(t, rep, "key-prefix"); !tt.want.MatchString(f.Message) {
				t.Errorf("key-prefix: %q", f.Message)
			}
			// Buckets are found and sampled either way.
			if f := finding(t, rep, "hash-max-listpack-value"); f.Level != storage.LevelWarn || !strings.Contains(f.Message, "sampled buckets") {
				t.Errorf("hash-max-listpack-value: %+v", f)
			}
		})
	}
}

// TestAdminDoctorOnRedis: a cache over a Redis under noeviction logs the
// warning at start-up, and the admin API's doctor answers it.
func TestAdminDoctorOnRedis(t *testing.T) {
	srv := redistest.StartT(t, "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
	s := newStore(t, srv.Client())
	var logs syncBuffer
	cache, err := httpcache.New(s, httpcache.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close(context.Background()) })
	eventually(t, func() bool { return strings.Contains(logs.String(), `msg="readthrough: store health check"`) })
	if !regexp.MustCompile(`level=WARN msg="readthrough: store health: maxmemory-policy" check=maxmemory-policy severity=warn message="maxmemory-policy is noeviction`).MatchString(logs.String()) {
		t.Errorf("start-up log:\n%s", logs.String())
	}

	const token = "0123456789abcdef-doctor"
	admin, err := cache.AdminHandler(httpcache.WithAdminToken("ops", token))
	if err != nil {
		t.Fatal(err)
	}
	srvAdmin := httptest.NewServer(http.StripPrefix("/admin", admin))
	defer srvAdmin.Close()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srvAdmin.URL+"/admin/doctor", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srvAdmin.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep storage.HealthReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || rep.Store != "redis" || rep.Mode != "single" || rep.RoundTrip <= 0 {
		t.Fatalf("%d %+v", resp.StatusCode, rep)
	}
	if f := finding(t, rep, "maxmemory-policy"); f.Level != storage.LevelWarn || !strings.Contains(f.Fix, "allkeys-lru") {
		t.Errorf("maxmemory-policy finding %+v", f)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestCheckHealthSentinel: a store on go-redis's failover client reports
// the Sentinel mode, and checks the master Sentinel names.
func TestCheckHealthSentinel(t *testing.T) {
	master := redistest.StartT(t, "--maxmemory-policy", "noeviction")
	host, port, _ := strings.Cut(master.Addr(), ":")
	sen := redistest.StartSentinelT(t, "sentinel monitor mymaster "+host+" "+port+" 1")
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            "mymaster",
		SentinelAddrs:         []string{sen.Addr()},
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { client.Close() })
	rep := checkHealth(t, newStore(t, client))
	if rep.Mode != "sentinel" {
		t.Errorf("mode %q", rep.Mode)
	}
	if f := finding(t, rep, "mode"); f.Level != storage.LevelOK || !strings.Contains(f.Message, "Sentinel") {
		t.Errorf("mode finding %+v", f)
	}
	if f := finding(t, rep, "maxmemory-policy"); f.Level != storage.LevelWarn {
		t.Errorf("the master's noeviction not seen: %+v", f)
	}
}

// slowProxy forwards connections to target, holding each chunk a client
// sends for delay: a Redis that far away.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(c, s); c.Close() }()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						time.Sleep(delay) // the distance simulated
						if _, werr := s.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestCheckHealthRoundTrip: a distant Redis is a warning, a very distant
// one an error.
func TestCheckHealthRoundTrip(t *testing.T) {
	tests := []struct {
		delay time.Duration
		level string
	}{
		{8 * time.Millisecond, storage.LevelWarn},
		{60 * time.Millisecond, storage.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.delay.String(), func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartT(t)
			client := redis.NewClient(&redis.Options{Addr: slowProxy(t, srv.Addr(), tt.delay), ContextTimeoutEnabled: true, DialerRetries: 1, MaxRetries: -1})
			t.Cleanup(func() { client.Close() })
			rep := checkHealth(t, newStore(t, client))
			if rep.RoundTrip < tt.delay {
				t.Errorf("round trip %v through a proxy that delays %v", rep.RoundTrip, tt.delay)
			}
			if f := finding(t, rep, "round-trip"); f.Level != tt.level || f.Fix == "" {
				t.Errorf("round-trip finding %+v, want level %s", f, tt.level)
			}
		})
	}
}
