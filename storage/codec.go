package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// EnvelopeVersion is the version byte that [Encode] writes first for
// every entry whose body is in an HTTP content coding (or none).
// envelope/ENVELOPE.md describes the format it names.
const EnvelopeVersion = 1

// EnvelopeVersionDictionary is the version byte that [Encode] writes for
// an entry whose body is in [DictionaryCoding], which only a reader that
// has the route's dictionary can decode. The layout is version 1's; the
// other byte makes readers that know only version 1 (an older release,
// during a rolling deploy or after a rollback) treat such an entry as a
// miss, as they do every version they do not know, rather than send the
// body as it is or fail on it. [Decode] accepts both versions.
const EnvelopeVersionDictionary = 2

// DictionaryCoding is the envelope coding of a body compressed with a
// route's zstd dictionary (see envelope/ENVELOPE.md): one zstd frame whose header
// names the dictionary. It is not an HTTP content coding: no client can
// decode it, so a server decodes it before sending.
const DictionaryCoding = "zstd-dict"

// envelopeFields is the number of array elements a version 1 envelope must
// have; later additions within version 1 append elements after these.
const envelopeFields = 10

// flagCacheEncoded is bit 0 of the flags element: [Entry.CacheEncoded].
const flagCacheEncoded = 1 << 0

// Largest durations whose millisecond or microsecond count still fits in
// a [time.Duration] once multiplied back.
const (
	maxMillis = math.MaxInt64 / int64(time.Millisecond)
	maxMicros = math.MaxInt64 / int64(time.Microsecond)
)

// msgpack format bytes used by the codec (github.com/msgpack/msgpack,
// spec.md). The fix* families carry their value or length in the low bits.
const (
	mpPosFixintMax = 0x7f
	mpFixmap       = 0x80
	mpFixarray     = 0x90
	mpFixstr       = 0xa0
	mpNil          = 0xc0
	mpNeverUsed    = 0xc1
	mpFalse        = 0xc2
	mpTrue         = 0xc3
	mpBin8         = 0xc4
	mpBin16        = 0xc5
	mpBin32        = 0xc6
	mpExt8         = 0xc7
	mpExt16        = 0xc8
	mpExt32        = 0xc9
	mpFloat32      = 0xca
	mpFloat64      = 0xcb
	mpUint8        = 0xcc
	mpUint16       = 0xcd
	mpUint32       = 0xce
	mpUint64       = 0xcf
	mpInt8         = 0xd0
	mpInt16        = 0xd1
	mpInt32        = 0xd2
	mpInt64        = 0xd3
	mpFixext1      = 0xd4
	mpFixext16     = 0xd8
	mpStr8         = 0xd9
	mpStr16        = 0xda
	mpStr32        = 0xdb
	mpArray16      = 0xdc
	mpArray32      = 0xdd
	mpMap16        = 0xde
	mpMap32        = 0xdf
	mpNegFixintMin = 0xe0
)

// Encode appends the envelope of e to dst and returns it. The format is
// described in envelope/ENVELOPE.md: a version byte, then one msgpack array of ten
// elements using the smallest encoding of every integer, string and length.
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
// Encode computes the envelope's exact size first and grows dst at most
// once; it allocates nothing else for entries with up to 16 header names.
func Encode(dst []byte, e *Entry) []byte {
	var buf [16]headerName
	names := sortedNames(buf[:0], e.Header)
	pairs := 0
	for _, n := range names {
		pairs += len(e.Header[n.raw])
	}

	status := uint64(max(e.Status, 0))
	stored := e.Stored.UnixMilli()
	fresh := durationUnits(e.Fresh, time.Millisecond)
	swr := durationUnits(e.StaleWhileRevalidate, time.Millisecond)
	sie := durationUnits(e.StaleIfError, time.Millisecond)
	origin := durationUnits(e.OriginTime, time.Microsecond)
	var flags uint64
	if e.CacheEncoded {
		flags |= flagCacheEncoded
	}

	size := 2 + uintSize(status) + arraySize(2*pairs) + intSize(stored) +
		uintSize(fresh) + uintSize(swr) + uintSize(sie) + uintSize(origin) +
		strSize(len(e.Coding)) + uintSize(flags) + binSize(len(e.Body))
	for _, n := range names {
		nameSize := 1
		if n.index < 0 {
			nameSize = strSize(len(n.canon))
		}
		for _, v := range e.Header[n.raw] {
			size += nameSize + headerValueSize(v, n.date)
		}
	}
	dst = slices.Grow(dst, size)

	version := byte(EnvelopeVersion)
	if e.Coding == DictionaryCoding {
		version = EnvelopeVersionDictionary
	}
	dst = append(dst, version, mpFixarray|envelopeFields)
	dst = appendUint(dst, status)
	dst = appendArrayLen(dst, 2*pairs)
	for _, n := range names {
		for _, v := range e.Header[n.raw] {
			if n.index >= 0 {
				dst = append(dst, byte(n.index))
			} else {
				dst = appendStr(dst, n.canon)
			}
			dst = appendHeaderValue(dst, v, n.date)
		}
	}
	dst = appendInt(dst, stored)
	dst = appendUint(dst, fresh)
	dst = appendUint(dst, swr)
	dst = appendUint(dst, sie)
	dst = appendUint(dst, origin)
	dst = appendStr(dst, e.Coding)
	dst = appendUint(dst, flags)
	return appendBin(dst, e.Body)
}

