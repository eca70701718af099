package codec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
)

// Dictionary compression ([policy.CompressDictionary]).
//
// A route's dictionary is trained from the bodies of its first fills and
// published through the store, which shares it between the instances of
// a service: the first dictionary published for a route becomes its
// current one, and every instance compresses new entries with the current
// one. An entry names its dictionary (the id in its zstd frame header), so
// an instance that meets an id it does not know loads the route's
// dictionaries from the store, at most once a second, and decodes; an
// entry whose dictionary cannot be found is a miss, which the fill
// replaces. Every ten seconds, on a fill, each instance checks that the
// store still names a current dictionary and republishes its own when it
// does not (after a FLUSHALL or an eviction); when the store names
// another, it adopts that one, after adding its own back so that the
// entries it wrote stay readable everywhere.

const (
	// dictHistoryBytes is how much of the route's bodies a dictionary is
	// trained from, and the size of its raw content: 32 KiB took 2 KB
	// JSON answers from 804 bytes (gzip) to 482, where 16 KiB gave 500
	// and 64 KiB 468.
	dictHistoryBytes = 32 << 10
	// dictSampleBytes is how much of the route's bodies is kept to train
	// a dictionary from: the newest dictHistoryBytes become its raw
	// content, and the older ones its statistics (zstd finds nothing to
	// count in bodies that are all in the content).
	dictSampleBytes = 2 * dictHistoryBytes
	// dictMinSamples is the fewest bodies a dictionary is trained from.
	dictMinSamples = 16
	// dictMaxSample is the largest body kept as a training sample: the
	// gain of a dictionary is in small bodies, and one large body would
	// fill the history alone.
	dictMaxSample = 16 << 10
	// defaultDictCheckInterval is how often an instance checks the
	// store's current dictionary of a route.
	defaultDictCheckInterval = 10 * time.Second
	// defaultStoreTimeout bounds a dictionary load in the course of a
	// request when no WithStoreTimeout is given.
	defaultStoreTimeout = 100 * time.Millisecond
	// defaultMaxBody bounds a decoded body when no WithMaxBody is given.
	defaultMaxBody = 1 << 20
	// dictRetryInterval is how long a failed load, training or check
	// waits before the next try, and how often an unknown dictionary id
	// may make an instance reload a route's dictionaries.
	dictRetryInterval = time.Second
	// dictTimeout bounds one background dictionary task: dictionaries are
	// tens of kilobytes, larger than the entries the store timeout is set
	// for. Loads in the course of a request (see loadShared) keep to the
	// store timeout, as every store call a request waits for does; when
	// one runs out, the background load that the same fill starts reads
	// the dictionaries within this bound.
	dictTimeout = 2 * time.Second
	// dictMaxKnown bounds the dictionaries of one route an instance keeps.
	dictMaxKnown = 16
	// dictLevel is the zstd level of dictionary compression. On 2 KB JSON
	// answers it is the smallest of the levels tried (447 and 535 bytes on
	// the benchmark's two kinds of answer, where the fastest level gave
	// 455 and 582, the default 475 and 604); fills pay it once per entry,
	// and hits decode at the same speed whatever the level.
	dictLevel = zstd.SpeedBetterCompression
	// dictWindow is the zstd window of dictionary compression. Bodies of
	// a dictionary route are mostly far smaller, and the window sizes the
	// encoder: about 9 MB at 256 KiB, 17 MB at the level's default.
	dictWindow = 256 << 10
	// dictIDBase is the smallest id of a trained dictionary: zstd reserves
	// ids below 32768 (and from 2^31) for registered dictionaries.
	dictIDBase = 1 << 15
)

// dictEncoder compresses with one dictionary; EncodeAll is safe for
// concurrent use.
type dictEncoder struct {
	id  uint32
	enc *zstd.Encoder
}

// builtDict is a trained dictionary and its id.
type builtDict struct {
	id  uint32
	raw []byte
}

