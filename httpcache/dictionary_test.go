package httpcache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

var dictPolicy = policy.Policy{TTL: time.Hour, Compression: policy.CompressDictionary}

// itemDoc is a JSON document of about 2 KB for item id: the same keys and
// vocabulary as every other item, with values of its own.
func itemDoc(id int) string {
	r := rand.New(rand.NewPCG(uint64(id), 7))
	words := []string{"compact", "kettle", "steel", "oak", "battery", "travel", "quiet", "lamp", "warranty", "cotton"}
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":%d,"name":"%s %s","price":{"amount":%d,"currency":"EUR"},"variants":[`,
		id, words[r.IntN(10)], words[r.IntN(10)], r.IntN(50000))
	for i := range 28 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%d-%d","color":"%s","stock":%d,"ean":"%013d"}`,
			id, i, words[r.IntN(10)], r.IntN(300), r.Int64N(1e13))
	}
	b.WriteString(`]}`)
	return b.String()
}

// itemOrigin answers /items/{id} with itemDoc(id) and an ETag.
func itemOrigin() *origin {
	return &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		var id int
		fmt.Sscan(r.PathValue("id"), &id)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", fmt.Sprintf(`"v%d"`, id))
		fmt.Fprint(w, itemDoc(id))
	}}
}

// storedEntry reads and decodes the stored entry of target on route.
func storedEntry(t *testing.T, s storage.Store, pattern, target string, p policy.Policy) storage.Entry {
	t.Helper()
	k := keyOf(t, pattern, target, p)
	raw, err := s.Get(context.Background(), k.Bucket, k.Field)
	if err != nil {
		t.Fatalf("no stored entry for %s: %v", target, err)
	}
	var e storage.Entry
	if err := envelope.Decode(raw, &e); err != nil {
		t.Fatal(err)
	}
	e.Body = append([]byte(nil), e.Body...)
	return e
}

// waitFor polls cond for up to 30 seconds: training a dictionary under
// -race on a busy machine takes seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dictionaryOf returns the dictionary codec of the route declared with
// pattern.
func dictionaryOf(c *Cache, pattern string) *codec.Dictionary {
	return c.routes[pattern].codec.(*codec.Dictionary)
}

// train fills items until the cache has a dictionary for the route, and
// returns the next unused id.
func train(t *testing.T, c *Cache, h http.Handler, from int) int {
	t.Helper()
	id := from
	waitFor(t, "a dictionary", func() bool {
		do(h, "GET", fmt.Sprintf("/items/%d", id))
		id++
		st := c.Stats()
		return st.DictionariesLoaded > 0 && dictionaryOf(c, "GET /items/{id}").Current() != 0
	})
	return id
}

func TestDictionaryCompression(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	o := itemOrigin()
	h := mux(t, c, "GET /items/{id}", dictPolicy, o)

	first := do(h, "GET", "/items/1", "Accept-Encoding", "gzip")
	if first.body != itemDoc(1) {
		t.Fatalf("miss body differs from the origin's")
	}
	if e := storedEntry(t, store, "GET /items/{id}", "/items/1", dictPolicy); e.Coding != "gzip" {
		t.Errorf("before the dictionary the entry is coded %q, want gzip", e.Coding)
	}
	next := train(t, c, h, 2)
	if st := c.Stats(); st.DictionariesTrained != 1 || st.DictionaryMisses != 0 {
		t.Errorf("stats after training = %+v, want one dictionary trained", st)
	}

	target := fmt.Sprintf("/items/%d", next)
	miss := do(h, "GET", target)
	e := storedEntry(t, store, "GET /items/{id}", target, dictPolicy)
	if e.Coding != envelope.DictionaryCoding || !e.CacheEncoded {
		t.Fatalf("after training the entry is coded %q, want %q", e.Coding, envelope.DictionaryCoding)
	}
	gz := storage.Entry{Body: []byte(itemDoc(next)), Header: http.Header{"Content-Type": {"application/json"}}}
	codec.Compress(&gz)
	if len(e.Body) >= len(gz.Body)*9/10 {
		t.Errorf("dictionary body %d bytes against gzip's %d: want at least a tenth smaller", len(e.Body), len(gz.Body))
	}
	t.Logf("body %d bytes: gzip %d, dictionary %d", len(itemDoc(next)), len(gz.Body), len(e.Body))

	for _, ae := range []string{"gzip", "", "*", "zstd"} {
		hit := do(h, "GET", target, "Accept-Encoding", ae)
		if !hit.isHit() || hit.body != miss.body || hit.body != itemDoc(next) {
			t.Fatalf("Accept-Encoding %q: hit %v, body equal to the origin's %v", ae, hit.isHit(), hit.body == itemDoc(next))
		}
		if ce := hit.header.Get("Content-Encoding"); ce != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want none: no client has the dictionary", ae, ce)
		}
		if et := hit.header.Get("Etag"); et != fmt.Sprintf(`"v%d"`, next) {
			t.Errorf("ETag %q, want the origin's strong one: the bytes sent are the origin's", et)
		}
		if cl := hit.header.Get("Content-Length"); cl != fmt.Sprint(len(itemDoc(next))) {
			t.Errorf("Content-Length %q, want %d", cl, len(itemDoc(next)))
		}
	}
	if r := do(h, "GET", target, "If-None-Match", fmt.Sprintf(`"v%d"`, next)); r.status != http.StatusNotModified || !r.isHit() {
		t.Errorf("conditional hit: %d %q, want 304 from the cache", r.status, r.cacheStatus())
	}
	if r := do(h, "HEAD", target); r.status != http.StatusOK || r.body != "" || !r.isHit() {
		t.Errorf("HEAD: %d, %d body bytes, %q", r.status, len(r.body), r.cacheStatus())
	}
	// Entries gzipped before the dictionary still serve.
	if r := do(h, "GET", "/items/1"); !r.isHit() || r.body != itemDoc(1) {
		t.Errorf("gzip entry from before the dictionary: hit %v", r.isHit())
	}
}

