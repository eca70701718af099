package keying

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// formatVersion is the first byte of the canonical field encoding; change it
// whenever the encoding changes, so old and new fields never meet.
//
// Version 2 added the scheme and the request path, and keyed the host as
// sent and the query as [net/url.ParseQuery] parses it; version 3 keys the
// request target and the kept query exactly as sent.
const formatVersion = 3

// scratch holds the buffers one Key call needs; they are pooled so that a
// cache hit allocates only the two key strings.
type scratch struct {
	buf []byte // the bucket, then the canonical field encoding
	dec []byte // a decoded query name, then the kept query
}

// maxPooled bounds the buffers kept in the pool, so that one huge request
// does not pin its memory.
const maxPooled = 64 << 10

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) put() {
	if cap(s.buf) > maxPooled || cap(s.dec) > maxPooled {
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
	b = appendStr(b, RequestTarget(r))

	b = binary.AppendUvarint(b, uint64(len(rt.fieldParams)))
	for _, name := range rt.fieldParams {
		b = appendStr(b, name)
		b = appendStr(b, r.PathValue(name))
	}

	raw, kept, ok := rt.keptQueryParts(s, r)
	if !ok {
		return b, false
	}
	if kept != nil {
		b = binary.AppendUvarint(b, uint64(len(kept)))
		b = append(b, kept...) // as appendStr would, without a string of it
	} else {
		b = appendStr(b, raw)
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

// RequestTarget returns the request target of r as the client sent it,
// up to its query: the path of an origin-form target ("/items/1"), the
// scheme, authority and path of an absolute-form one
// ("http://user@host/items/1"), the whole of any other ("*"). It is the
// part of r.RequestURI, which a server sets to the request line's target,
// before any '?'. A handler sees it before any rewriting
// (http.StripPrefix, say), so two requests whose targets differ never
// share a field, whatever the router made of them. For requests not read
// by a server (RequestURI empty) it is r.URL's escaped path.
func RequestTarget(r *http.Request) string {
	u := r.RequestURI
	if u == "" {
		if r.URL == nil {
			return ""
		}
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return u
}

// keptQuery returns the query the field holds: r's raw query exactly as
// sent when the route keeps every parameter, the raw pieces of the
// parameters the allow list keeps, in the order they were sent and joined
// by '&', or "" when the route ignores the query. A handler that reads the
// raw query (r.URL.RawQuery, r.RequestURI) sees no more than the field
// holds of the parameters it keys. ok is false for a query that
// [net/url.ParseQuery] rejects: see [ErrQuery].
func (rt *Route) keptQuery(s *scratch, r *http.Request) (query string, ok bool) {
	raw, kept, ok := rt.keptQueryParts(s, r)
	if kept != nil {
		return string(kept), ok
	}
	return raw, ok
}

// keptQueryParts is keptQuery without a copy: the raw query when the
// route keeps it whole, or the kept pieces in s's buffer when it has an
// allow list (kept, valid until s is reused).
func (rt *Route) keptQueryParts(s *scratch, r *http.Request) (raw string, kept []byte, ok bool) {
	if rt.ignoreQuery || r.URL == nil {
		return "", nil, true
	}
	raw = r.URL.RawQuery
	if !s.checkQuery(raw, rt.allow) {
		return "", nil, false
	}
	if rt.allow == nil {
		return raw, nil, true
	}
	return "", s.dec, true // nil or empty: the same field as raw ""
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

// checkQuery reports whether [net/url.ParseQuery] parses raw without an
// error (no piece with ';', no malformed escape, no more pieces than its
// limit): otherwise the handler's [net/url.URL.Query] drops pieces or
// everything, and [http.Request.ParseForm] reports the error, so no key
// would match what the handler sees. With an allow list, it leaves in
// s.dec the raw pieces whose decoded name the list holds, in order,
// joined by '&'.
func (s *scratch) checkQuery(raw string, allow map[string]struct{}) bool {
	s.dec = s.dec[:0]
	if raw == "" {
		return true
	}
	if n := strings.Count(raw, "&") + 1; n > verifyAbove() {
		if _, err := url.ParseQuery(raw); err != nil {
			return false
		}
	}
	kept := 0 // bytes of s.dec holding kept pieces
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
		if !validEscapes(value) {
			return false
		}
		if allow == nil {
			if !validEscapes(name) {
				return false
			}
			continue
		}
		var ok bool
		s.dec = s.dec[:kept]
		if s.dec, ok = appendQueryUnescape(s.dec, name); !ok {
			return false
		}
		_, keep := allow[string(s.dec[kept:])]
		s.dec = s.dec[:kept]
		if keep {
			if kept > 0 {
				s.dec = append(s.dec, '&')
			}
			s.dec = append(s.dec, piece...)
			kept = len(s.dec)
		}
	}
	s.dec = s.dec[:kept]
	return true
}

// validEscapes reports whether s unescapes as [net/url.QueryUnescape]
// does, without an error.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
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
