// Package envelope turns a [storage.Entry] into the bytes that are
// stored as the value of one field of a bucket hash, and back.
//
// The envelope is a version byte followed by one msgpack array; its
// layout is specified byte for byte in ENVELOPE.md in this folder, so
// that services in other languages can read and write the same entries,
// and testdata holds a set of envelopes with the entries they hold. The
// format is compact: common header names and values are positions in
// static tables, dates and times are integers, and every integer, string
// and length takes its smallest msgpack form.
//
// [Encode] writes an entry and [Decode] reads one, cheaply enough to run
// on every cache hit: both go through pooled encoders and decoders of the
// msgpack/v5 library ([msgpack.Encoder], [msgpack.Decoder]); Decode
// copies the headers into one string and aliases the body. [Version] is the version byte of most entries and
// [VersionDictionary] that of entries in [DictionaryCoding].
//
// The store is not trusted, so Decode applies the rules entries are
// written under: it refuses statuses that are never stored and drops the
// headers that are never stored. [StorableHeader] is the same rule for a
// writer: it keeps the response headers worth storing.
//
// Decode returns an error matching [ErrCorrupt] for bytes that are not
// an entry and [ErrVersion] for an envelope version it does not know; a
// cache treats either as a miss.
package envelope
