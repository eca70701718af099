//go:build !race

// Helpers of the benchmarks in bench_test.go. Like the storage package's
// benchmarks they are left out of -race builds: the race detector makes
// sync.Pool drop a random share of what it is given and slows everything
// down several times, so neither allocation counts nor timings would mean
// anything there.

package integration

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// discardWriter is a reusable ResponseWriter that keeps the status and
// counts the body bytes, so that a benchmark calling ServeHTTP directly
// measures the handler and not an HTTP server or a recorder's buffer.
type discardWriter struct {
	h      http.Header
	status int
	n      int // body bytes written since the last resetCount
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: http.Header{}} }

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// reset prepares the writer for the next response; the header map is
// kept, emptied.
func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
}

// newBenchCache returns a cache over a Redis store on rc under prefix p,
// closed with the benchmark.
func newBenchCache(b *testing.B, rc redis.UniversalClient, p string, opts ...httpcache.Option) *httpcache.Cache {
	b.Helper()
	store, err := redisstore.New(rc, redisstore.WithPrefix(p))
	if err != nil {
		b.Fatal(err)
	}
	cache, err := httpcache.New(store, append([]httpcache.Option{httpcache.WithLogger(quiet()), httpcache.WithoutStartupHealthCheck()}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cache.Close(ctx)
		store.Close()
	})
	return cache
}

// dropPrefix deletes every key under p on the shared server when the
// benchmark ends.
func dropPrefix(b *testing.B, rc redis.UniversalClient, p string) {
	b.Cleanup(func() {
		if keys := scanKeys(b, rc, p+":*"); len(keys) > 0 {
			rc.Unlink(context.Background(), keys...)
		}
	})
}

// oneShot runs measure in the first iteration of b.Loop only. For
// measurements that are done once (memory per response, a timed load
// run): the later iterations, which b.Loop runs when measure took less
// than the bench time, do nothing.
func oneShot(b *testing.B, measure func()) {
	done := false
	for b.Loop() {
		if !done {
			measure()
			done = true
		}
	}
}

// percentile returns the q-quantile (0 <= q <= 1) of sorted by the
// nearest-rank method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencySummary sorts lat and returns its p50, p99 and max.
func latencySummary(lat []time.Duration) (p50, p99, worst time.Duration) {
	slices.Sort(lat)
	return percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 1)
}

// infoInt reads one integer field of an INFO section.
func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// dataMemory returns the server's used_memory less the memory of its
// normal clients (query and output buffers), which depends on how the
// data was sent rather than on how it is stored. It first waits for the
// server to finish rehashing its key tables in its cron (a dict being
// rehashed holds two tables), which takes well under the wait.
func dataMemory(b *testing.B, rc *redis.Client) int64 {
	b.Helper()
	time.Sleep(300 * time.Millisecond)
	info, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	used, clients := infoInt(info, "used_memory"), infoInt(info, "mem_clients_normal")
	if used < 0 || clients < 0 {
		b.Fatalf("INFO memory lacks used_memory or mem_clients_normal:\n%s", info)
	}
	return used - clients
}

// storeClock is a go-redis hook that records when the first store of a
// cached response (the store's script on a bucket key) completed, and on
// which app's client: the moment a fill becomes visible to other instances.
type storeClock struct {
	app int // index of the app whose client carries this hook

	shared *storeTimes
}

type storeTimes struct {
	mu   sync.Mutex
	at   time.Time
	app  int
	seen bool
}

func (s *storeTimes) reset() {
	s.mu.Lock()
	s.seen = false
	s.mu.Unlock()
}

// first returns the completion time of the first store since reset and the
// app that made it.
func (s *storeTimes) first() (time.Time, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at, s.app, s.seen
}

func (c *storeClock) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *storeClock) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && (cmd.Name() == "evalsha" || cmd.Name() == "eval") {
			// EVAL(SHA) script numkeys key ...: the store's script names the
			// bucket ("<prefix>:b:{...}"); redsync's scripts name lock keys.
			if args := cmd.Args(); len(args) > 3 {
				if key, ok := args[3].(string); ok && strings.Contains(key, ":b:{") {
					now := time.Now()
					c.shared.mu.Lock()
					if !c.shared.seen {
						c.shared.at, c.shared.app, c.shared.seen = now, c.app, true
					}
					c.shared.mu.Unlock()
				}
			}
		}
		return err
	}
}

func (c *storeClock) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// benchHTTPClient is an HTTP client of the benchmarks' own, closed with
// the benchmark, so that connections to servers of one benchmark never
// linger into the next.
func benchHTTPClient(b *testing.B) *http.Client {
	c := httpClient()
	b.Cleanup(c.CloseIdleConnections)
	return c
}

// Realistic JSON documents: varied fields, ids, names and numbers drawn
// from a generator seeded by the document's identity, so the same URL
// always has the same body and no two bodies repeat a filler.