// headerValueSize is the size of v as appendHeaderValue writes it.
func headerValueSize(v string, date bool) int {
	if date {
		if secs, ok := httpDateSeconds(v); ok {
			return uintSize(secs)
		}
	} else if _, ok := headerValueIndex[v]; ok {
		return 1
	}
	return strSize(len(v))
}

// appendHeaderValue appends the header value v of a name that is a date
// name or not: as Unix seconds if v is a date that round-trips through
// http.TimeFormat, as its index if v is in the value table, or else as a
// string.
func appendHeaderValue(b []byte, v string, date bool) []byte {
	if date {
		if secs, ok := httpDateSeconds(v); ok {
			return appendUint(b, secs)
		}
	} else if i, ok := headerValueIndex[v]; ok {
		return append(b, i)
	}
	return appendStr(b, v)
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

func uintSize(v uint64) int {
	switch {
	case v <= mpPosFixintMax:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

func intSize(v int64) int {
	switch {
	case v >= 0:
		return uintSize(uint64(v))
	case v >= -32:
		return 1
	case v >= math.MinInt8:
		return 2
	case v >= math.MinInt16:
		return 3
	case v >= math.MinInt32:
		return 5
	}
	return 9
}

func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func binSize(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func arraySize(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= mpPosFixintMax:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, mpUint8, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpUint16), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, mpUint32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, mpUint64), v)
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, mpInt8, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, mpInt16), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, mpInt32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, mpInt64), uint64(v))
}

func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, mpFixstr|byte(n))
	case n <= math.MaxUint8:
		b = append(b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, mpStr16), uint16(n))
	case uint64(n) <= math.MaxUint32:
		b = binary.BigEndian.AppendUint32(append(b, mpStr32), uint32(n))
	default:
		panic("storage: Encode: string of 4 GiB or more")
	}
	return append(b, s...)
}

func appendBin(b, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, mpBin8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, mpBin16), uint16(n))
	case uint64(n) <= math.MaxUint32:
		b = binary.BigEndian.AppendUint32(append(b, mpBin32), uint32(n))
	default:
		panic("storage: Encode: body of 4 GiB or more")
	}
	return append(b, p...)
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, mpFixarray|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpArray16), uint16(n))
	case uint64(n) <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, mpArray32), uint32(n))
	}
	panic("storage: Encode: more than 4 GiB header values")
}

