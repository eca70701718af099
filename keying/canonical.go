package keying

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// formatVersion is the first byte of the canonical field encoding; change it
// whenever the encoding changes, so old and new fields never meet.
const formatVersion = 1

// Query flags in the canonical encoding.
const (
	rawName  = 1 << 0 // the name did not unescape and is kept as sent
	rawValue = 1 << 1 // the value did not unescape and is kept as sent
)

// Names of the request path entries of a subtree pattern's field. They hold
// a '/', so no path parameter has them.
const (
	pathName    = "/path"
	rawPathName = "/rawpath"
)

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
	flags          byte
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
// documentation) to b.
func (rt *Route) appendCanonical(b []byte, s *scratch, r *http.Request) []byte {
	b = append(b, formatVersion)

	method := r.Method
	if method == "" || method == http.MethodHead {
		method = http.MethodGet
	}
	b = appendStr(b, method)

	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	b = binary.AppendUvarint(b, uint64(len(host)))
	b = appendLower(b, host)

	n := len(rt.fieldParams)
	if rt.subtree {
		n += 2
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, name := range rt.fieldParams {
		b = appendStr(b, name)
		b = appendStr(b, r.PathValue(name))
	}
	if rt.subtree {
		// Names with a '/' cannot be parameter names.
		var path, rawPath string
		if r.URL != nil {
			path, rawPath = r.URL.Path, r.URL.RawPath
		}
		b = appendStr(b, pathName)
		b = appendStr(b, path)
		b = appendStr(b, rawPathName)
		b = appendStr(b, rawPath)
	}

	if rt.ignoreQuery || r.URL == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		s.parseQuery(r.URL.RawQuery, rt.allow)
		b = binary.AppendUvarint(b, uint64(len(s.pairs)))
		for _, p := range s.pairs {
			b = append(b, p.flags)
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
	return b
}

// parseQuery fills s.pairs with the query parameters of raw that allow keeps
// (all of them when allow is nil), sorted by name, then unflagged before
// flagged; the sort is stable, so repeated names keep their order.
func (s *scratch) parseQuery(raw string, allow map[string]struct{}) {
	s.pairs = s.pairs[:0]
	s.dec = s.dec[:0]
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if piece == "" {
			continue
		}
		name, value, _ := strings.Cut(piece, "=")
		p := qpair{n0: len(s.dec)}
		var ok bool
		if s.dec, ok = appendQueryUnescape(s.dec, name); !ok {
			s.dec = append(s.dec, name...)
			p.flags |= rawName
		}
		p.n1 = len(s.dec)
		if allow != nil {
			if _, in := allow[string(s.dec[p.n0:p.n1])]; !in || !ok {
				s.dec = s.dec[:p.n0]
				continue
			}
		}
		p.v0 = len(s.dec)
		if s.dec, ok = appendQueryUnescape(s.dec, value); !ok {
			s.dec = append(s.dec, value...)
			p.flags |= rawValue
		}
		p.v1 = len(s.dec)
		s.pairs = append(s.pairs, p)
	}
	s.sortPairs()
}

// sortPairs sorts s.pairs stably by name, then unflagged before flagged.
func (s *scratch) sortPairs() {
	less := func(a, b qpair) int {
		if c := bytes.Compare(s.dec[a.n0:a.n1], s.dec[b.n0:b.n1]); c != 0 {
			return c
		}
		return int(a.flags&rawName) - int(b.flags&rawName)
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

// appendLower appends s with ASCII letters lowercased. Other bytes are kept
// as they are (unlike [strings.ToLower], which maps every invalid UTF-8 byte
// to U+FFFD and so would make different hosts equal).
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
