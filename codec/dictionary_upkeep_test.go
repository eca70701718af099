package codec

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The upkeep of a route's dictionary (training, publishing, checking,
// converging with other instances) under stores that fail, forget or
// panic. The tests run in testing/synctest bubbles: the codec's clock and
// its background tasks are the bubble's, so intervals and back-offs are
// exact.

const routeName = "GET /items/%7Bid%7D|"

// testCodec returns a dictionary codec over store whose errors go to
// errs (when not nil), checking the store every interval.
func testCodec(t *testing.T, store storage.DictionaryStore, interval time.Duration, errs *atomic.Int64) *Dictionary {
	t.Helper()
	d, err := NewDictionary(store, routeName, WithCheckInterval(interval),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithEvents(Events{Error: func(ctx context.Context, op string, err error) {
			if errs != nil {
				errs.Add(1)
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

// trainOn encodes items from id on until d has a dictionary, letting its
// background work run between them, and returns the next unused id.
func trainOn(t *testing.T, d *Dictionary, id int) int {
	t.Helper()
	for start := id; d.Current() == 0; id++ {
		if id-start > 2000 {
			t.Fatal("no dictionary after 2,000 bodies")
		}
		d.Encode(t.Context(), item(id))
		time.Sleep(10 * time.Millisecond) // past a retry hold now and then
		synctest.Wait()
	}
	return id
}

// idle reports whether d runs no background task.
func (d *Dictionary) idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.busy
}

// refusingStore refuses the first refusals dictionary publications, as a
// Redis out of memory would, and counts publications and checks.
type refusingStore struct {
	*memstore.Store
	mu       sync.Mutex
	refusals int
	adds     int
	checks   int
}

func (s *refusingStore) AddDictionary(ctx context.Context, route string, id uint32, dict []byte) (uint32, error) {
	s.mu.Lock()
	s.adds++
	refuse := s.refusals > 0
	if refuse {
		s.refusals--
	}
	s.mu.Unlock()
	if refuse {
		return 0, fmt.Errorf("test: %w", storage.ErrRefused)
	}
	return s.Store.AddDictionary(ctx, route, id, dict)
}

func (s *refusingStore) CurrentDictionary(ctx context.Context, route string) (uint32, error) {
	s.mu.Lock()
	s.checks++
	s.mu.Unlock()
	return s.Store.CurrentDictionary(ctx, route)
}

func (s *refusingStore) counts() (adds, checks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adds, s.checks
}

// A dictionary the store refuses is published again once it takes it,
// without being trained again.
func TestDictionaryPublishRetriedWithoutRetraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &refusingStore{Store: newMemStore(t), refusals: 2}
		var errs atomic.Int64
		d := testCodec(t, store, time.Hour, &errs)
		for id := 1; d.Current() == 0; id++ {
			d.Encode(t.Context(), item(id))
			time.Sleep(100 * time.Millisecond) // past the retry interval now and then
			synctest.Wait()
		}
		if adds, _ := store.counts(); adds != 3 {
			t.Errorf("%d publications, want 3 (two refused)", adds)
		}
		if n := d.builds.Load(); n != 1 {
			t.Errorf("dictionary built %d times, want once", n)
		}
		if errs.Load() != 2 {
			t.Errorf("%d errors reported, want the two refusals", errs.Load())
		}
		if _, stored := d.Encode(t.Context(), item(99999)); stored.Coding != envelope.DictionaryCoding {
			t.Errorf("entry after the publication coded %q", stored.Coding)
		}
	})
}

// A route that is only read, not filled, still checks its dictionary, so
// that the store renews it (Redis: its expiry) while the route is in use.
func TestDictionaryCheckedOnReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &refusingStore{Store: newMemStore(t)}
		d := testCodec(t, store, 20*time.Millisecond, nil)
		next := trainOn(t, d, 1)
		_, stored := d.Encode(t.Context(), item(next))
		time.Sleep(time.Second) // past every retry hold
		synctest.Wait()
		_, before := store.counts()
		for range 300 { // 300 ms of reads, one a millisecond
			e := *stored
			if err := d.Open(t.Context(), &e); err != nil || !bytes.Equal(e.Body, item(next).Body) {
				t.Fatalf("open: %v", err)
			}
			time.Sleep(time.Millisecond)
			synctest.Wait()
		}
		_, after := store.counts()
		// One check per interval, give or take the one in flight.
		if n := after - before; n < 14 || n > 16 {
			t.Errorf("%d dictionary checks in 300ms of reads with a 20ms check interval, want 15", n)
		}
	})
}

