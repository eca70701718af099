package envelope

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

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
// Content-Length, Content-Encoding, Cache-Status, Surrogate-Control),
// whatever the case of its name, and it refuses a
// status outside 200-599, and 206 Partial Content, which is never stored.
//
// Any malformed input returns an error matching [ErrCorrupt]: truncated
// or trailing bytes, wrong msgpack types, lengths beyond the input, fewer
// than ten elements, an odd number of header elements, a name or value
// table position past the end of its table, a date outside 0 to
// 253402300799 seconds, a status outside 200-599 or of 206 (the error
// names it), a negative duration or one that overflows [time.Duration], a
// coding that is not an RFC 9110 token. A first byte other than
// [Version] and [VersionDictionary] returns an error matching
// [ErrVersion]. On error e is left unchanged. Decode never panics, and
// allocates nothing in proportion to a length it has not checked against
// len(data). Dropping headers costs nothing for a name given as a
// position in the name table and one map lookup for a name given as a
// string; only an entry that holds such a header pays more.
//
// The elements are read by a pooled [msgpack.Decoder] over a pooled
// [bytes.Reader]. Elements after the tenth are stepped over by a walker
// of its own that bounds its work by the input's length and does not
// recurse, so that no nesting can exhaust the stack.
func Decode(data []byte, e *storage.Entry) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if data[0] != Version && data[0] != VersionDictionary {
		return fmt.Errorf("%w %d", ErrVersion, data[0])
	}
	d := getDecoder(data)
	defer d.release()
	return d.decode(e)
}

// decoder reads one envelope, data, through a msgpack.Decoder reading r.
// Its methods check every length against the bytes left before they
// trust it.
type decoder struct {
	dec  *msgpack.Decoder
	r    bytes.Reader
	data []byte
	// elems are the elements of the headers array, as scanHeaders found
	// them, for decodeHeader: the headers are read once.
	elems []headerElem
}

// maxPooledElems bounds the headers a pooled decoder keeps room for, so
// that one entry with very many headers does not pin its slice.
const maxPooledElems = 256

var decoders = sync.Pool{New: func() any { return new(decoder) }}

func getDecoder(data []byte) *decoder {
	d := decoders.Get().(*decoder)
	d.data = data
	d.r.Reset(data)
	d.dec = msgpack.GetDecoder()
	// A *bytes.Reader is an io.ByteScanner, so the decoder reads it
	// directly, without a buffer of its own: d.off is exact.
	d.dec.Reset(&d.r)
	return d
}

func (d *decoder) release() {
	msgpack.PutDecoder(d.dec)
	d.dec = nil
	d.r.Reset(nil) // do not keep data alive from the pool
	d.data = nil
	d.elems = d.elems[:0]
	if cap(d.elems) > maxPooledElems {
		d.elems = nil
	}
	decoders.Put(d)
}

// off is the offset in data of the next byte to read.
func (d *decoder) off() int { return len(d.data) - d.r.Len() }

// peek returns the msgpack code of the next value without reading it:
// what [msgpack.Decoder.PeekCode] returns, without its two calls
// through the io.ByteScanner interface (a read and an unread), which
// cost a tenth of a Decode.
func (d *decoder) peek() (byte, error) {
	off := d.off()
	if off >= len(d.data) {
		return 0, io.ErrUnexpectedEOF
	}
	return d.data[off], nil
}

// seek moves to offset off of data.
func (d *decoder) seek(off int) { _, _ = d.r.Seek(int64(off), io.SeekStart) }

// corrupt returns the ErrCorrupt error for a bad element at offset off,
// with the reason if there is one. The reason is text, not wrapped: a
// truncated entry must match ErrCorrupt, not io.EOF.
func corrupt(what string, off int, reason error) error {
	if reason == nil {
		return fmt.Errorf("%w: bad %s at byte %d", ErrCorrupt, what, off)
	}
	return fmt.Errorf("%w: bad %s at byte %d: %v", ErrCorrupt, what, off, reason)
}

