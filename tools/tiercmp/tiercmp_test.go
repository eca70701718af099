// Package tiercmp measures the two in-process cache libraries the local
// tier (httpcache.WithLocalTier) was chosen between, on the tier's use:
// comparable struct keys (bucket, field), values weighed in bytes, a
// byte bound, a Zipf-distributed read load with a set on each miss, and
// reads of hot keys. It is a module of its own so that the library not
// chosen never enters readthrough's go.mod. Run it with
//
//	cd tools/tiercmp && go test -bench . -benchtime 3s
//
// Results on the 2-core machine, 2026-12-06 (two runs each):
//
//	Zipf(1.01) over 100,000 keys, 8 MiB:  otter 584-683 ns/op, hit ratio 0.70, 0 allocs
//	                                      ristretto 603-719 ns/op, hit ratio 0.69, 2-3 allocs
//	hot-key reads:                        otter 46-93 ns/op, 0 allocs
//	                                      ristretto 158-164 ns/op, 1 alloc (its key is a string)
//
// Besides speed, ristretto's Set is asynchronous and may apply after a
// later Delete, bringing back a copy the tier dropped; otter's is not.
package tiercmp

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

type key struct{ bucket, field string }
type val struct{ size int }

const (
	keys     = 100_000
	maxBytes = 8 << 20 // room for ~1/6 of the keys at ~2 KB + overhead
)

func sizeOf(i int) int { return 200 + (i*7919)%4000 }

func zipf(seed uint64) func() int {
	r := rand.New(rand.NewPCG(seed, 1))
	z := rand.NewZipf(r, 1.01, 1, keys-1)
	return func() int { return int(z.Uint64()) }
}

var names = func() []key {
	k := make([]key, keys)
	for i := range k {
		k[i] = key{"rt|items|" + strconv.Itoa(i), "0123456789abcdef"}
	}
	return k
}()

type tier interface {
	get(k key) bool
	set(k key, v *val)
}

type ot struct{ c *otter.Cache[key, *val] }

func (o ot) get(k key) bool    { _, ok := o.c.GetIfPresent(k); return ok }
func (o ot) set(k key, v *val) { o.c.Set(k, v) }

type rs struct {
	c *ristretto.Cache[string, *val]
}

func (r rs) get(k key) bool    { _, ok := r.c.Get(k.bucket + "\x00" + k.field); return ok }
func (r rs) set(k key, v *val) { r.c.Set(k.bucket+"\x00"+k.field, v, int64(v.size+320)) }

func newOtter() tier {
	return ot{otter.Must(&otter.Options[key, *val]{MaximumWeight: maxBytes, Weigher: func(k key, v *val) uint32 { return uint32(v.size + 320) }})}
}
func newRistretto() tier {
	c, err := ristretto.NewCache(&ristretto.Config[string, *val]{NumCounters: keys * 10, MaxCost: maxBytes, BufferItems: 64})
	if err != nil {
		panic(err)
	}
	return rs{c}
}

func run(b *testing.B, mk func() tier) {
	t := mk()
	next := zipf(42)
	// warm
	for range 200_000 {
		i := next()
		if !t.get(names[i]) {
			t.set(names[i], &val{sizeOf(i)})
		}
	}
	var hits, total atomic.Int64
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := zipf(seed.Add(1))
		var h, tt int64
		for pb.Next() {
			i := n()
			tt++
			if t.get(names[i]) {
				h++
			} else {
				t.set(names[i], &val{sizeOf(i)})
			}
		}
		hits.Add(h)
		total.Add(tt)
	})
	b.ReportMetric(float64(hits.Load())/float64(total.Load()), "hit-ratio")
}

func BenchmarkOtter(b *testing.B)     { run(b, newOtter) }
func BenchmarkRistretto(b *testing.B) { run(b, newRistretto) }

func hot(b *testing.B, mk func() tier) {
	t := mk()
	for i := range 1000 {
		t.set(names[i], &val{sizeOf(i)})
	}
	for range 3 {
		for i := range 1000 {
			t.get(names[i])
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var miss atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !t.get(names[i%1000]) {
				miss.Add(1)
			}
			i++
		}
	})
	b.ReportMetric(float64(miss.Load())/float64(b.N), "miss-ratio")
}

func BenchmarkOtterHotGet(b *testing.B)     { hot(b, newOtter) }
func BenchmarkRistrettoHotGet(b *testing.B) { hot(b, newRistretto) }