func TestDictionarySharedBetweenInstances(t *testing.T) {
	store := newMemStore(t)
	a := newTestCache(t, store)
	ha := mux(t, a, "GET /items/{id}", dictPolicy, itemOrigin())
	next := train(t, a, ha, 1)
	target := fmt.Sprintf("/items/%d", next)
	do(ha, "GET", target)

	// b has never filled anything: its first request is a hit on a's
	// entry, decoded with a's dictionary read from the store.
	b := newTestCache(t, store)
	ob := itemOrigin()
	hb := mux(t, b, "GET /items/{id}", dictPolicy, ob)
	if r := do(hb, "GET", target); !r.isHit() || r.body != itemDoc(next) {
		t.Fatalf("the other instance: hit %v (%q), body equal %v", r.isHit(), r.cacheStatus(), r.body == itemDoc(next))
	}
	if st := b.Stats(); st.DictionariesLoaded != 1 || st.DictionariesTrained != 0 || st.DictionaryMisses != 0 {
		t.Errorf("second instance stats = %+v, want the one dictionary loaded, none trained", st)
	}
	// It adopted the same dictionary for its own fills, which a reads.
	target2 := fmt.Sprintf("/items/%d", next+1)
	do(hb, "GET", target2)
	ea := storedEntry(t, store, "GET /items/{id}", target, dictPolicy)
	eb := storedEntry(t, store, "GET /items/{id}", target2, dictPolicy)
	if eb.Coding != envelope.DictionaryCoding {
		t.Fatalf("second instance stored %q, want %q", eb.Coding, envelope.DictionaryCoding)
	}
	if ida, idb := frameDict(t, ea.Body), frameDict(t, eb.Body); ida != idb {
		t.Errorf("instances compress with dictionaries %d and %d, want one", ida, idb)
	}
	if r := do(ha, "GET", target2); !r.isHit() || r.body != itemDoc(next+1) {
		t.Errorf("first instance on the second's entry: hit %v", r.isHit())
	}
	if ob.calls.Load() != 1 {
		t.Errorf("second instance origin calls = %d, want 1", ob.calls.Load())
	}
}