// Decode parses an envelope into e, replacing every field. It reuses
// e.Header's map if it is not nil, after clearing it; otherwise it makes
// a new one, so that e.Header is never nil after a successful Decode.
// e.Body aliases data (no copy, capacity limited to its length), so data
// must not be modified while e is in use. Header names and values given
// as strings are copied out of data into one string, which also holds the
// text of the dates stored as integers; names and values given as table
// positions are the tables' own strings. Header names are put in
// canonical form. Stored is returned in UTC.
//
// The store is not trusted: its values may come from an older release,
// an operator or anyone with access to Redis. So Decode applies the
// rules a stored entry was written under. It drops every header that
// [StorableHeader] drops (hop-by-hop headers and the names Connection
// lists, trailers and the names Trailer lists, Set-Cookie, Date, Age,
// Content-Length, Content-Encoding, Cache-Status, Surrogate-Key,
// Surrogate-Control), whatever the case of its name, and it refuses a
// status outside 200-599, and 206 Partial Content, which is never stored.
//
// Any malformed input returns an error matching [ErrCorrupt]: truncated
// or trailing bytes, wrong msgpack types, lengths beyond the input, fewer
// than ten elements, an odd number of header elements, a name or value
// table position past the end of its table, a date outside 0 to
// 253402300799 seconds, a status outside 200-599 or of 206 (the error
// names it), a negative duration or one that overflows [time.Duration], a
// coding that is not an RFC 9110 token. A first byte other than
// [EnvelopeVersion] and [EnvelopeVersionDictionary] returns an error
// matching [ErrVersion]. On error e is left unchanged. Decode never
// panics and allocates nothing in proportion to a length it has not
// checked against len(data). Dropping headers costs nothing for a name
// given as a position in the name table and one map lookup for a name
// given as a string; only an entry that holds such a header pays more.
func Decode(data []byte, e *Entry) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if data[0] != EnvelopeVersion && data[0] != EnvelopeVersionDictionary {
		return fmt.Errorf("%w %d", ErrVersion, data[0])
	}
	r := reader{b: data, off: 1}

	n, ok := r.arrayLen()
	if !ok {
		return r.fail("envelope array")
	}
	if n < envelopeFields {
		return fmt.Errorf("%w: envelope has %d elements, want at least %d", ErrCorrupt, n, envelopeFields)
	}

	status, ok := r.uint()
	if !ok {
		return r.fail("status")
	}
	if !storedStatus(status) {
		return fmt.Errorf("%w: status %d is never stored (want 200-599, not 206)", ErrCorrupt, status)
	}

	// The headers are only checked here; they are turned into strings
	// once everything else has been checked, so that a corrupt envelope
	// costs no allocation and leaves e as it was.
	hn, ok := r.arrayLen()
	if !ok || hn%2 != 0 {
		return r.fail("headers")
	}
	hStart := r.off
	var hs headerScan
	if !r.scanHeaders(hn/2, &hs) {
		return r.fail("header")
	}
	hEnd := r.off

	stored, ok := r.int()
	if !ok {
		return r.fail("stored")
	}
	var durs [4]time.Duration
	for i, f := range [...]struct {
		name  string
		limit int64
		unit  time.Duration
	}{
		{"fresh_ms", maxMillis, time.Millisecond},
		{"swr_ms", maxMillis, time.Millisecond},
		{"sie_ms", maxMillis, time.Millisecond},
		{"origin_us", maxMicros, time.Microsecond},
	} {
		v, ok := r.uint()
		if !ok || v > uint64(f.limit) {
			return r.fail(f.name)
		}
		durs[i] = time.Duration(v) * f.unit
	}
	coding, ok := r.str()
	if !ok || !isToken(coding) {
		return r.fail("coding")
	}
	flags, ok := r.uint()
	if !ok {
		return r.fail("flags")
	}
	body, ok := r.str()
	if !ok {
		return r.fail("body")
	}
	if !r.skip(uint64(n - envelopeFields)) {
		return r.fail("extra element")
	}
	if r.off != len(data) {
		return r.fail("trailing bytes")
	}

	e.Header = decodeHeader(e.Header, data[hStart:hEnd], hn/2, &hs)
	e.Status = int(status)
	e.Stored = time.UnixMilli(stored).UTC()
	e.Fresh, e.StaleWhileRevalidate, e.StaleIfError, e.OriginTime = durs[0], durs[1], durs[2], durs[3]
	e.Coding = internCoding(coding)
	e.CacheEncoded = flags&flagCacheEncoded != 0
	e.Body = body[:len(body):len(body)]
	return nil
}

// storedStatus reports whether an entry may have the status s: a final
// status that net/http can write (200-599), and not 206 Partial Content,
// which is never stored (policy.Policy.Validate refuses it).
func storedStatus(s uint64) bool {
	return s >= 200 && s <= 599 && s != http.StatusPartialContent
}

// headerScan is what scanHeaders learns about the headers array.
type headerScan struct {
	strs  bool     // some element is a string
	dates int      // how many values are dates
	first [4]int64 // the first dates, in Unix seconds
}

// scanHeaders checks the pairs name/value pairs of the headers array at
// off and steps over them. Names are strings or positions in headerNames;
// values of date names are strings or integers from 0 to maxHTTPDate
// (Unix seconds), values of other names strings or positions in
// headerValues. Anything else, including a position past the end of its
// table, reports false with off at the offending element.
func (r *reader) scanHeaders(pairs int, hs *headerScan) bool {
	for range pairs {
		if !r.need(1) {
			return false
		}
		date := false
		if c := r.b[r.off]; c <= mpPosFixintMax {
			if int(c) >= len(headerNames) {
				return false
			}
			date = c == nameLastModified || c == nameExpires
			r.off++
		} else {
			name, ok := r.str()
			if !ok {
				return false
			}
			hs.strs = true
			date = isDateName(name)
		}

		if !r.need(1) {
			return false
		}
		c := r.b[r.off]
		switch {
		case date && isIntFormat(c):
			start := r.off
			v, ok := r.int()
			if !ok || v < 0 || v > maxHTTPDate {
				r.off = start
				return false
			}
			if hs.dates < len(hs.first) {
				hs.first[hs.dates] = v
			}
			hs.dates++
		case !date && c <= mpPosFixintMax:
			if int(c) >= len(headerValues) {
				return false
			}
			r.off++
		default:
			if _, ok := r.str(); !ok {
				return false
			}
			hs.strs = true
		}
	}
	return true
}

