package keying

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// formatVersion is the first byte of the canonical field encoding; change it
// whenever the encoding changes, so old and new fields never meet.
//
// Version 2 added the scheme and the request path, keys the host as sent
// and the query as [net/url.ParseQuery] parses it.
const formatVersion = 2

// scratch holds the buffers one Key call needs; they are pooled so that a
// cache hit allocates only the two key strings.
type scratch struct {
	buf   []byte  // the bucket, then the canonical field encoding
	dec   []byte  // decoded query names and values
	pairs []qpair // query parameters, indexes into dec
}

// qpair is one query parameter: its name is dec[n0:n1], its value dec[v0:v1].
type qpair struct {
	n0, n1, v0, v1 int
}

// maxPooled bounds the buffers kept in the pool, so that one huge request
// does not pin its memory.
const maxPooled = 64 << 10

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) put() {
	if cap(s.buf) > maxPooled || cap(s.dec) > maxPooled || cap(s.pairs) > maxPooled/32 {
		return
	}
	scratchPool.Put(s)
}

// appendCanonical appends the canonical field encoding of r (see the package
// documentation) to b. It reports false, with b in an unspecified state,
// when the query is one that [net/url.ParseQuery] rejects: the handler would
// then see something other than the parameters keyed here.
func (rt *Route) appendCanonical(b []byte, s *scratch, r *http.Request) ([]byte, bool) {
	b = append(b, formatVersion)

	method := r.Method
	if method == "" || method == http.MethodHead {
		method = http.MethodGet
	}
	b = appendStr(b, method)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	b = appendStr(b, scheme)
	b = appendStr(b, r.Host)
	b = appendStr(b, RequestPath(r))

	b = binary.AppendUvarint(b, uint64(len(rt.fieldParams)))
	for _, name := range rt.fieldParams {
		b = appendStr(b, name)
		b = appendStr(b, r.PathValue(name))
	}

	if rt.ignoreQuery || r.URL == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		if !s.parseQuery(r.URL.RawQuery, rt.allow) {
			return b, false
		}
		b = binary.AppendUvarint(b, uint64(len(s.pairs)))
		for _, p := range s.pairs {
			b = binary.AppendUvarint(b, uint64(p.n1-p.n0))
			b = append(b, s.dec[p.n0:p.n1]...)
			b = binary.AppendUvarint(b, uint64(p.v1-p.v0))
			b = append(b, s.dec[p.v0:p.v1]...)
		}
	}

	b = binary.AppendUvarint(b, uint64(len(rt.vary)))
	for _, name := range rt.vary {
		b = appendStr(b, name)
		values := r.Header[name]
		if len(values) == 0 {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = appendStr(b, v)
		}
	}
	return b, true
}

// RequestPath returns the path of r as the client sent it: the path of
// r.RequestURI, which a server sets to the request line's target. It is
// what a handler sees before any rewriting (http.StripPrefix, say): two
// requests whose paths differ never share a field, whatever the router
// made of them. For requests not read by a server (RequestURI empty) it is
// r.URL's escaped path.
func RequestPath(r *http.Request) string {
	u := r.RequestURI
	switch {
	case u == "":
		if r.URL == nil {
			return ""
		}
		return r.URL.EscapedPath()
	case u[0] == '/':
	case strings.Contains(u, "://"):
		// absolute-form: scheme://authority/path?query
		_, u, _ = strings.Cut(u, "://")
		if i := strings.IndexAny(u, "/?"); i >= 0 && u[i] == '/' {
			u = u[i:]
		} else {
			u = ""
		}
	default:
		return u // "*" or authority-form: kept whole
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return u
}

// verifyAbove is the number of query pieces above which a query is also
// parsed with [net/url.ParseQuery], whose limit on the number of pieces
// (10,000 by default) a GODEBUG setting changes; below it the limit is
// known not to apply (see queryLimitProbe).
var verifyAbove = sync.OnceValue(queryLimitProbe)

// probePieces is how many query pieces queryLimitProbe checks net/url
// accepts.
const probePieces = 64

// queryLimitProbe returns probePieces if [net/url.ParseQuery] accepts a
// query of that many pieces in this process, else 0: every query is then
// checked against net/url itself.
func queryLimitProbe() int {
	if _, err := url.ParseQuery(strings.Repeat("a&", probePieces-1) + "a"); err != nil {
		return 0
	}
	return probePieces
}

// parseQuery fills s.pairs with the query parameters of raw that allow keeps
// (all of them when allow is nil), sorted by name; the sort is stable, so
// repeated names keep their order. It parses exactly as
// [net/url.ParseQuery] does and reports false where that returns an error
// (a piece with ';', a malformed escape, more pieces than its limit): the
// handler's [net/url.URL.Query] then drops pieces or everything, and
// [http.Request.ParseForm] reports the error, so no key would match what
// the handler sees.
func (s *scratch) parseQuery(raw string, allow map[string]struct{}) bool {
	s.pairs = s.pairs[:0]
	s.dec = s.dec[:0]
	if raw == "" {
		return true
	}
	if n := strings.Count(raw, "&") + 1; n > verifyAbove() {
		if _, err := url.ParseQuery(raw); err != nil {
			return false
		}
	}
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if strings.IndexByte(piece, ';') >= 0 {
			return false
		}
		if piece == "" {
			continue
		}
		name, value, _ := strings.Cut(piece, "=")
		p := qpair{n0: len(s.dec)}
		var ok bool
		if s.dec, ok = appendQueryUnescape(s.dec, name); !ok {
			return false
		}
		p.n1 = len(s.dec)
		keep := true
		if allow != nil {
			_, keep = allow[string(s.dec[p.n0:p.n1])]
		}
		p.v0 = len(s.dec)
		if s.dec, ok = appendQueryUnescape(s.dec, value); !ok {
			return false
		}
		p.v1 = len(s.dec)
		if !keep {
			s.dec = s.dec[:p.n0]
			continue
		}
		s.pairs = append(s.pairs, p)
	}
	s.sortPairs()
	return true
}

// sortPairs sorts s.pairs stably by name.
func (s *scratch) sortPairs() {
	less := func(a, b qpair) int {
		return bytes.Compare(s.dec[a.n0:a.n1], s.dec[b.n0:b.n1])
	}
	ps := s.pairs
	if len(ps) > 12 {
		slices.SortStableFunc(ps, less)
		return
	}
	// Insertion sort: stable, and cheapest for the few parameters of a
	// typical query.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && less(ps[j-1], ps[j]) > 0; j-- {
			ps[j-1], ps[j] = ps[j], ps[j-1]
		}
	}
}

// appendQueryUnescape appends s unescaped as [net/url.QueryUnescape] does ('+'
// is a space, "%XX" a byte) and reports true, or leaves dst as it was and
// reports false when s holds a malformed escape.
func appendQueryUnescape(dst []byte, s string) ([]byte, bool) {
	i := 0
	for i < len(s) && s[i] != '%' && s[i] != '+' {
		i++
	}
	if i == len(s) {
		return append(dst, s...), true
	}
	for j := i; j < len(s); j++ {
		if s[j] == '%' {
			if j+2 >= len(s) || !isHex(s[j+1]) || !isHex(s[j+2]) {
				return dst, false
			}
			j += 2
		}
	}
	dst = append(dst, s[:i]...)
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		case '+':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// appendStr appends s length-prefixed.
func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
