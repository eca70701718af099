// Package storetest is the conformance suite of readthrough stores: every
// store a cache can use (the in-process memstore.Store, the Redis store on
// a single node, on Redis Cluster or on miniredis, and any store written
// elsewhere) must pass [Run], so that a cache behaves the same on all of
// them. It checks the interfaces of package storage, as their docs state
// them: [storage.Store] and [storage.Locker], which every store given to
// Run implements ([Store]), and [storage.Fencer], [storage.Purger],
// [storage.Sampler], [storage.DictionaryStore] and [storage.Tracker] on a
// store that implements them (fences need Purger too, that purges keep
// the dictionaries is checked on a store with both, and the reports of
// purges on a Tracker that is also a Purger). The Tracker tests are
// skipped when the backend cannot track changes ([storage.ErrNoTracking]);
// they accept reports that list more buckets than changed, or All, but
// never one that misses a change, and they compare [storage.Changes.Through]
// with the test's own clock, as a cache does.
//
// A store runs the suite from a test of its own package, with a
// constructor that gives every instance it returns for one test the same
// backend, empty of other tests' keys:
//
//	func TestConformance(t *testing.T) {
//		srv := startRedis(t)
//		storetest.Run(t, func(t *testing.T, fenceTTL time.Duration) storetest.Store {
//			s, err := mystore.New(srv.Client(),
//				mystore.WithPrefix(uniquePrefix(t)), mystore.WithFenceTTL(fenceTTL))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { _ = s.Close() })
//			return s
//		})
//	}
//
// The suite runs in real time with short lifetimes (tens of milliseconds),
// because it must also run against a real Redis server, whose clock a test
// cannot control. Its verdicts do not rest on how long it sleeps: it polls
// until a condition holds, up to a deadline only a broken store reaches;
// it concludes that a lifetime has not run out only while the time since
// the write proves it; and it concludes that a notification did not come
// once a later one has (a Locker delivers in order).
package storetest
