// Package storage holds what the cache keeps and how: the [Entry] type,
// its versioned envelope codec, and the contract that stores and locks
// meet.
//
// An [Entry] is one cached response. [Encode] turns it into the envelope
// that is stored as the value of one field of a bucket hash, and [Decode]
// turns it back, cheaply enough to run on every hit: it copies the headers
// into one string and aliases the body. The envelope is a version byte
// followed by a msgpack array; envelope/ENVELOPE.md specifies it byte
// for byte, so that services in other languages can read the same
// entries. The codec is moving to package
// [github.com/readthrough/readthrough/envelope], which writes and reads
// the same bytes with the msgpack/v5 library; Encode, Decode and
// StorableHeader stay here only until their callers have moved.
//
// Before an entry is stored, [StorableHeader] keeps the response headers
// worth storing and [Compress] gzips a body that is worth it. When an
// entry is served to a client that does not accept its coding,
// [WriteBody] decodes it through pooled decoders.
//
// The errors callers match with [errors.Is] are [ErrNotFound],
// [ErrLockHeld] and [ErrLockLost] from stores and locks, [ErrCorrupt] and
// [ErrVersion] from [Decode], and [ErrUnknownCoding] from [WriteBody]. A
// cache treats a corrupt or unknown entry as a miss.
//
// The Redis implementation of the store lives in the redisstore
// subpackage, so that code that only needs the entry and the contract
// builds without go-redis.
package storage
