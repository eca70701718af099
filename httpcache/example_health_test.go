package httpcache_test

import (
	"context"
	"fmt"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/storage/memstore"
)

// The doctor checks how the store's backend is set up for the cache and
// says what to change. New runs it once in the background and logs the
// findings; CheckHealth (and the admin API's GET .../doctor) runs it on
// demand. On Redis it reports the version, mode, memory policy, hash
// encoding limits against the cache's entry sizes, persistence, latency
// and more; the in-process store has little to say.
func ExampleCache_CheckHealth() {
	store, err := memstore.New()
	if err != nil {
		panic(err)
	}
	cache, err := httpcache.New(store, httpcache.WithoutStartupHealthCheck())
	if err != nil {
		panic(err)
	}
	defer cache.Close(context.Background())

	rep, err := cache.CheckHealth(context.Background())
	if err != nil {
		panic(err) // errors.Is(err, httpcache.ErrCannotCheck) for a store without a check
	}
	fmt.Println(rep.Store, rep.Mode, "worst:", rep.Worst())
	for _, f := range rep.Findings {
		fmt.Printf("%s %s: %s\n  fix: %s\n", f.Level, f.Check, f.Message, f.Fix)
	}
	// Output:
	// memory process worst: info
	// info store: in-process memory store: entries, locks and purges are shared only by the caches of this process, and a restart loses them
	//   fix: To share the cache between instances, use the Redis store (package storage/redisstore).
}
