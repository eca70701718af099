package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage"
)

// DictionaryTTL is the lifetime of a route's dictionary hash. Every
// dictionary call on the route ([Store.Dictionaries], [Store.AddDictionary],
// [Store.CurrentDictionary]) sets it again, and package httpcache makes
// one every ten seconds from each instance that serves the route (hits or
// fills), so the dictionaries of a route in use never expire, while those
// of a route that no instance served for a month (removed or renamed) free
// their memory. An entry that outlives its dictionary (one stored for
// longer than a month and not read since) is a miss, refilled when next
// requested.
const DictionaryTTL = 30 * 24 * time.Hour

// dictionaryTTLms is DictionaryTTL in milliseconds, as the scripts take it.
var dictionaryTTLms = millis(DictionaryTTL)

// DictionaryKey returns the Redis key of route's hash of compression
// dictionaries, "<prefix>:d:{<route>}": field the id in decimal -> the
// dictionary, and "current" -> the id of the current one. Tests and tools
// use it to look at a route's dictionaries directly.
func (s *Store) DictionaryKey(route string) string {
	return s.prefix + ":d:{" + route + "}"
}

// checkRoute rejects a route with a brace, which would break the key's
// hash tag, as checkBucket does for buckets.
func checkRoute(route string) error {
	if err := checkBucket(route); err != nil {
		return fmt.Errorf("redisstore: route %q contains a brace", route)
	}
	return nil
}

// dictionaryErr wraps an error of the dictionary call op, matching
// [storage.ErrRefused] when Redis refused the write (out of memory).
func dictionaryErr(op string, err error) error {
	if refused(err) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, storage.ErrRefused, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// parseID parses a dictionary id in decimal, which must not be 0 unless
// zero is true.
func parseID(s string, zero bool) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || (id == 0 && !zero) {
		return 0, fmt.Errorf("%q is not a dictionary id", s)
	}
	return uint32(id), nil
}

// dictionariesScript reads a route's dictionary hash and refreshes its
// lifetime.
//
//	KEYS[1]  the route's dictionary key
//	ARGV[1]  the key's lifetime, in milliseconds
//
// It returns HGETALL's flat list of fields and values. PEXPIRE does
// nothing on a missing key.
var dictionariesScript = redis.NewScript(`
local h = redis.call('HGETALL', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return h
`)

// Dictionaries implements [storage.DictionaryStore.Dictionaries] with one
// script run that reads the route's hash, "<prefix>:d:{<route>}", and sets
// its lifetime to [DictionaryTTL] again. Fields that are not dictionary
// ids are ignored.
func (s *Store) Dictionaries(ctx context.Context, route string) (uint32, map[uint32][]byte, error) {
	if err := checkRoute(route); err != nil {
		return 0, nil, err
	}
	vals, err := dictionariesScript.Run(ctx, s.rdb, []string{s.DictionaryKey(route)}, dictionaryTTLms).StringSlice()
	if err != nil {
		return 0, nil, dictionaryErr("dictionaries", err)
	}
	dicts := make(map[uint32][]byte, len(vals)/2)
	var current string
	for i := 0; i+1 < len(vals); i += 2 {
		f, v := vals[i], vals[i+1]
		if f == "current" {
			current = v
			continue
		}
		if id, err := parseID(f, false); err == nil {
			dicts[id] = []byte(v)
		}
	}
	cur, err := parseID(current, false)
	if _, ok := dicts[cur]; err != nil || !ok {
		cur = 0
	}
	return cur, dicts, nil
}

// addDictionaryScript stores one dictionary of a route and maintains the
// route's hash in one atomic step.
//
//	KEYS[1]  the route's dictionary key
//	ARGV[1]  the id, in decimal
//	ARGV[2]  the dictionary
//	ARGV[3]  the most dictionaries the route keeps
//	ARGV[4]  the key's lifetime, in milliseconds
//
// The new dictionary becomes current unless the field "current" names a
// dictionary that is stored. When the route then holds more than ARGV[3]
// dictionaries, it deletes others, lowest ids first (fields that are not
// numbers before them), never the current one or the new one; a route
// holds at most 9 fields, so HKEYS is cheap. It returns the current id.
var addDictionaryScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local cur = redis.call('HGET', KEYS[1], 'current')
if not cur or cur == 'current' or redis.call('HEXISTS', KEYS[1], cur) == 0 then
  cur = ARGV[1]
  redis.call('HSET', KEYS[1], 'current', cur)
end
local others = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f ~= 'current' and f ~= cur and f ~= ARGV[1] then
    others[#others + 1] = f
  end
end
local keep = tonumber(ARGV[3]) - 1
if cur ~= ARGV[1] then
  keep = keep - 1
end
if #others > keep then
  table.sort(others, function(a, b)
    return (tonumber(a) or -1) < (tonumber(b) or -1)
  end)
  for i = 1, #others - keep do
    redis.call('HDEL', KEYS[1], others[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return cur
`)

// AddDictionary implements [storage.DictionaryStore.AddDictionary] with
// one script run on the route's hash, atomic against other instances
// adding theirs, that also sets its lifetime to [DictionaryTTL] again. A
// write Redis refuses (out of memory) matches [storage.ErrRefused].
func (s *Store) AddDictionary(ctx context.Context, route string, id uint32, dict []byte) (uint32, error) {
	if err := storage.CheckDictionary(route, id, dict); err != nil {
		return 0, fmt.Errorf("redisstore: %w", err)
	}
	cur, err := addDictionaryScript.Run(ctx, s.rdb, []string{s.DictionaryKey(route)},
		strconv.FormatUint(uint64(id), 10), dict, storage.MaxDictionaries, dictionaryTTLms).Text()
	if err != nil {
		return 0, dictionaryErr("add dictionary", err)
	}
	current, err := parseID(cur, false)
	if err != nil {
		return 0, fmt.Errorf("redisstore: add dictionary: current: %w", err)
	}
	return current, nil
}

// currentDictionaryScript reads a route's current dictionary id and
// refreshes the route's lifetime.
//
//	KEYS[1]  the route's dictionary key
//	ARGV[1]  the key's lifetime, in milliseconds
//
// It returns the field "current", or "0" when it is missing or names a
// dictionary that is not stored.
var currentDictionaryScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'current')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if cur and cur ~= 'current' and redis.call('HEXISTS', KEYS[1], cur) == 1 then
  return cur
end
return '0'
`)

// CurrentDictionary implements [storage.DictionaryStore.CurrentDictionary]
// with one script run that reads the route's "current" field and sets the
// route's lifetime to [DictionaryTTL] again.
func (s *Store) CurrentDictionary(ctx context.Context, route string) (uint32, error) {
	if err := checkRoute(route); err != nil {
		return 0, err
	}
	cur, err := currentDictionaryScript.Run(ctx, s.rdb, []string{s.DictionaryKey(route)}, dictionaryTTLms).Text()
	if err != nil {
		return 0, dictionaryErr("current dictionary", err)
	}
	id, err := parseID(cur, true)
	if err != nil {
		return 0, fmt.Errorf("redisstore: current dictionary: %w", err)
	}
	return id, nil
}