// isIntFormat reports whether c starts a msgpack integer.
func isIntFormat(c byte) bool {
	return c <= mpPosFixintMax || c >= mpNegFixintMin || mpUint8 <= c && c <= mpInt64
}

// intLen is the length of the msgpack integer that starts with c.
func intLen(c byte) int {
	switch c {
	case mpUint8, mpInt8:
		return 2
	case mpUint16, mpInt16:
		return 3
	case mpUint32, mpInt32:
		return 5
	case mpUint64, mpInt64:
		return 9
	}
	return 1
}

// decodeHeader builds the header from raw, the elements of the headers
// array that scanHeaders checked and described in hs: pairs name/value
// pairs. Strings are sliced out of one string that holds a copy of raw
// (if any element is a string) and then the text of every date, and all
// values share one backing array, each name's run capped so that
// appending to one cannot overwrite another: besides the map, at most two
// allocations for any number of headers, and one when every name and
// value is in the tables.
func decodeHeader(h http.Header, raw []byte, pairs int, hs *headerScan) http.Header {
	if h == nil {
		h = make(http.Header, pairs)
	} else {
		clear(h)
	}
	if pairs == 0 {
		return h
	}
	copied := 0
	if hs.strs {
		copied = len(raw)
	}
	var s string
	if copied+hs.dates > 0 {
		var b strings.Builder
		b.Grow(copied + hs.dates*httpDateLen)
		b.Write(raw[:copied])
		var buf [httpDateLen]byte
		if hs.dates <= len(hs.first) {
			for _, v := range hs.first[:hs.dates] {
				b.Write(appendHTTPDate(buf[:0], v))
			}
		} else {
			// More dates than scanHeaders kept: find them again.
			r := reader{b: raw}
			for range pairs {
				date := false
				if c := raw[r.off]; c <= mpPosFixintMax {
					date = c == nameLastModified || c == nameExpires
					r.off++
				} else {
					name, _ := r.str()
					date = isDateName(name)
				}
				if c := raw[r.off]; date && isIntFormat(c) {
					v, _ := r.int()
					b.Write(appendHTTPDate(buf[:0], v))
				} else if c <= mpPosFixintMax {
					r.off++
				} else {
					r.str()
				}
			}
		}
		s = b.String()
	}

	vals := make([]string, pairs)
	// Names arrive sorted, so the values of one name are adjacent and each
	// new name is greater than the last, hence not yet in h. A name that
	// comes back (unsorted input, or two spellings of one canonical name)
	// has its values appended.
	run, name, sorted := 0, "", true
	flush := func(end int) {
		if end == run {
			return
		}
		if !sorted {
			if old, ok := h[name]; ok {
				h[name] = append(old, vals[run:end]...)
				return
			}
		}
		h[name] = vals[run:end:end]
	}
	// drop is set by a name that is never stored, such as Set-Cookie or
	// Connection (which may list others): those are removed at the end.
	// A position in the name table costs an array lookup, a name given
	// as a string a map lookup.
	off, nextDate, drop := 0, copied, false
	for i := range pairs {
		var k string
		date := false
		if c := raw[off]; c <= mpPosFixintMax {
			k = headerNames[c]
			date = c == nameLastModified || c == nameExpires
			drop = drop || !tableNameStorable[c]
			off++
		} else {
			start, end, _ := strBounds(s, off)
			off = end
			k = s[start:end]
			if !isCanonical(k) {
				k = textproto.CanonicalMIMEHeaderKey(k)
			}
			date = isDateName(k)
			drop = drop || !storable(k)
		}
		if i == 0 || k != name {
			flush(i)
			if i > 0 && k < name {
				sorted = false
			}
			run, name = i, k
		}

		switch c := raw[off]; {
		case date && isIntFormat(c):
			off += intLen(c)
			vals[i] = s[nextDate : nextDate+httpDateLen]
			nextDate += httpDateLen
		case c <= mpPosFixintMax:
			vals[i] = headerValues[c]
			off++
		default:
			start, end, _ := strBounds(s, off)
			off = end
			vals[i] = s[start:end]
		}
	}
	flush(pairs)
	if drop {
		dropUnstorable(h)
	}
	return h
}

