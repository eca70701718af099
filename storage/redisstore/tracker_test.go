package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// trackWait bounds every wait for a report: only a broken tracker reaches
// it.
const trackWait = 5 * time.Second

// report is one call of a tracker's fn, with the time it was made.
type report struct {
	storage.Changes
	at time.Time
}

// recorder is a tracker's fn that keeps every report.
type recorder struct {
	mu      sync.Mutex
	reports []report
	changed chan struct{}
	// slow, when set, is called first in each call of fn.
	slow func()
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) fn(c storage.Changes) {
	if r.slow != nil {
		r.slow()
	}
	c.Buckets = slices.Clone(c.Buckets)
	r.mu.Lock()
	r.reports = append(r.reports, report{Changes: c, at: time.Now()})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// mark returns the number of reports so far, to look at those after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reports)
}

func (r *recorder) since(i int) []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reports[i:])
}

// waitFor waits until cond holds for the reports after mark i, and
// returns them.
func (r *recorder) waitFor(t *testing.T, i int, what string, cond func([]report) bool) []report {
	t.Helper()
	deadline := time.NewTimer(trackWait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, changed := slices.Clone(r.reports[i:]), r.changed
		r.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no report %s after %v; reports: %v", what, trackWait, summary(got))
		}
	}
}

// waitBuckets waits until every bucket of want was reported after mark i.
func (r *recorder) waitBuckets(t *testing.T, i int, want ...string) []report {
	t.Helper()
	return r.waitFor(t, i, fmt.Sprintf("of %q", want), func(rs []report) bool {
		seen := bucketSet(rs)
		for _, b := range want {
			if !seen[b] {
				return false
			}
		}
		return true
	})
}

// waitAll waits for a report with All after mark i.
func (r *recorder) waitAll(t *testing.T, i int) []report {
	t.Helper()
	return r.waitFor(t, i, "with All", func(rs []report) bool {
		return slices.ContainsFunc(rs, func(r report) bool { return r.All })
	})
}

// through returns the latest Through reported.
func (r *recorder) through() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var th time.Time
	for _, rep := range r.reports {
		if rep.Through.After(th) {
			th = rep.Through
		}
	}
	return th
}

func bucketSet(rs []report) map[string]bool {
	seen := map[string]bool{}
	for _, r := range rs {
		for _, b := range r.Buckets {
			seen[b] = true
		}
	}
	return seen
}

func summary(rs []report) string {
	var parts []string
	for _, r := range rs {
		s := fmt.Sprintf("{%q", r.Buckets)
		if r.All {
			s += " All"
		}
		if !r.Through.IsZero() {
			s += " Through"
		}
		parts = append(parts, s+"}")
	}
	if len(parts) > 20 {
		parts = append(parts[:20], "...")
	}
	return strings.Join(parts, " ")
}

// track starts tracking s and stops it when the test ends. It checks
// that the first report, delivered before Track returns, has All.
func track(t *testing.T, s *redisstore.Store, interval time.Duration) (*recorder, func()) {
	t.Helper()
	r := newRecorder()
	ctx, cancel := context.WithTimeout(t.Context(), trackWait)
	defer cancel()
	stop, err := s.Track(ctx, interval, r.fn)
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	t.Cleanup(stop)
	got := r.since(0)
	if len(got) == 0 || !got[0].All {
		t.Fatalf("Track returned before a first report with All: %s", summary(got))
	}
	return r, stop
}

// trackerConns returns the ids of the tracking connections of prefix on
// the server of c, from CLIENT LIST.
func trackerConns(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	list, err := c.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " name="+prefix+":tracker:") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		ids = append(ids, id)
	}
	return ids
}