// dictDecoder decodes with any of a route's known dictionaries; it is
// replaced, never changed, when one is added.
type dictDecoder struct {
	dec *zstd.Decoder
	raw map[uint32][]byte
}

// Dictionary is the codec of routes whose policy sets Compression to
// "dictionary": zstd with a dictionary trained from the route's own
// responses and shared by every instance through a
// [storage.DictionaryStore]. Create it with [NewDictionary]; it runs
// background work (training, publishing, checking the store's current
// dictionary), which [Dictionary.Close] stops.
type Dictionary struct {
	store   storage.DictionaryStore
	name    string // the route's name in the store: its bucket prefix
	route   string // for logs
	maxBody int64
	decoded *DecodedCache
	ev      Events
	log     *slog.Logger

	checkInterval, storeTimeout time.Duration

	cur    atomic.Pointer[dictEncoder] // nil until a dictionary is adopted
	known  atomic.Pointer[dictDecoder] // nil until one is loaded
	loaded atomic.Bool                 // the store's dictionaries were read once

	// nextCheck is when the current dictionary is checked next, in Unix
	// nanoseconds: read without d.mu on hits (see used), set with it.
	nextCheck atomic.Int64
	// usedGate is when a hit may next try to start the check (see used).
	usedGate atomic.Int64

	mu          sync.Mutex
	busy        bool      // a background task runs
	hold        time.Time // no background task before, after a failure
	samples     [][]byte  // bodies to train from, until a dictionary is adopted
	sampleBytes int
	// built is a dictionary trained but not yet published (the store
	// refused it): publishing is retried with it rather than trained again.
	built *builtDict
	// builds counts trainings that built a dictionary.
	builds atomic.Int64

	reloadMu   sync.Mutex
	loading    chan struct{} // closed when the shared load in flight ends; guarded by reloadMu
	lastReload time.Time     // guarded by reloadMu

	bgMu   sync.Mutex
	closed bool           // no background work starts once set
	bg     sync.WaitGroup // background work Close waits for
}

// Events are the hooks through which a codec reports what it did, for
// the cache to count and log; a nil func is skipped. They are called
// outside the codec's locks.
type Events struct {
	// Trained is called once this process has trained a dictionary and
	// published it.
	Trained func()
	// Loaded is called with the number of dictionaries installed in this
	// process, trained here or read from the store.
	Loaded func(n int)
	// Error is called with every error the codec absorbed (a store
	// error, a dictionary that does not parse, a panic in background
	// work); op names what failed.
	Error func(ctx context.Context, op string, err error)
}

// Option configures a [Dictionary] in [NewDictionary]. Zero means the
// default; a negative value is an error.
type Option interface{ apply(*Dictionary) }

type optionFunc func(*Dictionary)

func (f optionFunc) apply(d *Dictionary) { f(d) }

// WithMaxBody bounds the bodies the codec decodes: a body that would
// decode past it does not decode. Use the route's MaxBodyBytes, which no
// stored body passes. Default 1 MiB.
func WithMaxBody(n int64) Option { return optionFunc(func(d *Dictionary) { d.maxBody = n }) }

// WithDecodedCache shares a cache of decoded bodies with the codec, so
// that a hot entry is decoded once. Default none.
func WithDecodedCache(c *DecodedCache) Option {
	return optionFunc(func(d *Dictionary) { d.decoded = c })
}

// WithEvents sets the hooks the codec reports to. Default none.
func WithEvents(ev Events) Option { return optionFunc(func(d *Dictionary) { d.ev = ev }) }

// WithLogger sets the logger of the codec's notices (a dictionary
// trained, republished). Default [slog.Default].
func WithLogger(l *slog.Logger) Option { return optionFunc(func(d *Dictionary) { d.log = l }) }

// WithCheckInterval sets how often the codec checks the store's current
// dictionary of the route (republishing its own after a FLUSHALL,
// adopting another instance's). Default 10s.
func WithCheckInterval(t time.Duration) Option {
	return optionFunc(func(d *Dictionary) { d.checkInterval = t })
}