// isCanonical reports whether s is in the form
// [textproto.CanonicalMIMEHeaderKey] gives, as far as letter case goes;
// that function returns any such s unchanged, so only the others need it.
func isCanonical(s string) bool {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// internCoding returns the common codings without allocating.
func internCoding(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "gzip":
		return "gzip"
	case "zstd":
		return "zstd"
	case "br":
		return "br"
	case "deflate":
		return "deflate"
	}
	return string(b)
}

// isToken reports whether b is empty or an RFC 9110 token (section 5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		if !isTokenByte(c) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// reader reads msgpack values from b starting at off. Every method checks
// bounds and reports false, with off at the offending value, rather than
// panic.
type reader struct {
	b   []byte
	off int
}

// fail returns the ErrCorrupt error for a bad element.
func (r *reader) fail(what string) error {
	return fmt.Errorf("%w: bad %s at byte %d", ErrCorrupt, what, r.off)
}

// need reports whether n more bytes follow off.
func (r *reader) need(n uint64) bool {
	return n <= uint64(len(r.b)-r.off)
}

// be reads the n-byte big-endian unsigned integer after the format byte
// at off, for n of 1, 2, 4 or 8, and steps over both.
func (r *reader) be(n int) (uint64, bool) {
	v, ok := r.peek(n)
	if ok {
		r.off += 1 + n
	}
	return v, ok
}

// peek is be without moving off.
func (r *reader) peek(n int) (uint64, bool) {
	if !r.need(uint64(1 + n)) {
		return 0, false
	}
	p := r.b[r.off+1 : r.off+1+n]
	switch n {
	case 1:
		return uint64(p[0]), true
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), true
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), true
	}
	return binary.BigEndian.Uint64(p), true
}

// int reads an integer in any msgpack integer format that fits an int64.
func (r *reader) int() (int64, bool) {
	if !r.need(1) {
		return 0, false
	}
	c := r.b[r.off]
	switch {
	case c <= mpPosFixintMax:
		r.off++
		return int64(c), true
	case c >= mpNegFixintMin:
		r.off++
		return int64(int8(c)), true
	}
	var v uint64
	var ok bool
	switch c {
	case mpUint8, mpInt8:
		v, ok = r.be(1)
		if ok && c == mpInt8 {
			return int64(int8(v)), true
		}
	case mpUint16, mpInt16:
		v, ok = r.be(2)
		if ok && c == mpInt16 {
			return int64(int16(v)), true
		}
	case mpUint32, mpInt32:
		v, ok = r.be(4)
		if ok && c == mpInt32 {
			return int64(int32(v)), true
		}
	case mpUint64, mpInt64:
		start := r.off
		v, ok = r.be(8)
		if ok && c == mpInt64 {
			return int64(v), true
		}
		if ok && v > math.MaxInt64 {
			r.off = start
			return 0, false
		}
	}
	return int64(v), ok
}

// uint reads a non-negative integer in any msgpack integer format.
func (r *reader) uint() (uint64, bool) {
	if r.need(1) && r.b[r.off] == mpUint64 {
		return r.be(8)
	}
	start := r.off
	v, ok := r.int()
	if !ok || v < 0 {
		r.off = start
		return 0, false
	}
	return uint64(v), true
}

// str reads a str, bin or nil value (nil as empty) and returns its bytes,
// aliasing b. Writers must use str and bin as envelope/ENVELOPE.md says; readers
// accept either because some msgpack libraries write one for the other.
func (r *reader) str() ([]byte, bool) {
	start, end, ok := strBounds(r.b, r.off)
	if !ok {
		return nil, false
	}
	r.off = end
	return r.b[start:end], true
}

// strBounds returns where the bytes of the str, bin or nil value at off
// in b start and end, checked against len(b).
func strBounds[T ~string | ~[]byte](b T, off int) (start, end int, ok bool) {
	if off >= len(b) {
		return 0, 0, false
	}
	c := b[off]
	var n, hdr int
	switch {
	case c&0xe0 == mpFixstr:
		n, hdr = int(c&0x1f), 1
	case c == mpNil:
		return off + 1, off + 1, true
	case c == mpStr8 || c == mpBin8:
		if len(b)-off < 2 {
			return 0, 0, false
		}
		n, hdr = int(b[off+1]), 2
	case c == mpStr16 || c == mpBin16:
		if len(b)-off < 3 {
			return 0, 0, false
		}
		n, hdr = int(b[off+1])<<8|int(b[off+2]), 3
	case c == mpStr32 || c == mpBin32:
		if len(b)-off < 5 {
			return 0, 0, false
		}
		n = int(uint32(b[off+1])<<24 | uint32(b[off+2])<<16 | uint32(b[off+3])<<8 | uint32(b[off+4]))
		hdr = 5
	default:
		return 0, 0, false
	}
	if uint64(n) > uint64(len(b)-off-hdr) {
		return 0, 0, false
	}
	return off + hdr, off + hdr + n, true
}

