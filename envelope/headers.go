package envelope

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// unstored are the response headers that are never stored, by canonical
// name, besides those named by Connection and the trailer declarations.
// [StorableHeader] drops them before an entry is stored and [Decode]
// drops them from an entry read back, whoever wrote it: [storable] and
// [listedNames] are the one definition both use.
var unstored = map[string]bool{
	// Hop-by-hop (RFC 9110 section 7.6.1, and the pre-standard ones).
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	// Meant for one client only; a shared cache never stores it.
	"Set-Cookie":  true,
	"Set-Cookie2": true,
	// Describe one transfer, not the resource: the cache writes them again
	// on every hit (Date and Content-Length from the entry, Age from
	// Stored), and the body's coding is kept in storage.Entry.Coding.
	"Date":             true,
	"Age":              true,
	"Content-Length":   true,
	"Content-Encoding": true,
	// The cache's own status (RFC 9211), set per response.
	"Cache-Status": true,
	// Addressed to this cache (its lifetime), never sent on: the
	// middleware takes it off the response before it stores or sends it,
	// so a stored one can only come from another writer. (Surrogate-Key,
	// the entry's tags, is stored, so that a revalidation keeps them; a
	// server never sends it on.)
	"Surrogate-Control": true,
}

// storable reports whether a response header of the canonical name may
// be stored, as far as the name alone decides: it is not in unstored
// and is not a trailer set with the [http.TrailerPrefix] convention.
// Names listed by Connection or Trailer ([listedNames]) are dropped too.
func storable(name string) bool {
	return !unstored[name] && !strings.HasPrefix(name, http.TrailerPrefix)
}

// listedNames appends to dst the canonical names that the Connection and
// Trailer values of h list, and returns it: headers that are hop-by-hop
// or trailers of this one response. Keys of h are matched in any case,
// as the names they list are.
func listedNames(dst []string, h http.Header) []string {
	for k, vs := range h {
		if !asciiEqualFold(k, "Connection") && !asciiEqualFold(k, "Trailer") {
			continue
		}
		for _, v := range vs {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					dst = append(dst, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
	}
	return dst
}

// keepHeader reports whether a header of the canonical name is kept in a
// response whose Connection and Trailer values list the names listed.
func keepHeader(name string, listed []string) bool {
	return storable(name) && !slices.Contains(listed, name)
}

// dropUnstorable deletes from h, whose names are canonical, every header
// that [StorableHeader] would drop.
func dropUnstorable(h http.Header) {
	listed := listedNames(nil, h)
	for name := range h {
		if !keepHeader(name, listed) {
			delete(h, name)
		}
	}
}

// StorableHeader returns the subset of h worth storing in a [storage.Entry], with
// canonical names, as a new header that shares nothing with h.
//
// It drops the hop-by-hop headers (Connection and every header it names,
// Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization,
// TE, Trailer, Transfer-Encoding, Upgrade), trailers (the headers Trailer
// names, and those set with the [http.TrailerPrefix] convention),
// Set-Cookie and Set-Cookie2, Date, Age, Content-Length, Content-Encoding
// (the caller records the coding in [storage.Entry.Coding]), Cache-Status,
// Surrogate-Control (addressed to this cache, never sent on), and names
// without values. Everything else is kept, including X-Cache style
// headers, which belong to the origin, and Surrogate-Key: the tags the
// entry is stored under, which a server keeps but never sends on. [Decode] drops the
// same headers from an entry read back. Keys of h that differ only in
// case are merged, their values in no particular order.
func StorableHeader(h http.Header) http.Header {
	listed := listedNames(nil, h) // usually none, and then no allocation
	keep := func(name string) bool { return keepHeader(name, listed) }

	n := 0
	for k, vs := range h {
		if len(vs) > 0 && keep(textproto.CanonicalMIMEHeaderKey(k)) {
			n += len(vs)
		}
	}
	out := make(http.Header, len(h))
	if n == 0 {
		return out
	}
	// One backing array for all values, as [http.Header.Clone] does; each
	// name's slice is capped so that appending to it cannot overwrite
	// another's values.
	vals := make([]string, n)
	for k, vs := range h {
		name := textproto.CanonicalMIMEHeaderKey(k)
		if len(vs) == 0 || !keep(name) {
			continue
		}
		if old, ok := out[name]; ok { // k is not canonical, and its canonical form is also in h
			out[name] = append(old, vs...)
			continue
		}
		m := copy(vals, vs)
		out[name] = vals[:m:m]
		vals = vals[m:]
	}
	return out
}
