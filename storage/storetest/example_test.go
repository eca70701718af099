package storetest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
	"github.com/readthrough/readthrough/storage/storetest"
)

var (
	mu     sync.Mutex
	stores = map[*testing.T]*memstore.Store{}
)

// newStore is the constructor a store's test gives [storetest.Run], here
// for memstore. Every instance made for one test is the same store: that
// is how several caches share a memstore.Store. A Redis store would
// return a new Store on one client with a key prefix of the test's own.
func newStore(t *testing.T, fenceTTL time.Duration) storetest.Store {
	mu.Lock()
	defer mu.Unlock()
	s, ok := stores[t]
	if !ok {
		var err error
		s, err = memstore.New(memstore.WithFenceTTL(fenceTTL))
		if err != nil {
			t.Fatal(err)
		}
		stores[t] = s
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			delete(stores, t)
		})
	}
	return s
}

// A store's conformance test is one line, storetest.Run(t, newStore),
// which checks the optional interfaces the store implements besides
// storage.Store and storage.Locker.
func Example() {
	run := func(t *testing.T) { storetest.Run(t, newStore) }
	s, err := memstore.New()
	if err != nil {
		panic(err)
	}
	_, fencer := any(s).(storage.Fencer)
	_, purger := any(s).(storage.Purger)
	_, dicts := any(s).(storage.DictionaryStore)
	fmt.Printf("%T\n", run)
	fmt.Println("Fencer:", fencer, "Purger:", purger, "DictionaryStore:", dicts)
	// Output:
	// func(*testing.T)
	// Fencer: true Purger: true DictionaryStore: true
}