// WithStoreTimeout bounds the dictionary loads a request waits for.
// Default 100ms.
func WithStoreTimeout(t time.Duration) Option {
	return optionFunc(func(d *Dictionary) { d.storeTimeout = t })
}

// WithRouteName names the route in the codec's logs. Default the name
// the route has in the store.
func WithRouteName(route string) Option { return optionFunc(func(d *Dictionary) { d.route = route }) }

// NewDictionary returns the dictionary codec of the route named name in
// store (its bucket prefix: every instance must use the same name).
func NewDictionary(store storage.DictionaryStore, name string, opts ...Option) (*Dictionary, error) {
	if store == nil {
		return nil, errors.New("codec: nil dictionary store")
	}
	if err := storage.CheckDictionary(name, 1, []byte{0}); err != nil {
		return nil, fmt.Errorf("codec: route name: %w", err)
	}
	d := &Dictionary{store: store, name: name, route: name}
	for _, o := range opts {
		o.apply(d)
	}
	switch {
	case d.maxBody < 0:
		return nil, fmt.Errorf("codec: WithMaxBody: negative bound %d", d.maxBody)
	case d.checkInterval < 0:
		return nil, fmt.Errorf("codec: WithCheckInterval: negative interval %v", d.checkInterval)
	case d.storeTimeout < 0:
		return nil, fmt.Errorf("codec: WithStoreTimeout: negative timeout %v", d.storeTimeout)
	}
	if d.maxBody == 0 {
		d.maxBody = defaultMaxBody
	}
	if d.checkInterval == 0 {
		d.checkInterval = defaultDictCheckInterval
	}
	if d.storeTimeout == 0 {
		d.storeTimeout = defaultStoreTimeout
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	return d, nil
}

// Current returns the id of the dictionary new entries are compressed
// with, 0 while there is none (bodies are then gzipped).
func (d *Dictionary) Current() uint32 {
	if enc := d.cur.Load(); enc != nil {
		return enc.id
	}
	return 0
}

// Close stops the codec's background work from starting and waits for
// the work in flight until ctx ends. It is idempotent; the codec keeps
// the dictionary it has.
func (d *Dictionary) Close(ctx context.Context) error {
	d.bgMu.Lock()
	d.closed = true
	d.bgMu.Unlock()
	done := make(chan struct{})
	go func() {
		d.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// background runs f in a goroutine that Close waits for, and reports
// whether it did: once the codec is closed it does not. A panic in f,
// which runs a compression library on bytes read from the store, is
// recovered and reported: the service must outlive a fault in it.
func (d *Dictionary) background(f func()) bool {
	d.bgMu.Lock()
	defer d.bgMu.Unlock()
	if d.closed {
		return false
	}
	d.bg.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				d.log.Error("readthrough: dictionary task panicked", "route", d.route, "panic", v, "stack", string(debug.Stack()))
				d.reportError(context.Background(), "dictionary task", fmt.Errorf("codec: dictionary task panicked: %v", v))
			}
		}()
		f()
	})
	return true
}

func (d *Dictionary) reportError(ctx context.Context, op string, err error) {
	if d.ev.Error != nil {
		d.ev.Error(ctx, op, err)
	}
}

// Encode serves the fill's waiters e as it is, since no client could take
// a body compressed with the dictionary, and returns a copy compressed
// with the dictionary to store (gzipped while the route has none yet, and
// kept to train one from).
func (d *Dictionary) Encode(ctx context.Context, e *storage.Entry) (served, stored *storage.Entry) {
	c := *e
	d.compress(ctx, &c)
	return e, &c
}

// Open decodes an entry compressed with one of the route's dictionaries
// to identity; entries in an HTTP content coding are served as they are.
// An entry whose dictionary cannot be loaded is [ErrUnknownDictionary];
// one that does not decode, [ErrCorrupt].
func (d *Dictionary) Open(ctx context.Context, e *storage.Entry) error {
	if e.Coding != envelope.DictionaryCoding {
		return openPlain(e)
	}
	if err := d.decode(ctx, e); err != nil {
		return err
	}
	d.used(time.Now())
	return nil
}