func (d *decoder) decode(e *storage.Entry) error {
	d.seek(1) // the version byte
	start := d.off()
	n, err := d.arrayLen()
	if err != nil {
		return corrupt("envelope array", start, err)
	}
	if n < fields {
		return fmt.Errorf("%w: envelope has %d elements, want at least %d", ErrCorrupt, n, fields)
	}

	start = d.off()
	status, err := d.uint()
	if err != nil {
		return corrupt("status", start, err)
	}
	if !storedStatus(status) {
		return fmt.Errorf("%w: status %d is never stored (want 200-599, not 206)", ErrCorrupt, status)
	}

	// The headers are only checked here; they are turned into strings
	// once everything else has been checked, so that a corrupt envelope
	// costs no allocation and leaves e as it was.
	start = d.off()
	hn, err := d.arrayLen()
	if err == nil && hn%2 != 0 {
		err = fmt.Errorf("odd length %d", hn)
	}
	if err != nil {
		return corrupt("headers", start, err)
	}
	hStart := d.off()
	var hs headerScan
	if off, err := d.scanHeaders(hn/2, &hs); err != nil {
		return corrupt("header", off, err)
	}
	hEnd := d.off()

	start = d.off()
	stored, err := d.int()
	if err != nil {
		return corrupt("stored", start, err)
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
		start = d.off()
		v, err := d.uint()
		if err == nil && v > uint64(f.limit) {
			err = fmt.Errorf("%d overflows time.Duration", v)
		}
		if err != nil {
			return corrupt(f.name, start, err)
		}
		durs[i] = time.Duration(v) * f.unit
	}
	start = d.off()
	coding, err := d.bytes()
	if err == nil && !isToken(coding) {
		err = fmt.Errorf("%q is not a token", coding)
	}
	if err != nil {
		return corrupt("coding", start, err)
	}
	start = d.off()
	flags, err := d.uint()
	if err != nil {
		return corrupt("flags", start, err)
	}
	start = d.off()
	body, err := d.bytes()
	if err != nil {
		return corrupt("body", start, err)
	}
	var date int64
	extra := n - fields
	if c, err := d.peek(); extra > 0 && err == nil && isInt(c) {
		// Element 10: the origin's Date, Unix seconds. Anything else
		// there is ignored, as every extra element was before it was
		// defined (ENVELOPE.md, Evolution).
		at := d.off()
		if v, err := d.int(); err == nil && v > 0 && v <= maxHTTPDate {
			date, extra = v, extra-1
		} else {
			d.seek(at)
		}
	}
	end, ok := skipValues(d.data, d.off(), uint64(extra))
	if !ok {
		return corrupt("extra element", end, nil)
	}
	if end != len(d.data) {
		return corrupt("trailing bytes", end, nil)
	}

	e.Header = d.decodeHeader(e.Header, hStart, hEnd, hn/2, &hs)
	e.Status = int(status)
	e.Stored = time.UnixMilli(stored).UTC()
	e.Fresh, e.StaleWhileRevalidate, e.StaleIfError, e.OriginTime = durs[0], durs[1], durs[2], durs[3]
	e.Coding = internCoding(coding)
	e.CacheEncoded = flags&flagCacheEncoded != 0
	e.Body = body
	e.Date = time.Time{}
	if date > 0 {
		e.Date = time.Unix(date, 0).UTC()
	}
	return nil
}

// isInt reports whether the msgpack code c starts an integer.
func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || msgpcode.Uint8 <= c && c <= msgpcode.Int64
}

// isPosition reports whether the msgpack code c is a positive fixint,
// the only form of a table position.
func isPosition(c byte) bool {
	return c <= msgpcode.PosFixedNumHigh
}

// int reads an integer in any msgpack integer format that fits an int64.
// (The msgpack.Decoder reads nil as 0 and a uint64 past the int64 range
// as a negative number; both are refused here.)
func (d *decoder) int() (int64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if !isInt(c) {
		return 0, fmt.Errorf("msgpack code %#x is not an integer", c)
	}
	if c == msgpcode.Uint64 {
		v, err := d.dec.DecodeUint64()
		if err == nil && v > math.MaxInt64 {
			return 0, fmt.Errorf("%d overflows int64", v)
		}
		return int64(v), err
	}
	return d.dec.DecodeInt64()
}

// uint reads a non-negative integer in any msgpack integer format.
func (d *decoder) uint() (uint64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c == msgpcode.Uint64 {
		return d.dec.DecodeUint64()
	}
	v, err := d.int()
	if err == nil && v < 0 {
		return 0, fmt.Errorf("negative %d", v)
	}
	return uint64(v), err
}

// position reads a table position that the caller has peeked: a
// positive fixint is one byte, its own value.
func (d *decoder) position() byte {
	c, _ := d.r.ReadByte()
	return c
}

// bytes reads a str, bin or nil value (nil as empty) and returns its
// bytes, aliasing data, with the capacity cut to their length. Writers
// must use str and bin as ENVELOPE.md says; readers accept either
// because some msgpack libraries write one for the other. It does not
// use the Decoder's DecodeBytes, which copies.
func (d *decoder) bytes() ([]byte, error) {
	start, end, err := d.bytesBounds()
	if err != nil {
		return nil, err
	}
	return d.data[start:end:end], nil
}

// bytesBounds reads a str, bin or nil value and returns where its bytes
// start and end in data.
func (d *decoder) bytesBounds() (start, end int, err error) {
	n, err := d.dec.DecodeBytesLen()
	switch {
	case err != nil:
		return 0, 0, err
	case n == -1: // nil
		n = 0
	case n < 0 || n > d.r.Len(): // n < 0: a str32 length past an int on 32-bit platforms
		return 0, 0, fmt.Errorf("length %d past the end", uint32(n))
	}
	start = d.off()
	d.seek(start + n)
	return start, start + n, nil
}

// arrayLen reads an array header. The length is checked against the
// bytes left (every element takes at least one), so callers may size
// work by it.
func (d *decoder) arrayLen() (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	if c == msgpcode.Nil { // which DecodeArrayLen accepts, as -1
		return 0, fmt.Errorf("msgpack code %#x is not an array", c)
	}
	n, err := d.dec.DecodeArrayLen()
	if err == nil && (n < 0 || n > d.r.Len()) {
		err = fmt.Errorf("length %d past the end", uint32(n))
	}
	return n, err
}