// arrayLen reads an array header. The length is checked against the bytes
// left (every element takes at least one), so callers may size work by it.
func (r *reader) arrayLen() (int, bool) {
	if !r.need(1) {
		return 0, false
	}
	start := r.off
	c := r.b[r.off]
	var n uint64
	ok := true
	switch {
	case c&0xf0 == mpFixarray:
		n = uint64(c & 0x0f)
		r.off++
	case c == mpArray16:
		n, ok = r.be(2)
	case c == mpArray32:
		n, ok = r.be(4)
	default:
		ok = false
	}
	if !ok || !r.need(n) {
		r.off = start
		return 0, false
	}
	return int(n), true
}

// skip steps over n complete msgpack values of any type. It walks nested
// arrays and maps with a counter rather than recursion, so no depth of
// nesting can exhaust the stack, and it gives up as soon as the values
// still owed outnumber the bytes left.
func (r *reader) skip(n uint64) bool {
	for ; n > 0; n-- {
		if !r.need(n) {
			return false
		}
		c := r.b[r.off]
		hdr := 1          // format byte and length field
		var size uint64   // bytes after hdr
		var values uint64 // nested values that follow hdr
		switch {
		case c <= mpPosFixintMax, c >= mpNegFixintMin, c == mpNil, c == mpFalse, c == mpTrue:
		case c&0xf0 == mpFixmap:
			values = 2 * uint64(c&0x0f)
		case c&0xf0 == mpFixarray:
			values = uint64(c & 0x0f)
		case c&0xe0 == mpFixstr:
			size = uint64(c & 0x1f)
		case c == mpUint8, c == mpInt8:
			size = 1
		case c == mpUint16, c == mpInt16:
			size = 2
		case c == mpUint32, c == mpInt32, c == mpFloat32:
			size = 4
		case c == mpUint64, c == mpInt64, c == mpFloat64:
			size = 8
		case c >= mpFixext1 && c <= mpFixext16:
			size = 1 + 1<<(c-mpFixext1) // type byte, then 1, 2, 4, 8 or 16 bytes
		case c == mpBin8, c == mpStr8, c == mpExt8:
			hdr = 2
		case c == mpBin16, c == mpStr16, c == mpExt16, c == mpArray16, c == mpMap16:
			hdr = 3
		case c == mpBin32, c == mpStr32, c == mpExt32, c == mpArray32, c == mpMap32:
			hdr = 5
		default: // mpNeverUsed
			return false
		}
		if hdr > 1 {
			l, ok := r.peek(hdr - 1)
			if !ok {
				return false
			}
			switch c {
			case mpExt8, mpExt16, mpExt32:
				size = l + 1 // type byte
			case mpArray16, mpArray32:
				values = l
			case mpMap16, mpMap32:
				values = 2 * l
			default:
				size = l
			}
		}
		if !r.need(uint64(hdr) + size) {
			return false
		}
		r.off += hdr + int(size)
		n += values
	}
	return true
}

// CompressMinBytes is the smallest body [Compress] compresses.
//
// Measured with klauspost gzip at the default level on 20,000 generated
// JSON API answers of 150-320 bytes (single products, users, orders and
// articles: ids, names, ISO timestamps, nested price objects, no filler),
// counting the 4 bytes the "gzip" coding adds to the envelope: gzip's
// fixed cost (an 18-byte frame plus the Huffman table of a block) means
// that no body under 184 bytes got 10% smaller (most come out as a stored
// block, 17-20% larger); from 188-191 bytes 43% of bodies saved at least
// 10%, from 192-195 69% (median saving 11%), from 200-203 89%, and from
// 220 bytes all of them (median 15%, 34 bytes; 28% at 300 bytes). 192 is
// the smallest threshold at which a typical body saves 10%; the bodies
// that do not are then left alone by the 1/8 rule. Level 9 instead of the
// default made 2 KB JSON pages only 1.7% smaller (731 to 719 bytes on
// average) for twice the time (13 to 26 µs per fill), so the default
// level stays.
const CompressMinBytes = 192

// ErrUnknownCoding is returned by [WriteBody] for a content coding it
// cannot decode.
var ErrUnknownCoding = errors.New("storage: unknown content coding")

// maxPooledBuf bounds the buffers kept in pools, so that one huge body
// does not pin its buffer for the life of the process.
const maxPooledBuf = 256 << 10

