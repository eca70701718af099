package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// rangeKind is how a Range request is answered from a complete
// representation.
type rangeKind int

const (
	// rangeFull sends the whole representation as 200: there is no Range,
	// or one the cache does not serve (several ranges, another unit, a
	// syntax error) or whose If-Range failed.
	rangeFull rangeKind = iota
	// rangePartial sends one range as 206.
	rangePartial
	// rangeUnsatisfiable sends 416.
	rangeUnsatisfiable
)

// evalRange decides how to answer r's Range header for a representation of
// size bytes whose validators are etag (the ETag value the client would get
// with a 200, already weakened when the cache changed the bytes; "" if
// none), lastModified and date (the Last-Modified and Date header values
// the client would get; "" if none). It returns the byte range [start, end]
// (inclusive) for rangePartial, and zeros otherwise.
//
// Only a single byte range is served; anything else the cache may ignore,
// and then answers with the whole representation. The caller evaluates
// the other preconditions first: Range applies only where the response
// without it would be a 200 (RFC 9110 section 14.2), never to a 304.
func evalRange(r *http.Request, size int64, etag, lastModified, date string) (start, end int64, kind rangeKind) {
	// RFC 9110 section 14.2: a server MUST ignore Range for methods other
	// than GET, the only one for which range handling is defined.
	if r.Method != http.MethodGet {
		return 0, 0, rangeFull
	}
	// Two Range field lines are one list of several ranges (section 5.3):
	// ignored like any other multi-range request (section 14.2: a server
	// MAY ignore Range).
	field := r.Header["Range"]
	if len(field) != 1 {
		return 0, 0, rangeFull
	}
	start, end, kind = parseRange(field[0], size)
	if kind == rangeFull {
		return 0, 0, rangeFull
	}
	// Section 13.1.5: a Range that would be served is ignored unless the
	// If-Range condition, when present, is true. Without a Range (above),
	// If-Range is never looked at, as that section requires.
	if ir, ok := r.Header["If-Range"]; ok && !ifRangeMatches(ir, etag, lastModified, date) {
		return 0, 0, rangeFull
	}
	return start, end, kind
}

// parseRange parses one Range field value (RFC 9110 section 14.1.1) for a
// representation of size bytes and decides, by section 14.1.2, whether
// its single range is satisfiable. It returns rangeFull for a value the
// cache does not serve: another unit, several ranges, or invalid syntax.
func parseRange(value string, size int64) (start, end int64, kind rangeKind) {
	// Section 14.1: range unit names are case-insensitive. Only "bytes"
	// is served; section 14.2: a Range with a unit the server does not
	// understand MUST be ignored. The grammar has no whitespace around "=".
	unit, set, ok := strings.Cut(strings.Trim(value, " \t"), "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return 0, 0, rangeFull
	}
	// Section 14.1.1: range-set = 1#range-spec. Section 5.6.1.2: list
	// elements may have whitespace around the commas, and empty elements
	// are ignored; at least one range-spec is required.
	var spec string
	for set != "" {
		var elem string
		elem, set, _ = strings.Cut(set, ",")
		elem = strings.Trim(elem, " \t")
		if elem == "" {
			continue
		}
		if spec != "" {
			// Several ranges: ignored (section 14.2: a server MAY ignore
			// Range), so that the client gets a 200.
			return 0, 0, rangeFull
		}
		spec = elem
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		// No range-spec, or one without "-": invalid, so ignored
		// (section 14.2).
		return 0, 0, rangeFull
	}
	if first == "" {
		// Section 14.1.1: suffix-range = "-" suffix-length.
		n, ok := parseDigits(last)
		if !ok {
			return 0, 0, rangeFull
		}
		// Section 14.1.2: a suffix-range is satisfiable only with a
		// non-zero suffix-length, even for an empty representation; but
		// section 14.4's incl-range cannot describe zero bytes, so no 206
		// can carry it, and section 14.2 lets a server ignore the Range:
		// the empty representation goes out whole, as a 200.
		if n == 0 {
			return 0, 0, rangeUnsatisfiable
		}
		if size == 0 {
			return 0, 0, rangeFull
		}
		// Section 14.1.2: if the representation is shorter than the
		// suffix-length, the entire representation is used.
		return max(size-n, 0), size - 1, rangePartial
	}
	// Section 14.1.1: int-range = first-pos "-" [ last-pos ].
	start, ok = parseDigits(first)
	if !ok {
		return 0, 0, rangeFull
	}
	end = size - 1 // "first-" runs to the end
	if last != "" {
		if end, ok = parseDigits(last); !ok || end < start {
			// Section 14.1.1: an int-range whose last-pos is less than its
			// first-pos is invalid; section 14.2: a server MAY ignore a
			// Range with an invalid ranges-specifier.
			return 0, 0, rangeFull
		}
	}
	// Section 14.1.2: an int-range is satisfiable only if its first-pos is
	// less than the current length of the representation (never so for
	// an empty one).
	if start >= size {
		return 0, 0, rangeUnsatisfiable
	}
	// Section 14.1.2: a last-pos absent, or at or past the end, means the
	// remainder of the representation.
	return start, min(end, size-1), rangePartial
}