// TestTrackReportsChanges checks that a change to a bucket by anyone,
// through another store or a plain client, by expiry, and a flush of
// the server, is reported; and that keys which are not buckets of the
// store's prefix are not.
func TestTrackReportsChanges(t *testing.T) {
	srv := redistest.StartT(t)
	tracked := newStore(t, srv.Client())
	r, _ := track(t, tracked, 20*time.Millisecond)
	other := newStore(t, srv.Client()) // another instance of the service
	plain := srv.Client()
	ctx := t.Context()
	tagged := storage.SetOptions{TTL: time.Minute, Tags: []string{"tag"}}

	set := func(bucket string, opt storage.SetOptions) {
		t.Helper()
		if err := other.Set(ctx, bucket, "f", []byte("v"), opt); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		prepare func() // its changes are reported before the test's
		change  func()
		want    []string
	}{
		{
			name:   "set",
			change: func() { set("set", storage.SetOptions{}) },
			want:   []string{"set"},
		},
		{
			name:    "delete",
			prepare: func() { set("delete", storage.SetOptions{}) },
			change: func() {
				if err := other.Delete(ctx, "delete", "f"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"delete"},
		},
		{
			name:    "purge bucket",
			prepare: func() { set("pb", storage.SetOptions{}) },
			change: func() {
				if _, err := other.PurgeBucket(ctx, "pb"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pb"},
		},
		{
			name:    "purge prefix",
			prepare: func() { set("pp/1", storage.SetOptions{}); set("pp/2", storage.SetOptions{}) },
			change: func() {
				if _, err := other.PurgePrefix(ctx, "pp/"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pp/1", "pp/2"},
		},
		{
			name:    "purge tag",
			prepare: func() { set("pt1", tagged); set("pt2", tagged) },
			change: func() {
				if _, err := other.PurgeTag(ctx, "tag"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pt1", "pt2"},
		},
		{
			name:    "purge all",
			prepare: func() { set("pa1", storage.SetOptions{}); set("pa2", storage.SetOptions{}) },
			change: func() {
				if _, err := other.PurgeAll(ctx); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"pa1", "pa2"},
		},
		{
			name: "plain HSET",
			change: func() {
				if err := plain.HSet(ctx, tracked.BucketKey("plain"), "f", "v").Err(); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"plain"},
		},
		{
			name: "expiry",
			prepare: func() {
				// One transaction: the write and the TTL are reported
				// together, before the expiry.
				_, err := plain.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.HSet(ctx, tracked.BucketKey("exp"), "f", "v")
					p.PExpire(ctx, tracked.BucketKey("exp"), 200*time.Millisecond)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"exp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prepare != nil {
				i := r.mark()
				tt.prepare()
				r.waitBuckets(t, i, tt.want...)
			}
			i := r.mark()
			start := time.Now()
			if tt.change != nil {
				tt.change()
			}
			r.waitBuckets(t, i, tt.want...)
			if tt.name == "expiry" {
				if n := plain.Exists(ctx, tracked.BucketKey("exp")).Val(); n != 0 {
					t.Errorf("reported before the bucket expired")
				}
				if d := time.Since(start); d < 100*time.Millisecond {
					t.Errorf("expiry reported %v after the write, before the TTL", d)
				}
			}
		})
	}

	t.Run("not buckets", func(t *testing.T) {
		i := r.mark()
		lock, err := other.TryLock(ctx, "locked", "f", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := lock.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		set("tagged", tagged) // also writes the tag's set
		otherPrefix, err := redisstore.New(srv.Client(), redisstore.WithPrefix(prefixFor(t)+"-x"))
		if err != nil {
			t.Fatal(err)
		}
		defer otherPrefix.Close()
		if err := otherPrefix.Set(ctx, "x", "f", []byte("v"), storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		b := strings.TrimSuffix(tracked.BucketKey(""), "{}")
		for _, key := range []string{b + "nobrace", b + "{a}b", b + "{a{b}", strings.TrimSuffix(b, ":") + "x{y}"} {
			if err := plain.Set(ctx, key, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		set("marker", storage.SetOptions{})
		got := r.waitBuckets(t, i, "marker")
		for bucket := range bucketSet(got) {
			if bucket != "tagged" && bucket != "marker" {
				t.Errorf("reported %q, not a bucket that changed", bucket)
			}
		}
	})

	for _, flush := range []string{"flushall", "flushdb"} {
		t.Run(flush, func(t *testing.T) {
			i := r.mark()
			if err := plain.Do(ctx, flush).Err(); err != nil {
				t.Fatal(err)
			}
			r.waitAll(t, i)
			// Reports go on after the null message.
			i = r.mark()
			set("after-"+flush, storage.SetOptions{})
			r.waitBuckets(t, i, "after-"+flush)
		})
	}
}

// TestTrackEviction fills a server that evicts (allkeys-lru) past its
// maxmemory with keys of another prefix: every bucket it evicts is
// reported.
func TestTrackEviction(t *testing.T) {
	srv := redistest.StartT(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	s := newStore(t, srv.Client())
	r, _ := track(t, s, 20*time.Millisecond)
	plain := srv.Client()
	ctx := t.Context()

	value := strings.Repeat("v", 8<<10)
	var buckets []string
	_, err := plain.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 100 {
			b := fmt.Sprintf("e%03d", i)
			buckets = append(buckets, b)
			p.HSet(ctx, s.BucketKey(b), "f", value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.waitBuckets(t, 0, buckets...)

	i := r.mark()
	filler := strings.Repeat("x", 40<<10)
	for j := range 120 {
		if err := plain.Set(ctx, fmt.Sprintf("filler:%d", j), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var evicted []string
	for _, b := range buckets {
		if plain.Exists(ctx, s.BucketKey(b)).Val() == 0 {
			evicted = append(evicted, b)
		}
	}
	if len(evicted) == 0 {
		t.Fatal("no bucket was evicted")
	}
	r.waitBuckets(t, i, evicted...)
	t.Logf("%d of %d buckets evicted and reported", len(evicted), len(buckets))
}

// TestTrackThrough checks that Through advances about every interval,
// stops while the server is paused and advances again after.
func TestTrackThrough(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	const interval = 25 * time.Millisecond
	r, _ := track(t, s, interval)

	i := r.mark()
	got := r.waitFor(t, i, "with Through 10 times", func(rs []report) bool {
		n := 0
		for _, r := range rs {
			if !r.Through.IsZero() {
				n++
			}
		}
		return n >= 10
	})
	var last time.Time
	for _, rep := range got {
		if rep.Through.IsZero() {
			continue
		}
		if !rep.Through.After(last) {
			t.Errorf("Through went from %v to %v", last, rep.Through)
		}
		if rep.Through.After(rep.at) {
			t.Errorf("Through %v is after the report, %v", rep.Through, rep.at)
		}
		if lag := rep.at.Sub(rep.Through); lag > interval+300*time.Millisecond {
			t.Errorf("Through lags its report by %v, with an interval of %v", lag, interval)
		}
		last = rep.Through
	}

	const pause = 600 * time.Millisecond
	if err := srv.Pause(pause); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	time.Sleep(100 * time.Millisecond) // the last pong before the pause
	during := r.through()
	time.Sleep(pause - 200*time.Millisecond)
	if th := r.through(); !th.Equal(during) {
		t.Errorf("Through advanced from %v to %v while the server was paused", during, th)
	}
	if during.After(paused) {
		t.Errorf("Through %v is after the pause began, %v", during, paused)
	}
	resumed := paused.Add(pause)
	r.waitFor(t, 0, "with Through after the pause", func([]report) bool {
		return r.through().After(resumed)
	})
}

// TestTrackReconnects kills the tracking connection, then restarts the
// server: each time the tracker reconnects, reports All, and reports
// changes again.
func TestTrackReconnects(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	r, _ := track(t, s, 20*time.Millisecond)
	admin := srv.Client()
	ctx := t.Context()
	prefix := prefixFor(t)

	reportsAgain := func(bucket string) {
		t.Helper()
		i := r.mark()
		if err := s.Set(ctx, bucket, "f", []byte("v"), storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitBuckets(t, i, bucket)
		th := time.Now()
		r.waitFor(t, 0, "with Through after the reconnection", func([]report) bool {
			return r.through().After(th)
		})
	}

	ids := trackerConns(t, admin, prefix)
	if len(ids) != 1 {
		t.Fatalf("%d tracking connections, want 1", len(ids))
	}
	i := r.mark()
	if err := admin.Do(ctx, "client", "kill", "id", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, i)
	reportsAgain("after-kill")
	if ids2 := trackerConns(t, admin, prefix); len(ids2) != 1 || ids2[0] == ids[0] {
		t.Errorf("tracking connections %v after killing %v", ids2, ids)
	}

	i = r.mark()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, i)
	reportsAgain("after-restart")
}

// TestTrackCluster checks that changes to buckets on every master of a
// cluster are reported, and that Through advances.
func TestTrackCluster(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	s := newStore(t, c.Client())
	r, _ := track(t, s, 20*time.Millisecond)
	other := newStore(t, c.Client())
	ctx := t.Context()

	i := r.mark()
	start := time.Now()
	var buckets []string
	for j := range 30 {
		b := fmt.Sprintf("c%02d", j)
		buckets = append(buckets, b)
		if err := other.Set(ctx, b, "f", []byte("v"), storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r.waitBuckets(t, i, buckets...)
	for _, n := range c.Nodes() {
		if size := n.Client().DBSize(ctx).Val(); size == 0 {
			t.Errorf("master %s holds none of the buckets: the test does not cover it", n.Addr())
		}
	}
	r.waitFor(t, 0, "with Through after the writes", func([]report) bool {
		return r.through().After(start)
	})
}

// TestTrackRing tracks a ring whose shards change: a shard added gets a
// tracking connection of its own, and an All once it is tracked; the
// connection of a shard removed is closed.
func TestTrackRing(t *testing.T) {
	a, b := redistest.StartT(t), redistest.StartT(t)
	ring := redis.NewRing(&redis.RingOptions{
		Addrs:                 map[string]string{"a": a.Addr()},
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
	})
	t.Cleanup(func() { ring.Close() })
	s := newStore(t, ring)
	r, _ := track(t, s, 20*time.Millisecond)
	ctx := t.Context()
	prefix := prefixFor(t)
	write := func(srv *redistest.Server, bucket string) {
		t.Helper()
		i := r.mark()
		if err := srv.Client().HSet(ctx, s.BucketKey(bucket), "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		r.waitBuckets(t, i, bucket)
	}
	write(a, "on-a")

	i := r.mark()
	ring.SetAddrs(map[string]string{"a": a.Addr(), "b": b.Addr()})
	r.waitAll(t, i)
	write(b, "on-b")
	if n := len(trackerConns(t, b.Client(), prefix)); n != 1 {
		t.Errorf("%d tracking connections on the shard added, want 1", n)
	}

	i = r.mark()
	ring.SetAddrs(map[string]string{"b": b.Addr()})
	r.waitAll(t, i)
	waitUntil(t, "the removed shard's tracking connection is closed", func() bool {
		return len(trackerConns(t, a.Client(), prefix)) == 0
	})
	write(b, "on-b-alone")
	th := time.Now()
	r.waitFor(t, 0, "with Through after the shard was removed", func([]report) bool {
		return r.through().After(th)
	})
}

// TestTrackSentinel tracks through go-redis's failover client, and
// follows the master through a failover.
func TestTrackSentinel(t *testing.T) {
	master := redistest.StartT(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(master.Addr())
	replica := redistest.StartT(t, "--replicaof", host, port)
	if err := redistest.WaitReplicaSynced(replica, trackWait); err != nil {
		t.Fatal(err)
	}
	sen := redistest.StartSentinelT(t,
		"sentinel monitor mymaster "+host+" "+port+" 1",
		"sentinel down-after-milliseconds mymaster 1000",
		"sentinel failover-timeout mymaster 5000",
	)
	sc := sen.Client()
	ctx := t.Context()
	waitUntil(t, "the sentinel lists the replica", func() bool {
		rs, err := sc.Replicas(ctx, "mymaster").Result()
		return err == nil && len(rs) == 1 && rs[0]["flags"] == "slave" && rs[0]["master-link-status"] == "ok"
	})
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            "mymaster",
		SentinelAddrs:         []string{sen.Addr()},
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
		MaxRetries:            -1,
		DialTimeout:           200 * time.Millisecond,
	})
	t.Cleanup(func() { client.Close() })
	s := newStore(t, client)
	r, _ := track(t, s, 20*time.Millisecond)

	i := r.mark()
	if err := s.Set(ctx, "before", "f", []byte("v"), storage.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	r.waitBuckets(t, i, "before")
	if ids := trackerConns(t, master.Client(), prefixFor(t)); len(ids) != 1 {
		t.Fatalf("%d tracking connections on the master, want 1", len(ids))
	}

	i = r.mark()
	if err := sc.Failover(ctx, "mymaster").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the replica is the master", func() bool {
		a, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && len(a) == 2 && net.JoinHostPort(a[0], a[1]) == replica.Addr()
	})
	r.waitAll(t, i)
	waitUntil(t, "the tracker is on the new master", func() bool {
		return len(trackerConns(t, replica.Client(), prefixFor(t))) == 1
	})
	waitUntil(t, "writes reach the new master", func() bool {
		return s.Set(ctx, "after", "f", []byte("v"), storage.SetOptions{}) == nil
	})
	i = r.mark()
	if err := replica.Client().HSet(ctx, s.BucketKey("on-new-master"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	r.waitBuckets(t, i, "on-new-master")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * trackWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrackMiniredis: miniredis has no CLIENT TRACKING.
func TestTrackMiniredis(t *testing.T) {
	m := startMiniredis(t)
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: m.Addr()})
	t.Cleanup(func() { client.Close() })
	s := newStore(t, client)
	ctx, cancel := context.WithTimeout(t.Context(), trackWait)
	defer cancel()
	stop, err := s.Track(ctx, time.Second, func(storage.Changes) { t.Error("fn called") })
	if !errors.Is(err, storage.ErrNoTracking) {
		t.Fatalf("Track on miniredis = %v, want an error matching storage.ErrNoTracking", err)
	}
	if stop != nil {
		t.Error("Track returned a stop func with its error")
	}
	t.Log(err)
}

// TestTrackRejects checks the arguments and clients Track refuses.
func TestTrackRejects(t *testing.T) {
	ctx := t.Context()
	fn := func(storage.Changes) {}
	client := redis.NewClient(&redis.Options{ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1"})
	t.Cleanup(func() { client.Close() })
	s := newStore(t, client)
	if _, err := s.Track(ctx, 0, fn); err == nil {
		t.Error("Track accepted a zero interval")
	}
	if _, err := s.Track(ctx, time.Second, nil); err == nil {
		t.Error("Track accepted a nil func")
	}

	csc := redis.NewClient(&redis.Options{
		ContextTimeoutEnabled: true, DialerRetries: 1, Addr: "127.0.0.1:1",
		ClientSideCacheConfig: &redis.ClientSideCacheConfig{},
	})
	t.Cleanup(func() { csc.Close() })
	_, err := newStore(t, csc).Track(ctx, time.Second, fn)
	if err == nil || !strings.Contains(err.Error(), "ClientSideCacheConfig") {
		t.Errorf("Track on a client with a client-side cache = %v, want an error naming it", err)
	}

	// A server that does not answer: Track gives up when ctx ends.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = s.Track(short, time.Second, fn)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Track on a server that is down = %v, want an error matching ctx's", err)
	}
}

// TestTrackStop checks that fn is never called once stop returned, that
// the tracker's goroutines end, and that Store.Close stops trackers.
func TestTrackStop(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	writer := newStore(t, srv.Client())
	ctx := t.Context()
	before := runtime.NumGoroutine()

	var (
		mu      sync.Mutex
		stopped bool
	)
	fn := func(storage.Changes) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			t.Error("fn called after stop returned")
		}
	}
	stop, err := s.Track(ctx, 5*time.Millisecond, fn)
	if err != nil {
		t.Fatal(err)
	}
	// Keep reports coming while stop runs.
	writes, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for j := 0; writes.Err() == nil; j++ {
			_ = writer.Set(writes, fmt.Sprint(j), "f", nil, storage.SetOptions{})
		}
	})
	time.Sleep(50 * time.Millisecond)
	stop()
	mu.Lock()
	stopped = true
	mu.Unlock()
	stop() // again: no effect
	time.Sleep(50 * time.Millisecond)
	cancel()
	wg.Wait()
	waitGoroutines(t, before)

	// Store.Close stops the trackers that are still running.
	r := newRecorder()
	if _, err := s.Track(ctx, 5*time.Millisecond, r.fn); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := r.mark()
	if err := writer.Set(ctx, "after-close", "f", nil, storage.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := r.since(n); len(got) != 0 {
		t.Errorf("reports after Close: %s", summary(got))
	}
	if _, err := s.Track(ctx, time.Second, r.fn); err == nil {
		t.Error("Track after Close succeeded")
	}
	waitGoroutines(t, before)
}

// waitGoroutines waits until no more goroutines run than before.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(trackWait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTrackSlowFunc: while fn is slow, reports are merged, and none is
// lost.
func TestTrackSlowFunc(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	r := newRecorder()
	var slow sync.Once
	release := make(chan struct{})
	r.slow = func() {
		// The first report is delivered before Track returns: hold the
		// second.
		if r.mark() == 1 {
			slow.Do(func() { <-release })
		}
	}
	stop, err := s.Track(t.Context(), time.Hour, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx := t.Context()
	var want []string
	for j := range 50 {
		b := fmt.Sprintf("s%02d", j)
		want = append(want, b)
		if err := s.Set(ctx, b, "f", nil, storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	got := r.waitBuckets(t, 1, want...)
	if len(got) > 3 {
		t.Errorf("%d reports for 50 changes while fn was held: not merged", len(got))
	}
}

// TestTrackDelay measures the delay from a Set on one client to its
// report on a tracker of another.
func TestTrackDelay(t *testing.T) {
	srv := redistest.StartT(t)
	s := newStore(t, srv.Client())
	writer := newStore(t, srv.Client())
	var (
		mu   sync.Mutex
		want string
		got  = make(chan struct{}, 1)
	)
	stop, err := s.Track(t.Context(), time.Second, func(c storage.Changes) {
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(c.Buckets, want) {
			got <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ctx := t.Context()
	const n = 200
	delays := make([]time.Duration, 0, n) // from the call of Set
	afters := make([]time.Duration, 0, n) // from its return
	for j := range n {
		b := fmt.Sprintf("d%03d", j)
		mu.Lock()
		want = b
		mu.Unlock()
		start := time.Now()
		if err := writer.Set(ctx, b, "f", []byte("v"), storage.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		select {
		case <-got:
		case <-time.After(trackWait):
			t.Fatalf("set %d not reported", j)
		}
		delays = append(delays, time.Since(start))
		afters = append(afters, time.Since(returned))
	}
	slices.Sort(delays)
	slices.Sort(afters)
	t.Logf("from the call of Set to its report, %d sets: p50 %v, p99 %v, max %v", n, delays[n/2], delays[n*99/100], delays[n-1])
	t.Logf("from the return of Set to its report: p50 %v, p99 %v, max %v", afters[n/2], afters[n*99/100], afters[n-1])
}