// Compress gzip-encodes e.Body in place when that pays: e.Coding is ""
// (identity), len(e.Body) >= [CompressMinBytes], the Content-Type in
// e.Header is not media that is already compressed (see below), and the
// result is at least 1/8 smaller than the body. It then sets e.Coding to
// "gzip" and e.CacheEncoded to true; otherwise it leaves e unchanged.
// The new body is a fresh slice; the old one is not modified.
//
// Already compressed media are image/* except image/svg+xml and
// image/bmp, video/*, audio/*, font/woff, font/woff2, the archive and
// compressed-stream types (zip, gzip, 7z, rar, zstd, bzip2, xz, brotli,
// and any +zip, +gzip or +zstd suffix) and application/octet-stream,
// which is mostly downloads of such files. Compress uses pooled
// [gzip.Writer]s at the default level, and stops as soon as the output
// grows past the 7/8 bound.
func Compress(e *Entry) {
	if e.Coding != "" || len(e.Body) < CompressMinBytes || compressedMedia(e.Header.Get("Content-Type")) {
		return
	}
	c := gzipWriters.Get().(*gzipWriter)
	defer c.release()
	c.out.buf = c.out.buf[:0]
	c.out.limit = len(e.Body) - len(e.Body)/8
	c.zw.Reset(&c.out)
	if _, err := c.zw.Write(e.Body); err != nil {
		return // errTooBig: not worth it
	}
	if err := c.zw.Close(); err != nil {
		return
	}
	e.Body = bytes.Clone(c.out.buf)
	e.Coding = "gzip"
	e.CacheEncoded = true
}

// Compressible reports whether the cache may compress e's body: it is
// identity-coded and its Content-Type is not media that is already
// compressed (the list [Compress] gives). Compressors other than
// [Compress], such as the dictionary compression of package httpcache,
// use it to apply the same rule.
func Compressible(e *Entry) bool {
	return e.Coding == "" && !compressedMedia(e.Header.Get("Content-Type"))
}

// gzipWriter is a pooled compressor and its output buffer.
type gzipWriter struct {
	zw  *gzip.Writer
	out limitedBuffer
}

var gzipWriters = sync.Pool{New: func() any {
	return &gzipWriter{zw: gzip.NewWriter(nil)}
}}

func (c *gzipWriter) release() {
	c.zw.Reset(nil)
	if cap(c.out.buf) > maxPooledBuf {
		c.out.buf = nil
	}
	gzipWriters.Put(c)
}

var errTooBig = errors.New("storage: compressed body not small enough")

