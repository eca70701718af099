// Package redisstore is the Redis store of readthrough: cached responses in
// Redis hashes, fill locks with redsync, and fill notifications over Redis
// pub/sub. It works on a single Redis (7.0 or newer), a Sentinel-managed one
// and Redis Cluster through go-redis's [redis.UniversalClient], and on
// miniredis for examples and tests.
//
// # Keys
//
// With the default prefix "rt":
//
//	rt:b:{<bucket>}           hash of one bucket: field -> encoded entry
//	rt:l:{<bucket>}:<field>   redsync fill lock of one field
//	rt:t:<tag>                set of the bucket keys recorded under a tag
//	rt:fill                   pub/sub channel of fill notifications
//
// The braces are a Redis Cluster hash tag: a bucket and its locks live in one
// slot. Buckets must not contain '{' or '}'; fields may be any bytes.
//
// # Commands
//
// [Store.Get] is one HGET and nothing else, so a hit costs one round trip.
// [Store.Set] is one Lua script on the bucket key (HSET, the field bound,
// the TTL that only grows), followed, when the write has tags, by one
// pipelined round trip that records the bucket in each tag's set. Tag sets
// live in other cluster slots than the bucket, so they cannot be part of the
// script: tags are best effort and add only (a bucket stays in a tag's set
// until the set expires or is purged, and purging a missing bucket is
// harmless).
//
// # Fill notifications
//
// A [Store] holds one pub/sub subscription, opened on the first
// [Store.Watch], and one goroutine that reads it and wakes the registered
// watchers. The payload of a notification is a version byte, a flags byte
// (bit 0: an entry was stored), the bucket's length as a uvarint, the bucket
// and the field. When the connection fails or stops answering pings, the
// goroutine reopens the subscription by itself, backing off while Redis is
// unreachable; notifications published while it is down or reconnecting are
// lost, and their watchers fall back on their own wait bound. [Store.Close]
// stops the goroutine and the subscription.
package redisstore