func frameDict(t *testing.T, body []byte) uint32 {
	t.Helper()
	id, err := frameDictionaryID(body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// forgetfulStore hides the dictionaries of its MemoryStore while forget
// is set, as a flushed or evicting Redis would.
type forgetfulStore struct {
	*memstore.Store
	mu     sync.Mutex
	forget bool
	adds   int
}

func (s *forgetfulStore) setForget(v bool) {
	s.mu.Lock()
	s.forget = v
	s.mu.Unlock()
}

func (s *forgetfulStore) forgetting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forget
}

func (s *forgetfulStore) Dictionaries(ctx context.Context, route string) (uint32, map[uint32][]byte, error) {
	if s.forgetting() {
		return 0, nil, nil
	}
	return s.Store.Dictionaries(ctx, route)
}

func (s *forgetfulStore) CurrentDictionary(ctx context.Context, route string) (uint32, error) {
	if s.forgetting() {
		return 0, nil
	}
	return s.Store.CurrentDictionary(ctx, route)
}

func (s *forgetfulStore) AddDictionary(ctx context.Context, route string, id uint32, dict []byte) (uint32, error) {
	s.mu.Lock()
	s.adds++
	s.forget = false // the store has it again
	s.mu.Unlock()
	return s.Store.AddDictionary(ctx, route, id, dict)
}

func TestDictionaryLostIsAMiss(t *testing.T) {
	store := &forgetfulStore{Store: newMemStore(t)}
	a := newTestCache(t, store)
	ha := mux(t, a, "GET /items/{id}", dictPolicy, itemOrigin())
	next := train(t, a, ha, 1)
	target := fmt.Sprintf("/items/%d", next)
	do(ha, "GET", target)

	store.setForget(true)
	b := newTestCache(t, store)
	ob := itemOrigin()
	hb := mux(t, b, "GET /items/{id}", dictPolicy, ob)
	r := do(hb, "GET", target)
	if r.isHit() || r.body != itemDoc(next) || r.status != http.StatusOK {
		t.Fatalf("entry with a lost dictionary: %d %q, want a miss with the origin's body", r.status, r.cacheStatus())
	}
	// Two reads met the entry: the lookup and the fill's re-read.
	if st := b.Stats(); st.DictionaryMisses == 0 || ob.calls.Load() != 1 {
		t.Errorf("dictionary misses %d, origin calls %d; want some and 1", st.DictionaryMisses, ob.calls.Load())
	}
	// The fill replaced the entry with one b can read (gzip: it has no
	// dictionary yet).
	if e := storedEntry(t, store, "GET /items/{id}", target, dictPolicy); e.Coding != "gzip" {
		t.Errorf("refilled entry coded %q, want gzip", e.Coding)
	}
	if r := do(hb, "GET", target); !r.isHit() {
		t.Errorf("after the refill: %q, want a hit", r.cacheStatus())
	}
}

func TestDictionaryRepublishedAfterFlush(t *testing.T) {
	store := &forgetfulStore{Store: newMemStore(t)}
	a := newTestCache(t, store)
	a.dictCheckInterval = 10 * time.Millisecond
	ha := mux(t, a, "GET /items/{id}", dictPolicy, itemOrigin())
	next := train(t, a, ha, 1)
	store.mu.Lock()
	adds := store.adds
	store.mu.Unlock()

	store.setForget(true)
	// The next fills find the store without a current dictionary and
	// publish a's again.
	waitFor(t, "the dictionary republished", func() bool {
		do(ha, "GET", fmt.Sprintf("/items/%d", next))
		next++
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.adds > adds && !store.forget
	})
	target := fmt.Sprintf("/items/%d", next)
	do(ha, "GET", target)
	b := newTestCache(t, store)
	hb := mux(t, b, "GET /items/{id}", dictPolicy, itemOrigin())
	if r := do(hb, "GET", target); !r.isHit() || r.body != itemDoc(next) {
		t.Errorf("another instance after the republish: %q", r.cacheStatus())
	}
}

func TestDictionaryCorruptEntryIsDeleted(t *testing.T) {
	store := newMemStore(t)
	a := newTestCache(t, store)
	o := itemOrigin()
	ha := mux(t, a, "GET /items/{id}", dictPolicy, o)
	next := train(t, a, ha, 1)
	target := fmt.Sprintf("/items/%d", next)
	do(ha, "GET", target)
	e := storedEntry(t, store, "GET /items/{id}", target, dictPolicy)
	// Keep the frame header (and so the dictionary id), break the rest.
	var fh zstd.Header
	if err := fh.Decode(e.Body); err != nil {
		t.Fatal(err)
	}
	for i := fh.HeaderSize; i < len(e.Body); i++ {
		e.Body[i] ^= 0x5a
	}
	kr, _ := keying.Compile("GET /items/{id}", dictPolicy)
	m := http.NewServeMux()
	var k keying.Key
	m.HandleFunc("GET /items/{id}", func(_ http.ResponseWriter, r *http.Request) { k, _ = kr.Key(r) })
	do(m, "GET", target)
	if err := store.Set(t.Context(), k.Bucket, k.Field, envelope.Encode(nil, &e), storage.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	calls := o.calls.Load()
	r := do(ha, "GET", target)
	if r.isHit() || r.body != itemDoc(next) {
		t.Fatalf("corrupt entry: %q, want a miss with the origin's body", r.cacheStatus())
	}
	if o.calls.Load() != calls+1 || a.Stats().StoreErrors == 0 {
		t.Errorf("origin calls %d, store errors %d: want the origin called and the corruption reported", o.calls.Load()-calls, a.Stats().StoreErrors)
	}
	if r := do(ha, "GET", target); !r.isHit() || r.body != itemDoc(next) {
		t.Errorf("after the refill: %q", r.cacheStatus())
	}
}

func TestCompressionPolicies(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	p := policy.Policy{TTL: time.Hour, Compression: policy.CompressNone}
	h := mux(t, c, "GET /items/{id}", p, itemOrigin())
	do(h, "GET", "/items/1")
	if e := storedEntry(t, store, "GET /items/{id}", "/items/1", p); e.Coding != "" || string(e.Body) != itemDoc(1) {
		t.Errorf("CompressNone stored coding %q", e.Coding)
	}

	// A store without dictionaries cannot take a dictionary route.
	other := newTestCache(t, storeFuncs{Store: newMemStore(t)})
	_, err := other.Route("GET /items/{id}", dictPolicy)
	var fe *policy.FieldError
	if err == nil || !strings.Contains(err.Error(), `route "GET /items/{id}": Compression`) || !errors.As(err, &fe) {
		t.Errorf("dictionary route over a store without dictionaries: %v", err)
	}
	if _, err := c.Route("GET /x", policy.Policy{Compression: "br"}); err == nil || !strings.Contains(err.Error(), "Compression") {
		t.Errorf("unknown compression: %v", err)
	}
}

// frameDictionaryID returns the dictionary id in the header of the zstd
// frame b.
func frameDictionaryID(b []byte) (uint32, error) {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return 0, err
	}
	return h.DictionaryID, nil
}

// Requests collapsed on a fill of a dictionary route get the origin's
// body, whatever they accept: the entry shared with them is not the one
// compressed for the store.
func TestDictionaryCollapsedWaiters(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	items := itemOrigin()
	gate := make(chan struct{})
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "4711" {
			<-gate
		}
		items.ServeHTTP(w, r)
	}}
	h := mux(t, c, "GET /items/{id}", dictPolicy, o)
	train(t, c, h, 1)

	var wg sync.WaitGroup
	results := make([]result, 30)
	for i := range results {
		wg.Go(func() {
			results[i] = do(h, "GET", "/items/4711", "Accept-Encoding", []string{"gzip", "", "*", "zstd-dict"}[i%4])
		})
	}
	waitFor(t, "the other 29 requests waiting on the one fill", func() bool { return c.flights.waiting() == 29 })
	close(gate)
	wg.Wait()
	collapsed := 0
	for i, r := range results {
		if r.status != http.StatusOK || r.body != itemDoc(4711) || r.header.Get("Content-Encoding") != "" {
			t.Errorf("request %d: %d, Content-Encoding %q, body equal %v", i, r.status, r.header.Get("Content-Encoding"), r.body == itemDoc(4711))
		}
		if strings.Contains(r.cacheStatus(), "collapsed") {
			collapsed++
		}
	}
	if collapsed == 0 {
		t.Errorf("no request was collapsed on the fill: the test tested nothing")
	}
	if e := storedEntry(t, store, "GET /items/{id}", "/items/4711", dictPolicy); e.Coding != envelope.DictionaryCoding {
		t.Errorf("stored coding %q, want %q", e.Coding, envelope.DictionaryCoding)
	}
}