var (
	adjectives = []string{"brushed", "compact", "vintage", "quiet", "wireless", "organic", "foldable",
		"waterproof", "ceramic", "bamboo", "smart", "heavy-duty", "minimal", "classic", "portable",
		"handmade", "recycled", "ergonomic", "insulated", "modular"}
	nouns = []string{"kettle", "lamp", "backpack", "chair", "speaker", "notebook", "blender", "jacket",
		"monitor", "keyboard", "tent", "bottle", "desk", "headphones", "mug", "scarf", "drill",
		"router", "pillow", "camera"}
	brands     = []string{"Norrland", "Acme", "Hokuto", "Bellweather", "Fjordline", "Quillon", "Tessaro", "Oakridge", "Marlow & Finch", "Vanta"}
	categories = []string{"kitchen/appliances", "home/lighting", "outdoor/camping", "office/furniture",
		"audio/speakers", "fashion/outerwear", "tools/power", "electronics/networking"}
	colors    = []string{"black", "white", "slate", "sand", "forest green", "navy", "terracotta", "silver"}
	sizesList = []string{"XS", "S", "M", "L", "XL", "one size", "30cm", "45cm", "1.2l", "2l"}
	first     = []string{"Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena", "Mateo", "Nia", "Oskar", "Priya"}
	last      = []string{"Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Rossi", "Haddad", "Kowalski", "Silva", "Brennan", "Yilmaz", "Petrov"}
	cities    = []string{"Lyon", "Porto", "Gdansk", "Osaka", "Accra", "Tallinn", "Leeds", "Bilbao", "Graz", "Turku"}
	countries = []string{"FR", "PT", "PL", "JP", "GH", "EE", "GB", "ES", "AT", "FI"}
	words     = []string{"the", "a", "with", "for", "and", "of", "every", "day", "built", "to", "last",
		"light", "strong", "simple", "setup", "fits", "most", "rooms", "travel", "easy", "clean",
		"warranty", "years", "designed", "in", "small", "batches", "from", "steel", "oak", "cotton",
		"great", "value", "quiet", "motor", "battery", "hours", "charge", "fast", "ships", "within",
		"days", "notes", "release", "caching", "redis", "latency", "deploy", "review", "weekend",
		"garden", "recipe", "trip", "city", "morning", "coffee", "update", "thoughts", "guide"}
	postTags = []string{"go", "redis", "travel", "food", "photography", "running", "books", "music",
		"devops", "design", "gardening", "cycling", "coffee", "history"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func sentence(r *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = pick(r, words)
	}
	s := strings.Join(ws, " ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

func title(s string) string {
	parts := strings.Fields(s)
	for i, p := range parts {
		parts[i] = strings.ToUpper(p[:1]) + p[1:]
	}
	return strings.Join(parts, " ")
}

func timestamp(r *rand.Rand) string {
	t := time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(3 * 365 * 24 * time.Hour))))
	return t.Format(time.RFC3339)
}

// itemJSON is the document of product id: about target bytes, never much
// more. Small targets get the core fields only; larger ones a description,
// the seller, dimensions and as many variants as fit.
func itemJSON(id, target int) []byte {
	r := rand.New(rand.NewPCG(uint64(id), 0x17e4))
	name := pick(r, adjectives) + " " + pick(r, nouns)
	core := []string{
		fmt.Sprintf(`"id":%d`, id),
		fmt.Sprintf(`"sku":"%c%c-%04d-%02d"`, 'A'+r.IntN(26), 'A'+r.IntN(26), r.IntN(10000), r.IntN(100)),
		fmt.Sprintf(`"name":%q`, title(name)),
		fmt.Sprintf(`"price":{"amount":%d,"currency":"EUR"}`, 199+r.IntN(40000)),
		fmt.Sprintf(`"stock":%d`, r.IntN(500)),
		fmt.Sprintf(`"rating":%.1f`, 2.5+r.Float64()*2.5),
		fmt.Sprintf(`"brand":%q`, pick(r, brands)),
		fmt.Sprintf(`"category":%q`, pick(r, categories)),
		fmt.Sprintf(`"reviews":%d`, r.IntN(3000)),
		fmt.Sprintf(`"active":%t`, r.IntN(10) > 0),
		fmt.Sprintf(`"updated_at":%q`, timestamp(r)),
	}
	extra := []string{
		fmt.Sprintf(`"description":%q`, sentence(r, 18+r.IntN(12))),
		fmt.Sprintf(`"seller":{"id":%d,"name":"%s %s","city":%q,"country":%q,"since":%q}`,
			10000+r.IntN(90000), pick(r, first), pick(r, last), pick(r, cities), pick(r, countries), timestamp(r)),
		fmt.Sprintf(`"dimensions":{"width_mm":%d,"height_mm":%d,"depth_mm":%d,"weight_g":%d}`,
			50+r.IntN(900), 50+r.IntN(900), 20+r.IntN(600), 100+r.IntN(20000)),
		fmt.Sprintf(`"tags":[%q,%q,%q]`, pick(r, adjectives), pick(r, nouns), pick(r, colors)),
		fmt.Sprintf(`"images":["https://cdn.example.com/p/%d/%x.jpg","https://cdn.example.com/p/%d/%x.jpg"]`,
			id, r.Uint32(), id, r.Uint32()),
	}
	return appendFields(target, core, extra, func(i int) string {
		return fmt.Sprintf(`{"sku":"%s-%d","color":%q,"size":%q,"price":{"amount":%d,"currency":"EUR"},"stock":%d,"ean":"%013d"}`,
			strings.SplitN(core[1], `"`, 5)[3], i, pick(r, colors), pick(r, sizesList), 199+r.IntN(40000), r.IntN(200), r.Int64N(1e13))
	}, "variants")
}