// parseDigits parses 1*DIGIT (RFC 9110 section 14.1.1) as a non-negative
// int64. Unlike [strconv.ParseInt] it refuses signs, and like it, values
// that overflow.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// ifRangeMatches evaluates the If-Range field lines ir against the
// representation's validators (RFC 9110 section 13.1.5). Anything but one
// valid value that matches, including a weak validator, is false.
func ifRangeMatches(ir []string, etag, lastModified, date string) bool {
	if len(ir) != 1 {
		return false // If-Range = entity-tag / HTTP-date: one value
	}
	v := strings.Trim(ir[0], " \t")
	// Section 13.1.5: an entity-tag is told from an HTTP-date by its first
	// characters; a weak one ("W/") never matches, since the comparison is
	// strong.
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		// Section 8.8.3.2: strong comparison, both tags strong and their
		// opaque-tags equal character by character.
		return isOpaqueTag(v) && v == etag
	}
	// Section 13.1.5: a date matches only if it is a strong validator
	// (section 8.8.2.2) and exactly the Last-Modified value.
	if lastModified == "" || date == "" {
		return false
	}
	since, err := http.ParseTime(v)
	if err != nil {
		return false
	}
	modified, err := http.ParseTime(lastModified)
	if err != nil || !modified.Equal(since) {
		return false
	}
	// Section 8.8.2.2: a cache may deem its entry's Last-Modified strong
	// when the entry has a Date at least one second after it.
	sent, err := http.ParseTime(date)
	return err == nil && sent.Sub(modified) >= time.Second
}

// isOpaqueTag reports whether tag is a strong entity-tag, an opaque-tag in
// the grammar of RFC 9110 section 8.8.3: DQUOTE *etagc DQUOTE, where etagc
// is any visible or obs-text byte but DQUOTE.
func isOpaqueTag(tag string) bool {
	if len(tag) < 2 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		return false
	}
	for i := 1; i < len(tag)-1; i++ {
		if c := tag[i]; c <= ' ' || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}

// contentRange formats the Content-Range value for evalRange's answer
// (RFC 9110 section 14.4): "bytes start-end/size" for rangePartial,
// "bytes */size" for rangeUnsatisfiable (section 15.5.17), and "" for
// rangeFull, which sends no Content-Range.
func contentRange(start, end, size int64, kind rangeKind) string {
	var buf [64]byte
	b := append(buf[:0], "bytes "...)
	switch kind {
	case rangePartial:
		b = strconv.AppendInt(b, start, 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, end, 10)
	case rangeUnsatisfiable:
		b = append(b, '*')
	default:
		return ""
	}
	b = append(b, '/')
	return string(strconv.AppendInt(b, size, 10))
}