// storedStatus reports whether an entry may have the status s: a final
// status that net/http can write (200-599), and not 206 Partial Content,
// which is never stored (policy.Policy.Validate refuses it).
func storedStatus(s uint64) bool {
	return s >= 200 && s <= 599 && s != http.StatusPartialContent
}

// headerScan is what scanHeaders learns about the headers array.
type headerScan struct {
	strs  bool // some element is a string
	dates int  // how many values are dates given as integers
}

// headerElem is one element of the headers array, a name or a value, as
// scanHeaders read it.
type headerElem struct {
	kind       elemKind
	v          int64 // the table position, or the date in Unix seconds
	start, end int   // where the bytes of a string are in data
}

type elemKind uint8

const (
	elemPosition elemKind = iota // a position in headerNames or headerValues
	elemString
	elemDate // a date given as an integer
)

// scanHeaders checks the pairs name/value pairs of the headers array,
// steps over them and appends them to d.elems. Names are strings or
// positions in headerNames; values of date names are strings or
// integers from 0 to maxHTTPDate (Unix seconds), values of other names
// strings or positions in headerValues. Anything else, including a
// position past the end of its table, returns an error and the offset
// of the offending element.
func (d *decoder) scanHeaders(pairs int, hs *headerScan) (int, error) {
	d.elems = d.elems[:0]
	for range pairs {
		start := d.off()
		c, err := d.peek()
		if err != nil {
			return start, err
		}
		var date bool
		if isPosition(c) {
			if int(c) >= len(headerNames) {
				return start, fmt.Errorf("name position %d past the table", c)
			}
			date = c == nameLastModified || c == nameExpires
			d.elems = append(d.elems, headerElem{kind: elemPosition, v: int64(d.position())})
		} else {
			from, to, err := d.bytesBounds()
			if err != nil {
				return start, err
			}
			hs.strs = true
			date = isDateName(d.data[from:to])
			d.elems = append(d.elems, headerElem{kind: elemString, start: from, end: to})
		}

		start = d.off()
		c, err = d.peek()
		if err != nil {
			return start, err
		}
		switch {
		case date && isInt(c):
			v, err := d.int()
			if err == nil && (v < 0 || v > maxHTTPDate) {
				err = fmt.Errorf("date %d out of range", v)
			}
			if err != nil {
				return start, err
			}
			hs.dates++
			d.elems = append(d.elems, headerElem{kind: elemDate, v: v})
		case !date && isPosition(c):
			if int(c) >= len(headerValues) {
				return start, fmt.Errorf("value position %d past the table", c)
			}
			d.elems = append(d.elems, headerElem{kind: elemPosition, v: int64(d.position())})
		default:
			from, to, err := d.bytesBounds()
			if err != nil {
				return start, err
			}
			hs.strs = true
			d.elems = append(d.elems, headerElem{kind: elemString, start: from, end: to})
		}
	}
	return 0, nil
}

// decodeHeader builds the header from the elements of the headers array
// between hStart and hEnd, which scanHeaders checked, described in hs
// and left in d.elems: pairs name/value pairs. Strings are sliced out of
// one string that holds a copy of those bytes (if any element is a
// string) followed by the text of every date, and all values share one
// backing array, each name's run capped so that appending to one cannot
// overwrite another: besides the map, at most two allocations for any
// number of headers, and one when every name and value is in the tables.
func (d *decoder) decodeHeader(h http.Header, hStart, hEnd, pairs int, hs *headerScan) http.Header {
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
		copied = hEnd - hStart
	}
	// text is allocated once, at its final size: the strings taken from
	// it as it grows stay valid, and never change, as it only appends.
	var text strings.Builder
	text.Grow(copied + hs.dates*httpDateLen)
	text.Write(d.data[hStart : hStart+copied])
	// str is the string at start:end of data, from the copy.
	str := func(el headerElem) string {
		return text.String()[el.start-hStart : el.end-hStart]
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
	drop := false
	for i := range pairs {
		var k string
		if el := d.elems[2*i]; el.kind == elemPosition {
			k = headerNames[el.v]
			drop = drop || !tableNameStorable[el.v]
		} else {
			k = str(el)
			if !isCanonical(k) {
				k = textproto.CanonicalMIMEHeaderKey(k)
			}
			drop = drop || !storable(k)
		}
		if i == 0 || k != name {
			flush(i)
			if i > 0 && k < name {
				sorted = false
			}
			run, name = i, k
		}

		switch el := d.elems[2*i+1]; el.kind {
		case elemDate:
			var buf [httpDateLen]byte
			text.Write(appendHTTPDate(buf[:0], el.v))
			s := text.String()
			vals[i] = s[len(s)-httpDateLen:]
		case elemPosition:
			vals[i] = headerValues[el.v]
		default:
			vals[i] = str(el)
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
	case DictionaryCoding:
		return DictionaryCoding
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