// compress compresses e's body with the route's dictionary, or gzips it
// while the route has none yet and keeps it to train one from. Like
// [Compress] it keeps the result only when it saves an eighth.
func (d *Dictionary) compress(ctx context.Context, e *storage.Entry) {
	if !Compressible(e) || len(e.Body) == 0 {
		return
	}
	if !d.loaded.Load() {
		// Before the first fill of the instance compresses, so that it
		// writes with the route's current dictionary from the start.
		d.loadShared(ctx)
	}
	enc := d.cur.Load()
	if enc == nil {
		d.sample(e.Body)
	}
	d.tick(time.Now())
	if enc == nil {
		Compress(e)
		return
	}
	out := enc.enc.EncodeAll(e.Body, make([]byte, 0, len(e.Body)/2+64))
	if len(out) > len(e.Body)-len(e.Body)/8 {
		return
	}
	e.Body, e.Coding, e.CacheEncoded = out, envelope.DictionaryCoding, true
}

// sample keeps a copy of body for training, until enough are kept.
func (d *Dictionary) sample(body []byte) {
	if len(body) > dictMaxSample {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.enoughSamples() {
		return
	}
	d.samples = append(d.samples, append([]byte(nil), body...))
	d.sampleBytes += len(body)
}

// enoughSamples reports whether a dictionary can be trained. d.mu is held.
func (d *Dictionary) enoughSamples() bool {
	return d.sampleBytes >= dictSampleBytes && len(d.samples) >= dictMinSamples
}

// tick starts the background task that is due, if none runs: the first
// load of the store's dictionaries, the training of one as soon as enough
// samples are kept, or the periodic check of the current one.
func (d *Dictionary) tick(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy || now.Before(d.hold) {
		return
	}
	var task func(context.Context)
	switch {
	case !d.loaded.Load():
		task = func(ctx context.Context) { d.load(ctx) }
	case d.cur.Load() == nil && (d.built != nil || d.enoughSamples()):
		samples, built := d.samples, d.built
		task = func(ctx context.Context) { d.train(ctx, samples, built) }
	case now.UnixNano() >= d.nextCheck.Load():
		task = d.check
		d.nextCheck.Store(now.Add(d.checkInterval).UnixNano())
	default:
		return
	}
	d.busy = d.background(func() {
		done := false
		defer func() { // also after a panic, which background recovers
			d.mu.Lock()
			d.busy = false
			if !done {
				// The task panicked: back off as after a failure, and
				// start training over rather than retry the same input.
				d.hold = time.Now().Add(dictRetryInterval)
				d.samples, d.sampleBytes, d.built = nil, 0, nil
			}
			d.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), dictTimeout)
		defer cancel()
		task(ctx)
		done = true
	})
}

// used is called on every hit decoded with one of the route's
// dictionaries. It lets the periodic check run on a route that is only
// read, not filled, which keeps the store's copy of the dictionaries alive
// (the Redis store renews their expiry on every dictionary call) while
// the route is served at all. It costs an atomic load until a check is
// due; then one hit a second (or per check interval, if shorter) at most
// goes on to tick (which takes d.mu), however long the check is held back
// by a running task or a failure.
func (d *Dictionary) used(now time.Time) {
	n := now.UnixNano()
	if n < d.nextCheck.Load() {
		return
	}
	gate := d.usedGate.Load()
	pause := min(dictRetryInterval, d.checkInterval)
	if n < gate || !d.usedGate.CompareAndSwap(gate, n+int64(pause)) {
		return
	}
	d.tick(now)
}

// retrySoon holds the next background task back for dictRetryInterval,
// after a failure.
func (d *Dictionary) retrySoon() {
	d.mu.Lock()
	d.hold = time.Now().Add(dictRetryInterval)
	d.mu.Unlock()
}

