package envelope

import (
	"errors"
	"math"
	"time"
)

// Version is the version byte that [Encode] writes first for every
// entry whose body is in an HTTP content coding (or none). ENVELOPE.md
// describes the format it names.
const Version = 1

// VersionDictionary is the version byte that [Encode] writes for an
// entry whose body is in [DictionaryCoding], which only a reader that
// has the route's dictionary can decode. The layout is version 1's; the
// other byte makes readers that know only version 1 (an older release,
// during a rolling deploy or after a rollback) treat such an entry as a
// miss, as they do every version they do not know, rather than send the
// body as it is or fail on it. [Decode] accepts both versions.
const VersionDictionary = 2

// DictionaryCoding is the envelope coding of a body compressed with a
// route's zstd dictionary (see ENVELOPE.md): one zstd frame whose header
// names the dictionary. It is not an HTTP content coding: no client can
// decode it, so a server decodes it before sending.
const DictionaryCoding = "zstd-dict"

// Errors returned by [Decode]. Callers match them with [errors.Is]; a
// cache treats both as a miss.
var (
	// ErrCorrupt is returned for bytes that are not an entry.
	ErrCorrupt = errors.New("envelope: corrupt entry")
	// ErrVersion is returned for an envelope version this code does not
	// know.
	ErrVersion = errors.New("envelope: unknown entry version")
)

// fields is the number of array elements an envelope must have; later
// additions within version 1 append elements after these.
const fields = 10

// flagCacheEncoded is bit 0 of the flags element: Entry.CacheEncoded.
const flagCacheEncoded = 1 << 0

// Largest durations whose millisecond or microsecond count still fits in
// a [time.Duration] once multiplied back.
const (
	maxMillis = math.MaxInt64 / int64(time.Millisecond)
	maxMicros = math.MaxInt64 / int64(time.Microsecond)
)