// limitedBuffer is an in-memory writer that fails once it would hold more
// than limit bytes.
type limitedBuffer struct {
	buf   []byte
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > b.limit {
		return 0, errTooBig
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// compressedMedia reports whether a body of Content-Type ct is already
// compressed, so that gzip would only cost time.
func compressedMedia(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	typ, sub, _ := strings.Cut(ct, "/")
	switch typ {
	case "image":
		return sub != "svg+xml" && sub != "bmp"
	case "video", "audio":
		return true
	case "font":
		return sub == "woff" || sub == "woff2"
	case "application":
		switch sub {
		case "octet-stream", "zip", "gzip", "x-gzip", "x-7z-compressed",
			"x-rar-compressed", "vnd.rar", "zstd", "x-bzip2", "x-xz",
			"x-brotli", "font-woff", "java-archive",
			"vnd.android.package-archive":
			return true
		}
		return strings.HasSuffix(sub, "+zip") || strings.HasSuffix(sub, "+gzip") ||
			strings.HasSuffix(sub, "+zstd")
	}
	return false
}

// SupportedCoding reports whether [WriteBody] can decode a body in the
// content coding c, so that a caller can decide before it sends headers.
func SupportedCoding(c string) bool {
	return codingOf(c) != codingUnknown
}

type coding int

const (
	codingUnknown coding = iota
	codingIdentity
	codingGzip
	codingDeflate
	codingZstd
)

// codingOf classifies a content coding, case-insensitively; x-gzip is
// gzip (RFC 9110 section 8.4.1.3).
func codingOf(c string) coding {
	switch {
	case c == "" || strings.EqualFold(c, "identity"):
		return codingIdentity
	case strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip"):
		return codingGzip
	case strings.EqualFold(c, "deflate"):
		return codingDeflate
	case strings.EqualFold(c, "zstd"):
		return codingZstd
	}
	return codingUnknown
}

// WriteBody writes e.Body decoded to identity to w, for clients that do
// not accept e.Coding. It supports "" (and "identity"), "gzip" (and
// "x-gzip"), "deflate" and "zstd"; for any other coding it returns an
// error matching [ErrUnknownCoding] before writing anything
// ([SupportedCoding] tells in advance). "deflate" is the zlib format
// (RFC 9110 section 8.4.1.2); a raw deflate stream, which some servers
// send instead, is recognised and decoded too. zstd windows are limited
// to 8 MiB, as RFC 9659 allows.
//
// A body that does not decode returns an error matching [ErrCorrupt]; the
// part decoded before the fault has been written to w by then, so a
// caller that has sent its headers can only abort the response. An error
// from w is returned as it is. Decoders and the copy buffer are pooled, so
// a warm WriteBody allocates nothing.
func WriteBody(w io.Writer, e *Entry) error {
	switch codingOf(e.Coding) {
	case codingIdentity:
		_, err := w.Write(e.Body)
		return err
	case codingGzip:
		d := gzipReaders.Get().(*gzipReader)
		defer d.release()
		d.src.Reset(e.Body)
		if err := d.zr.Reset(&d.src); err != nil {
			return fmt.Errorf("%w: gzip body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, &d.zr, &d.buf, "gzip")
	case codingDeflate:
		d := deflateReaders.Get().(*deflateReader)
		defer d.release()
		d.src.Reset(e.Body)
		r, err := d.reset(e.Body)
		if err != nil {
			return fmt.Errorf("%w: deflate body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, r, &d.buf, "deflate")
	case codingZstd:
		d := zstdReaders.Get().(*zstdReader)
		defer d.release()
		if d.zr == nil {
			zr, err := zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1), // decode in this goroutine
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(8<<20))
			if err != nil {
				return fmt.Errorf("storage: zstd decoder: %w", err)
			}
			d.zr = zr
		}
		d.src.Reset(e.Body)
		if err := d.zr.Reset(&d.src); err != nil {
			return fmt.Errorf("%w: zstd body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, d.zr, &d.buf, "zstd")
	}
	return fmt.Errorf("%w %q", ErrUnknownCoding, e.Coding)
}

// copyBufSize is the size of the pooled buffers WriteBody copies through:
// one write to w per 16 KiB of decoded body.
const copyBufSize = 16 << 10

// copyDecoded copies r to w through buf, telling read faults (a corrupt
// body) from write faults (the client).
func copyDecoded(w io.Writer, r io.Reader, buf *[copyBufSize]byte, coding string) error {
	for {
		n, rerr := r.Read(buf[:])
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%w: %s body: %w", ErrCorrupt, coding, rerr)
		}
	}
}

// gzipReader is a pooled gzip decoder with its input and copy buffer.
type gzipReader struct {
	zr  gzip.Reader // the zero value is ready for Reset
	src bytes.Reader
	buf [copyBufSize]byte
}

var gzipReaders = sync.Pool{New: func() any { return new(gzipReader) }}

func (d *gzipReader) release() {
	d.src.Reset(nil) // do not keep the body alive from the pool
	gzipReaders.Put(d)
}

// deflateReader is a pooled zlib decoder and raw deflate decoder with
// their input and copy buffer; each decoder is made on first use.
type deflateReader struct {
	zr  io.ReadCloser // zlib, also a zlib.Resetter
	fr  io.ReadCloser // raw deflate, also a flate.Resetter
	src bytes.Reader
	buf [copyBufSize]byte
}

var deflateReaders = sync.Pool{New: func() any { return new(deflateReader) }}

// reset points the decoder that fits body at d.src: zlib when body starts
// with a zlib header (RFC 1950 section 2.2: compression method 8 and a
// check value making the first two bytes a multiple of 31), raw deflate
// otherwise.
func (d *deflateReader) reset(body []byte) (io.Reader, error) {
	if len(body) >= 2 && body[0]&0x0f == 8 && body[0]>>4 <= 7 && (uint(body[0])<<8|uint(body[1]))%31 == 0 {
		if d.zr == nil {
			zr, err := zlib.NewReader(&d.src)
			d.zr = zr
			return zr, err
		}
		return d.zr, d.zr.(zlib.Resetter).Reset(&d.src, nil)
	}
	if d.fr == nil {
		d.fr = flate.NewReader(&d.src)
		return d.fr, nil
	}
	return d.fr, d.fr.(flate.Resetter).Reset(&d.src, nil)
}

func (d *deflateReader) release() {
	d.src.Reset(nil)
	deflateReaders.Put(d)
}

// zstdReader is a pooled zstd decoder, made on first use, with its input
// and copy buffer. With a concurrency of 1 the decoder runs no goroutines,
// so a decoder the pool drops needs no Close.
type zstdReader struct {
	zr  *zstd.Decoder
	src bytes.Reader
	buf [copyBufSize]byte
}

var zstdReaders = sync.Pool{New: func() any { return new(zstdReader) }}

func (d *zstdReader) release() {
	if d.zr != nil {
		_ = d.zr.Reset(nil)
	}
	d.src.Reset(nil)
	zstdReaders.Put(d)
}