// load reads the route's dictionaries, adopts the store's current one
// when this instance has none, and reports whether it read them.
func (d *Dictionary) load(ctx context.Context) bool {
	cur, dicts, err := d.store.Dictionaries(ctx, d.name)
	if err != nil {
		if !errors.Is(err, context.Canceled) { // not a client gone away
			d.reportError(ctx, "load dictionaries", err)
		}
		d.retrySoon()
		return false
	}
	d.install(ctx, dicts)
	if cur != 0 && d.cur.Load() == nil {
		d.adopt(ctx, cur)
	}
	if !d.loaded.Swap(true) {
		d.mu.Lock()
		d.nextCheck.Store(time.Now().Add(d.checkInterval).UnixNano())
		d.mu.Unlock()
	}
	return true
}

// loadShared is load in the course of a request: concurrent callers share
// one read, which runs at most once per dictRetryInterval within the store
// timeout; a caller waits for it no longer than its own context allows.
func (d *Dictionary) loadShared(ctx context.Context) {
	d.reloadMu.Lock()
	if call := d.loading; call != nil {
		d.reloadMu.Unlock()
		select {
		case <-call:
		case <-ctx.Done():
		}
		return
	}
	if time.Since(d.lastReload) < dictRetryInterval {
		d.reloadMu.Unlock()
		return
	}
	call := make(chan struct{})
	d.loading, d.lastReload = call, time.Now()
	d.reloadMu.Unlock()
	defer func() {
		d.reloadMu.Lock()
		d.loading = nil
		d.reloadMu.Unlock()
		close(call)
	}()
	// The read serves every waiter: the leader's client going away does
	// not end it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.storeTimeout)
	defer cancel()
	d.load(sctx)
}

// train builds a dictionary from samples (or takes built, one trained
// before whose publication failed), publishes it, and adopts the route's
// current dictionary: its own, or the one another instance published
// first.
func (d *Dictionary) train(ctx context.Context, samples [][]byte, built *builtDict) {
	if built == nil {
		hist, rest := splitSamples(samples)
		id := dictionaryID(samples)
		raw, err := zstd.BuildDict(zstd.BuildDictOptions{
			ID:       id,
			Contents: rest,
			History:  hist,
			Offsets:  [3]int{1, 4, 8},
			Level:    dictLevel,
		})
		if err != nil {
			// Samples zstd cannot build a dictionary from (too uniform,
			// say): start over with new ones rather than retry the same.
			// Not a store error: only logged.
			d.log.LogAttrs(ctx, slog.LevelWarn, "readthrough: train dictionary",
				slog.String("route", d.route), slog.Any("err", err))
			d.dropSamples()
			d.retrySoon()
			return
		}
		built = &builtDict{id: id, raw: raw}
		d.builds.Add(1)
	}
	id, raw := built.id, built.raw
	cur, err := d.store.AddDictionary(ctx, d.name, id, raw)
	if err != nil {
		// Kept, so that the retry publishes without training again (the
		// store refusing writes for a while must not cost a training a
		// second).
		d.mu.Lock()
		d.built = built
		d.mu.Unlock()
		d.reportError(ctx, "publish dictionary", err)
		d.retrySoon()
		return
	}
	d.install(ctx, map[uint32][]byte{id: raw})
	d.adopt(ctx, cur)
	if d.cur.Load() == nil {
		// The store's current dictionary is unusable here (it does not
		// parse, say): use this one rather than train again and again.
		d.adopt(ctx, id)
	}
	d.dropSamples()
	if d.ev.Trained != nil {
		d.ev.Trained() // after the adoption: a count seen means in use
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "readthrough: dictionary trained",
		slog.String("route", d.route), slog.Uint64("id", uint64(id)),
		slog.Int("samples", len(samples)), slog.Int("bytes", len(raw)),
		slog.Bool("current", cur == id))
}