// panickyStore panics in AddDictionary, as a faulty store or library
// might.
type panickyStore struct {
	*memstore.Store
	adds atomic.Int64
}

func (s *panickyStore) AddDictionary(context.Context, string, uint32, []byte) (uint32, error) {
	s.adds.Add(1)
	panic("store fault")
}

// A dictionary task that panics is recovered and backs off like a
// failure: compression goes on, and training is not retried in a tight
// loop.
func TestDictionaryTaskPanicBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &panickyStore{Store: newMemStore(t)}
		var panics atomic.Int64
		d, err := NewDictionary(store, routeName, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			WithEvents(Events{Error: func(_ context.Context, _ string, err error) {
				if strings.Contains(err.Error(), "panicked") {
					panics.Add(1)
				}
			}}))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close(context.Background())
		for id := 1; id <= 1500; id++ { // 1.5 s of fills, one a millisecond
			if _, stored := d.Encode(t.Context(), item(id)); stored.Coding != "gzip" {
				t.Fatalf("fill %d stored %q, want gzip while there is no dictionary", id, stored.Coding)
			}
			time.Sleep(time.Millisecond)
			synctest.Wait()
		}
		if n := store.adds.Load(); n < 1 || n > 2 {
			t.Errorf("%d publications in 1.5s of fills with a panicking store, want one a second at most", n)
		}
		if panics.Load() != store.adds.Load() {
			t.Errorf("%d panics reported, %d happened", panics.Load(), store.adds.Load())
		}
	})
}

// After a flush, an instance that still compresses with the lost
// dictionary and a new one that trained another converge: the first
// republishes its own (for the entries written with it) and adopts the
// new current one, so a third instance reads the entries of both.
func TestDictionaryInstancesConvergeAfterFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		a := testCodec(t, store, 10*time.Millisecond, nil)
		next := trainOn(t, a, 1)
		x := a.Current()
		synctest.Wait()
		if !a.idle() {
			t.Fatal("a's background work still runs in a quiet bubble")
		}

		store.Flush()
		b := testCodec(t, store, 10*time.Millisecond, nil)
		next = trainOn(t, b, next+1000)
		y := b.Current()
		if y == x {
			t.Fatalf("the second instance trained the same dictionary %d", y)
		}
		// a writes one entry with x, then its check finds y current.
		_, old := a.Encode(t.Context(), item(next))
		if id := frameID(t, old.Body); id != x {
			t.Fatalf("first instance wrote with dictionary %d, want its own %d", id, x)
		}
		for a.Current() != y {
			next++
			a.Encode(t.Context(), item(next))
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
		}
		cur, dicts, err := store.Dictionaries(t.Context(), routeName)
		if err != nil || cur != y || dicts[x] == nil || dicts[y] == nil {
			t.Fatalf("store: current %d, dictionaries %d, %v; want current %d and both kept", cur, len(dicts), err, y)
		}
		c := testCodec(t, store, time.Hour, nil)
		e := *old
		if err := c.Open(t.Context(), &e); err != nil {
			t.Errorf("third instance on an entry written with the republished dictionary: %v", err)
		}
	})
}

// A current dictionary in the store that does not parse is reported and
// left alone: the instance trains one of its own, uses it, and does not
// train again and again.
func TestDictionaryUnusableCurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(t)
		if _, err := store.AddDictionary(t.Context(), routeName, 99999, []byte("not a zstd dictionary")); err != nil {
			t.Fatal(err)
		}
		var errs atomic.Int64
		d := testCodec(t, store, 10*time.Millisecond, &errs)
		next := trainOn(t, d, 1)
		for i := range 100 {
			d.Encode(t.Context(), item(next+i))
			time.Sleep(15 * time.Millisecond) // let checks run
			synctest.Wait()
		}
		if n := d.builds.Load(); n != 1 || errs.Load() == 0 {
			t.Errorf("%d dictionaries built, %d errors: want one built and the bad one reported", n, errs.Load())
		}
		if _, stored := d.Encode(t.Context(), item(next+100)); stored.Coding != envelope.DictionaryCoding {
			t.Errorf("stored coding %q, want %q", stored.Coding, envelope.DictionaryCoding)
		}
	})
}

// frameID returns the dictionary id in the header of the zstd frame b.
func frameID(t *testing.T, b []byte) uint32 {
	t.Helper()
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		t.Fatal(err)
	}
	return h.DictionaryID
}