// slowDictionaries is a store whose dictionary reads hang until their
// context ends, as on an overloaded Redis.
type slowDictionaries struct {
	*memstore.Store
	reads atomic.Int64
}

func (s *slowDictionaries) Dictionaries(ctx context.Context, route string) (uint32, map[uint32][]byte, error) {
	s.reads.Add(1)
	<-ctx.Done()
	return 0, nil, ctx.Err()
}

// Concurrent first fills share one dictionary read, bounded by the store
// timeout: a slow store delays them once, not once per request. (With a
// store timeout over the one-second retry interval, reads queued one after
// another would each run in turn.)
func TestDictionaryLoadIsSharedAndBounded(t *testing.T) {
	store := &slowDictionaries{Store: newMemStore(t)}
	c := newTestCache(t, store, WithStoreTimeout(1500*time.Millisecond), WithoutBreaker())
	h := mux(t, c, "GET /items/{id}", dictPolicy, itemOrigin())
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			start := time.Now()
			r := do(h, "GET", fmt.Sprintf("/items/%d", i))
			if r.status != http.StatusOK || r.body != itemDoc(i) {
				t.Errorf("item %d: %d", i, r.status)
			}
			d := int64(time.Since(start))
			for {
				old := slowest.Load()
				if d <= old || slowest.CompareAndSwap(old, d) {
					break
				}
			}
		})
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > 2500*time.Millisecond {
		t.Errorf("slowest fill took %v: the dictionary reads were not shared", d)
	}
	if n := store.reads.Load(); n > 2 {
		t.Errorf("%d dictionary reads for 20 concurrent fills, want 1 (2 with a retry)", n)
	}
}