// dictionaryID derives a dictionary's id from everything it is trained
// from: instances that train on the same samples build the same
// dictionary under the same id, and different samples give different ids
// (a collision takes about 2^15 dictionaries of one route).
func dictionaryID(samples [][]byte) uint32 {
	h := sha256.New()
	var n [8]byte
	for _, s := range samples {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	sum := h.Sum(nil)
	return dictIDBase + binary.BigEndian.Uint32(sum[:4])%(1<<31-dictIDBase)
}

// splitSamples splits training samples into the raw content of a
// dictionary, the newest samples up to dictHistoryBytes, oldest first (zstd
// reaches the end of a dictionary with the shortest offsets), and the
// older samples, which the dictionary's entropy tables are counted from.
func splitSamples(samples [][]byte) (hist []byte, rest [][]byte) {
	n, first := 0, len(samples)
	for first > 1 && n+len(samples[first-1]) <= dictHistoryBytes {
		first--
		n += len(samples[first])
	}
	hist = make([]byte, 0, n)
	for _, s := range samples[first:] {
		hist = append(hist, s...)
	}
	return hist, samples[:first]
}

// dropSamples forgets the training samples and any dictionary built from
// them but not published.
func (d *Dictionary) dropSamples() {
	d.mu.Lock()
	d.samples, d.sampleBytes, d.built = nil, 0, nil
	d.mu.Unlock()
}

// check compares the store's current dictionary with this instance's: it
// republishes its own when the store has none (flushed or evicted), so
// that other instances can still read what this one writes, and adopts
// the store's when they differ.
func (d *Dictionary) check(ctx context.Context) {
	cur, err := d.store.CurrentDictionary(ctx, d.name)
	if err != nil {
		d.reportError(ctx, "check dictionary", err)
		d.retrySoon()
		return
	}
	own := d.cur.Load()
	switch {
	case cur != 0 && own == nil:
		d.adopt(ctx, cur)
	case cur != 0 && own.id != cur:
		// Another instance's dictionary is current (this one's was lost
		// and another trained meanwhile): keep this one's in the store,
		// for the entries written with it, and move to the current one.
		d.republish(ctx, own)
		d.adopt(ctx, cur)
	case cur == 0 && own != nil:
		if cur, ok := d.republish(ctx, own); ok && cur != own.id {
			d.adopt(ctx, cur)
		}
	}
}

// republish stores this instance's dictionary again, and returns the
// route's current one then.
func (d *Dictionary) republish(ctx context.Context, own *dictEncoder) (uint32, bool) {
	cur, err := d.store.AddDictionary(ctx, d.name, own.id, d.known.Load().raw[own.id])
	if err != nil {
		d.reportError(ctx, "republish dictionary", err)
		d.retrySoon()
		return 0, false
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "readthrough: dictionary republished",
		slog.String("route", d.route), slog.Uint64("id", uint64(own.id)))
	return cur, true
}

// adopt makes dictionary id the one new entries are compressed with,
// loading it from the store when it is not known yet.
func (d *Dictionary) adopt(ctx context.Context, id uint32) {
	if own := d.cur.Load(); own != nil && own.id == id {
		return
	}
	if kd := d.known.Load(); kd == nil || kd.raw[id] == nil {
		_, dicts, err := d.store.Dictionaries(ctx, d.name)
		if err != nil {
			d.reportError(ctx, "load dictionaries", err)
			d.retrySoon()
			return
		}
		d.install(ctx, dicts)
	}
	kd := d.known.Load()
	if kd == nil || kd.raw[id] == nil {
		d.retrySoon() // named current but gone meanwhile: check again soon
		return
	}
	// One encoder per route: fills are not where the time goes, and each
	// concurrent encoder would hold its memory for the life of the process.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDict(kd.raw[id]), zstd.WithEncoderLevel(dictLevel),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(dictWindow))
	if err != nil {
		d.reportError(ctx, "dictionary encoder", err)
		return
	}
	d.cur.Store(&dictEncoder{id: id, enc: enc})
	d.dropSamples()
}

// install adds dicts to the known dictionaries. A dictionary that does not
// parse, or whose own id is not the one it is stored under, is reported
// and left out.
func (d *Dictionary) install(ctx context.Context, dicts map[uint32][]byte) {
	// Reported once d.mu is released: the user's error callback must not
	// hold up fills.
	var errs []error
	loaded := 0
	defer func() {
		for _, err := range errs {
			d.reportError(ctx, "load dictionaries", err)
		}
		if loaded > 0 && d.ev.Loaded != nil {
			d.ev.Loaded(loaded)
		}
	}()
	d.mu.Lock() // installs are rare; one at a time keeps none lost
	defer d.mu.Unlock()
	old := d.known.Load()
	raw := make(map[uint32][]byte, len(dicts))
	if old != nil {
		for id, b := range old.raw {
			raw[id] = b
		}
	}
	added := 0
	for id, b := range dicts {
		if known, ok := raw[id]; ok {
			if !bytes.Equal(known, b) {
				errs = append(errs, fmt.Errorf("%w: dictionary %d changed in the store; keeping the one in use", ErrCorrupt, id))
			}
			continue
		}
		// Checked before anything is evicted for it.
		info, err := zstd.InspectDictionary(b)
		if err != nil || info.ID() != id {
			errs = append(errs, fmt.Errorf("%w: dictionary %d does not parse as dictionary %d: %v", ErrCorrupt, id, id, err))
			continue
		}
		if len(raw) >= dictMaxKnown {
			// Make room: any but the one new entries are written with.
			cur := d.cur.Load()
			for old := range raw {
				if cur == nil || old != cur.id {
					delete(raw, old)
					break
				}
			}
		}
		raw[id] = b
		added++
	}
	if added == 0 {
		return
	}
	all := make([][]byte, 0, len(raw))
	for _, b := range raw {
		all = append(all, b)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderDicts(all...),
		zstd.WithDecoderConcurrency(4*runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(uint64(d.maxBody)))
	if err != nil {
		errs = append(errs, fmt.Errorf("codec: dictionary decoder: %w", err))
		return
	}
	d.known.Store(&dictDecoder{dec: dec, raw: raw})
	loaded = added
}

// decode replaces e's dictionary-compressed body with the body itself. An
// entry whose dictionary is unknown even after a reload returns
// ErrUnknownDictionary; one that does not decode, an error matching
// [ErrCorrupt].
func (d *Dictionary) decode(ctx context.Context, e *storage.Entry) error {
	// A hot entry: these exact stored bytes decoded before. Looked up
	// first, so that its hits do no other work.
	if body := d.decoded.Get(e.Body); body != nil {
		e.Body, e.Coding, e.CacheEncoded = body, "", false
		return nil
	}
	var h zstd.Header
	if err := h.Decode(e.Body); err != nil || h.DictionaryID == 0 {
		return fmt.Errorf("%w: dictionary-compressed body without a dictionary id (%v)", ErrCorrupt, err)
	}
	kd := d.known.Load()
	if kd == nil || kd.raw[h.DictionaryID] == nil {
		d.loadShared(ctx)
		// Checked on the snapshot it decodes with: a later install may
		// have evicted the dictionary from the newest one.
		if kd = d.known.Load(); kd == nil || kd.raw[h.DictionaryID] == nil {
			return ErrUnknownDictionary
		}
	}
	size := uint64(2 * len(e.Body))
	if h.HasFCS {
		if h.FrameContentSize > uint64(d.maxBody) {
			return fmt.Errorf("%w: dictionary-compressed body of %d bytes, over the route's limit", ErrCorrupt, h.FrameContentSize)
		}
		size = h.FrameContentSize
	}
	body, err := kd.dec.DecodeAll(e.Body, make([]byte, 0, size))
	if errors.Is(err, zstd.ErrUnknownDictionary) {
		return ErrUnknownDictionary // not the entry's fault: never deleted for it
	}
	if err != nil {
		return fmt.Errorf("%w: dictionary-compressed body: %w", ErrCorrupt, err)
	}
	d.decoded.Put(e.Body, body)
	e.Body, e.Coding, e.CacheEncoded = body, "", false
	return nil
}
