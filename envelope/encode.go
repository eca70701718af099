package envelope

import (
	"math"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/vmihailenco/msgpack/v5"
)

// Encode appends the envelope of e to dst and returns it. The format is
// described in ENVELOPE.md: a version byte ([Version], or
// [VersionDictionary] when e.Coding is [DictionaryCoding]), then one
// msgpack array of ten elements using the smallest encoding of every
// integer, string and length.
//
// Header names are written in canonical form, sorted, each value as its
// own name/value pair; names without values are left out. A name in the
// static name table is written as its index, a value in the static value
// table as its index, and a Last-Modified or Expires value as Unix seconds
// when http.TimeFormat writes those seconds back as exactly that string.
// Stored is written as Unix milliseconds, OriginTime in microseconds and
// the three windows in milliseconds, all truncated; negative durations are
// written as 0. Encode does not validate e: an entry whose Status is
// outside 200-599 or is 206, or whose Coding is not a token, encodes, but
// [Decode] rejects it; headers that [StorableHeader] drops are written,
// but [Decode] drops them. Encode panics if Body or a header is 4 GiB or
// longer, which msgpack cannot express.
//
// The fields are written by a pooled [msgpack.Encoder] straight into dst,
// which Encode grows at most once, to a bound of the envelope's size; it
// allocates nothing else for entries with up to 16 header names.
func Encode(dst []byte, e *storage.Entry) []byte {
	var buf [16]headerName
	names := sortedNames(buf[:0], e.Header)

	// A bound of the size: every string or bin takes at most 5 bytes
	// besides its bytes, every integer at most 9, every array header 5.
	const fixedBound = 1 + 5 + 9 + 5 + 5*9 + 5 + 9 + 5
	bound := fixedBound + len(e.Coding) + len(e.Body)
	checkLen(len(e.Coding), "coding")
	checkLen(len(e.Body), "body")
	pairs := 0
	for _, n := range names {
		checkLen(len(n.canon), "header name")
		for _, v := range e.Header[n.raw] {
			checkLen(len(v), "header value")
			bound += 5 + len(n.canon) + 9 + len(v)
		}
		pairs += len(e.Header[n.raw])
	}
	checkLen(2*pairs, "header array")
	dst = slices.Grow(dst, bound)

	version := byte(Version)
	if e.Coding == DictionaryCoding {
		version = VersionDictionary
	}
	w := appendWriters.Get().(*appendWriter)
	w.b = append(dst, version)
	enc := msgpack.GetEncoder()
	enc.Reset(w)

	// w never fails, so neither does any Encode call: their errors are
	// always nil.
	n := fields
	date := e.Date.Unix()
	if e.Date.IsZero() || date <= 0 || date > maxHTTPDate {
		date = 0
	} else {
		n++ // element 10, written only when there is a Date to keep
	}
	_ = enc.EncodeArrayLen(n)
	_ = enc.EncodeUint(uint64(max(e.Status, 0)))
	_ = enc.EncodeArrayLen(2 * pairs)
	for _, n := range names {
		for _, v := range e.Header[n.raw] {
			if n.index >= 0 {
				_ = enc.EncodeUint(uint64(n.index))
			} else {
				_ = enc.EncodeString(n.canon)
			}
			encodeHeaderValue(enc, v, n.date)
		}
	}
	_ = enc.EncodeInt(e.Stored.UnixMilli())
	_ = enc.EncodeUint(durationUnits(e.Fresh, time.Millisecond))
	_ = enc.EncodeUint(durationUnits(e.StaleWhileRevalidate, time.Millisecond))
	_ = enc.EncodeUint(durationUnits(e.StaleIfError, time.Millisecond))
	_ = enc.EncodeUint(durationUnits(e.OriginTime, time.Microsecond))
	_ = enc.EncodeString(e.Coding)
	var flags uint64
	if e.CacheEncoded {
		flags |= flagCacheEncoded
	}
	_ = enc.EncodeUint(flags)
	// Not EncodeBytes, which writes a nil body as msgpack nil: the body
	// is always a bin, of length 0 for none.
	_ = enc.EncodeBytesLen(len(e.Body))
	_, _ = w.Write(e.Body)
	if date > 0 {
		_ = enc.EncodeUint(uint64(date))
	}

	msgpack.PutEncoder(enc)
	dst = w.b
	w.b = nil // do not keep dst alive from the pool
	appendWriters.Put(w)
	return dst
}

// checkLen panics if a string, body or array of length n is too long
// for msgpack, which writes lengths in at most 32 bits (and
// [msgpack.Encoder] would write a wrong one).
func checkLen(n int, what string) {
	if uint64(n) > math.MaxUint32 {
		panic("envelope: Encode: " + what + " of 4 GiB or more")
	}
}

// encodeHeaderValue writes the header value v of a name that is a date
// name or not: as Unix seconds if v is a date that round-trips through
// http.TimeFormat, as its index if v is in the value table, or else as a
// string.
func encodeHeaderValue(enc *msgpack.Encoder, v string, date bool) {
	if date {
		if secs, ok := httpDateSeconds(v); ok {
			_ = enc.EncodeUint(secs)
			return
		}
	} else if i, ok := headerValueIndex[v]; ok {
		_ = enc.EncodeUint(uint64(i))
		return
	}
	_ = enc.EncodeString(v)
}

// appendWriter is the writer Encode's msgpack.Encoder writes to: it
// appends to b. It has the WriteByte method that the encoder needs to
// use it directly rather than through a buffer of its own.
type appendWriter struct{ b []byte }

var appendWriters = sync.Pool{New: func() any { return new(appendWriter) }}

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// headerName is one header name as found in the map and in canonical
// form, with its position in the name table (-1 if it has none) and
// whether its values are dates.
type headerName struct {
	canon, raw string
	index      int
	date       bool
}

// sortedNames appends the names of h that have values to buf, sorted by
// canonical name and then by the name in the map, so that the output of
// Encode is deterministic even for a header with non-canonical keys.
func sortedNames(buf []headerName, h http.Header) []headerName {
	for k, vs := range h {
		if len(vs) > 0 {
			n := headerName{canon: textproto.CanonicalMIMEHeaderKey(k), raw: k, index: -1}
			if i, ok := headerNameIndex[n.canon]; ok {
				n.index = int(i)
			}
			n.date = isDateName(n.canon)
			buf = append(buf, n)
		}
	}
	slices.SortFunc(buf, func(a, b headerName) int {
		if c := strings.Compare(a.canon, b.canon); c != 0 {
			return c
		}
		return strings.Compare(a.raw, b.raw)
	})
	return buf
}

// durationUnits is d in whole units, truncated, with negatives as 0.
func durationUnits(d, unit time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / unit)
}
