// Package redisstore is the Redis store of readthrough: cached responses in
// Redis hashes, fill locks with redsync, and fill notifications over Redis
// pub/sub. It works on a single Redis (7.0 or newer), a Sentinel-managed one
// and Redis Cluster through go-redis's [redis.UniversalClient], and on
// miniredis for examples and tests.
//
// A [Store] implements every interface of the storage contract
// ([storage.Store], [storage.Locker], [storage.Fencer], [storage.Purger],
// [storage.Sampler], [storage.DictionaryStore], [storage.HealthChecker]
// and [storage.Tracker], which miniredis cannot serve) and passes the
// conformance suite of package storage/storetest on all of those servers.
// The contract says what each method does; this documentation says how
// the store does it in Redis.
//
// # Keys
//
// With the default prefix "rt":
//
//	rt:b:{<bucket>}           hash of one bucket: field -> encoded entry,
//	                          and "\x00g" -> purge generation once purged
//	rt:l:{<bucket>}:<field>   redsync fill lock of one field
//	rt:t:<tag>                set of the bucket keys recorded under a tag
//	rt:d:{<route>}            hash of a route's compression dictionaries:
//	                          id in decimal -> dictionary, and "current" ->
//	                          the current id; lives for [DictionaryTTL]
//	                          after the last dictionary call on the route
//	rt:fill                   pub/sub channel of fill notifications
//
// The braces are a Redis Cluster hash tag: a bucket and its locks live in one
// slot. Buckets and routes must not contain '{' or '}'; fields may be any
// bytes except the reserved [storage.GenerationField], "\x00g" (the
// middleware's fields are 16-byte digests, which never equal it).
//
// # Commands
//
// [Store.Get] is one HGET and nothing else, so a hit costs one round trip.
// [Store.GetForFill], used on the miss path, is one HMGET of the field and
// the bucket's purge generation. [Store.Set] is one Lua script on the bucket
// key (the purge fence of a fenced write, the field bound, which refuses a
// new field of a full bucket and evicts nothing, HSET, the TTL that only
// grows), followed, when the write has tags and the value was stored, by one
// pipelined round trip that records the bucket in each tag's set. Tag sets
// live in other cluster slots than the bucket, so they cannot be part of the
// script: tags are best effort and add only (a bucket stays in a tag's set
// until the set expires or is purged, and purging a missing bucket is
// harmless). Each of the dictionary calls ([Store.Dictionaries],
// [Store.AddDictionary], [Store.CurrentDictionary]) is one Lua script on
// the route's dictionary key, which also sets its lifetime again.
//
// # Purges and fences
//
// A fill reads the bucket's purge generation with [Store.GetForFill] before
// it runs the origin and writes with [storage.SetOptions].Fenced, so its
// Set stores nothing (and returns [storage.ErrPurged]) when the bucket was
// purged in between: a response that may predate the purge never lands
// after it. The generation lives in the bucket hash itself, under the
// reserved field "\x00g", so one script on the bucket's slot can check it.
// It is absent ("") in a bucket that was never purged, so such a bucket's
// HLEN counts its entries only.
//
// Every purge replaces each purged bucket, atomically with one Lua script
// per bucket key, by a tombstone: the hash is deleted and recreated holding
// only "\x00g", the previous generation (absent: 0) plus one, with a TTL of
// the fence TTL ([WithFenceTTL], two minutes by default). Fills may then
// store into the tombstone with the new generation (its TTL only grows, as
// for any bucket), and the generation stays with the bucket as long as it
// lives. A fill is fenced while the tombstone or the refilled bucket lives,
// so the fence TTL must exceed the longest fill. Generations only grow
// across repeated purges while the bucket lives; once it expires the next
// purge starts again from 1, and a fill that read an older generation is
// refused, which is safe.
//
// No purge removes a route's compression dictionaries (see [Store.PurgeAll]).
// Purge counts are of buckets that held at least one entry field: a
// tombstone purged again is not counted again. [Store.PurgeBucket] writes
// its tombstone even for a missing bucket. [Store.PurgePrefix] and
// [Store.PurgeAll] also tombstone the buckets of held fill locks, which
// fences first fills of buckets that do not exist yet; [Store.PurgeTag]
// cannot, since a bucket joins a tag's set only once it is stored. The
// scripts are pipelined in batches of SCAN's page size, never KEYS or
// another unbounded command, on every master of a cluster.
//
// # Fill notifications
//
// A [Store] holds one pub/sub subscription, opened on the first
// [Store.Watch], and one goroutine that reads it and wakes the registered
// watchers. A Watch promises delivery once Redis has confirmed the
// subscription; while it is being opened, a Watch waits for that up to
// [WithWatchBound] or until its context ends, and otherwise returns an
// error matching [storage.ErrWatchUnconfirmed]. The payload of a notification is a version byte, a flags byte
// (bit 0: an entry was stored), the bucket's length as a uvarint, the bucket
// and the field. When the connection fails or stops answering pings, the
// goroutine reopens the subscription by itself, backing off while Redis is
// unreachable; notifications published while it is down or reconnecting are
// lost, and their watchers fall back on their own wait bound. [Store.Close]
// stops the goroutine and the subscription.
//
// # Local copies and tracking
//
// [Store.Track] reports the buckets that change, so that a cache can keep
// copies of entries in process memory and drop one as soon as its bucket
// changes in Redis. It uses server-assisted client-side caching in
// broadcast mode. On each node that holds buckets (the server, every
// master of a cluster, every live shard of a ring) a tracker holds one
// connection, through a go-redis client of its own made from the options
// of the store's client for that node (address or dialer, credentials,
// TLS, timeouts; the client's OnConnect runs first), but speaking RESP2
// and named "<prefix>:tracker:<8 hex digits>". Each time it connects, the
// connection sends
//
//	CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>:b:{
//	SUBSCRIBE __redis__:invalidate
//
// From then on Redis sends it, as pub/sub messages, the names of the
// bucket keys that changed (written, deleted, purged, expired, evicted),
// whoever changed them, the store's own writes included (no NOLOOP), and
// a null message when a database is flushed, which is reported as All. A
// bucket is what lies between "<prefix>:b:{" and the key's final "}";
// other keys are ignored. Under RESP2, Redis sends invalidations only as
// pub/sub messages to a connection that tracking redirects to; under
// RESP3 it would push them where go-redis's PubSub does not return them.
// The connection redirects to itself, so that its tracking ends with it
// and never points at a connection that is gone. Every new connection is
// reported as All once Redis confirms its subscription: changes made
// while there was none are not known.
//
// In broadcast mode Redis keeps no state per key: at the end of each
// cycle of its event loop in which keys under the prefix changed, it
// sends every tracking connection one message listing them, so each
// change costs one message per process that tracks. Reports list each
// bucket once, as substrings of the key names go-redis read.
//
// Every interval, each connection sends PING with a sequence number, and
// never a second one while the first is unanswered. Redis writes the
// broadcast invalidations of a cycle after the replies to the commands
// it read in that cycle, so the pong of a PING sent at time T follows the
// invalidation of every change Redis made before T: a PING is read in a
// later cycle than those changes, as nothing else is ever sent on the
// connection. [storage.Changes.Through] is the oldest, over the nodes, of
// the times at which each node's last answered PING was sent; it stops
// while a node does not answer.
//
// Topology: every interval (at least every second) a tracker lists a
// cluster's masters (a ring's shards) again; a new one gets a connection,
// and the connection of one that is gone is closed and All reported. A
// master that appears between two listings is tracked from the second
// one on: what it changes before is covered only by the All then. A node
// goes only when two listings in a row miss it, so that a listing taken
// while the client reloads its view of the cluster closes nothing. On a
// Sentinel client ([redis.NewFailoverClient]) the connection is made
// through the client's dialer, which asks Sentinel for the master.
// Sentinel does not close the pub/sub connections of a master it
// demotes, so every interval the tracker asks, with CLIENT LIST ID
// through the store's client, whether the server the client writes to
// knows the tracking connection, and reconnects it when not; and a pong
// proves delivery only as far as the last such check that succeeded, so
// that after a failover no copy is served past the bound while the
// tracking connection still sits on the old master.
//
// A bucket whose TTL has passed is reported when Redis deletes it, on
// access or by its active expiry, which may come later; the entries in it
// carry their own expiry.
//
// What tracking cannot see, and Track therefore refuses (with an error
// matching [storage.ErrNoTracking]): reads from replicas (a cluster client
// with ReadOnly, RouteByLatency or RouteRandomly, a client of a replica),
// since a replica may still hold what a master's report says changed; and
// go-redis's own client-side cache. Redis sends no invalidation for
// SWAPDB: a deployment that swaps databases purges everything after.
package redisstore