// postsJSON is page of user's posts: about target bytes.
func postsJSON(user, page, target int) []byte {
	r := rand.New(rand.NewPCG(uint64(user), uint64(page)))
	core := []string{
		fmt.Sprintf(`"user_id":%d`, user),
		fmt.Sprintf(`"page":%d`, page),
		fmt.Sprintf(`"total":%d`, 10*10+r.IntN(400)),
	}
	post := func(int) string {
		id := r.IntN(9_000_000) + 1_000_000
		t := title(sentence(r, 3+r.IntN(4)))
		t = t[:len(t)-1]
		if target < 600 {
			return fmt.Sprintf(`{"id":%d,"title":%q,"author":"%s %s","likes":%d,"comments":%d,"published_at":%q}`,
				id, t, pick(r, first), pick(r, last), r.IntN(900), r.IntN(120), timestamp(r))
		}
		return fmt.Sprintf(`{"id":%d,"title":%q,"slug":%q,"excerpt":%q,"author":"%s %s","tags":[%q,%q],"likes":%d,"comments":%d,"published_at":%q}`,
			id, t, strings.ToLower(strings.ReplaceAll(t, " ", "-")), sentence(r, 12+r.IntN(10)),
			pick(r, first), pick(r, last), pick(r, postTags), pick(r, postTags), r.IntN(900), r.IntN(120), timestamp(r))
	}
	return appendFields(target, core, nil, post, "posts")
}

// appendFields builds a JSON object of the core fields, then the extra
// ones, then an array named list of as many elements as fit, stopping as
// soon as the document would pass target (it always has the first core
// field, and at least one list element when it has a list at all).
func appendFields(target int, core, extra []string, elem func(i int) string, list string) []byte {
	b := []byte{'{'}
	add := func(f string) bool {
		if len(b) > 1 && len(b)+1+len(f)+1 > target {
			return false
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, f...)
		return true
	}
	full := false
	for _, f := range append(slices.Clip(core), extra...) {
		if !add(f) {
			full = true
			break
		}
	}
	if !full && elem != nil {
		arr := []byte(`"` + list + `":[`)
		for i := 0; ; i++ {
			e := elem(i)
			if i > 0 && len(b)+1+len(arr)+1+len(e)+2 > target {
				break
			}
			if i > 0 {
				arr = append(arr, ',')
			}
			arr = append(arr, e...)
		}
		b = append(b, ',')
		b = append(append(b, arr...), ']')
	}
	return append(b, '}')
}

// jsonOriginFor is an origin that answers every request with the body
// body(r) returns, as JSON with validators, after delay.
func jsonOriginFor(delay time.Duration, body func(r *http.Request) []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		p := body(r)
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Etag", etagOf(p))
		h.Set("Last-Modified", lastModified(p))
		w.Write(p)
	}
}

func etagOf(p []byte) string {
	h := fnv.New64a()
	h.Write(p)
	return `"` + strconv.FormatUint(h.Sum64(), 16) + `"`
}

func lastModified(p []byte) string {
	h := fnv.New32a()
	h.Write(p)
	return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h.Sum32()%(300*24*3600)) * time.Second).Format(http.TimeFormat)
}

// trainDictionary calls fill with 0, 1, 2, ... (each a miss of a new
// response of a dictionary-compressed route of cache) until the cache has
// trained the route's dictionary.
func trainDictionary(b *testing.B, cache *httpcache.Cache, fill func(i int)) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; cache.Stats().DictionariesTrained == 0; i++ {
		if time.Now().After(deadline) {
			b.Fatalf("no dictionary trained after %d fills", i)
		}
		fill(i)
		if i > 100 {
			time.Sleep(time.Millisecond) // training runs in the background
		}
	}
}

// dropBuckets removes every bucket under prefix p, keeping the rest (the
// dictionaries).
func dropBuckets(b *testing.B, rc redis.UniversalClient, p string) {
	b.Helper()
	keys := scanKeys(b, rc, p+":b:*")
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := rc.Unlink(context.Background(), keys[:n]...).Err(); err != nil {
			b.Fatal(err)
		}
		keys = keys[n:]
	}
}
