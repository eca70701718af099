package storage

import (
	"net/http"
	"net/textproto"
	"strings"
)

// unstored are the response headers StorableHeader drops, by canonical
// name, besides those named by Connection and the trailer declarations.
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
	// Stored), and the body's coding is kept in Entry.Coding.
	"Date":             true,
	"Age":              true,
	"Content-Length":   true,
	"Content-Encoding": true,
	// The cache's own status (RFC 9211), set per response.
	"Cache-Status": true,
}

// StorableHeader returns the subset of h worth storing in an [Entry], with
// canonical names, as a new header that shares nothing with h.
//
// It drops the hop-by-hop headers (Connection and every header it names,
// Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization,
// TE, Trailer, Transfer-Encoding, Upgrade), trailers (the headers Trailer
// names, and those set with the [http.TrailerPrefix] convention),
// Set-Cookie and Set-Cookie2, Date, Age, Content-Length, Content-Encoding
// (the caller records the coding in [Entry.Coding]), Cache-Status, and
// names without values. Everything else is kept, including Surrogate-Key,
// Surrogate-Control and X-Cache style headers, which belong to the origin.
// Keys of h that differ only in case are merged, their values in no
// particular order.
func StorableHeader(h http.Header) http.Header {
	var listed []string // canonical names from Connection and Trailer, usually none
	for _, k := range [...]string{"Connection", "Trailer"} {
		for _, v := range h.Values(k) {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					listed = append(listed, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
	}
	keep := func(name string) bool {
		if unstored[name] || strings.HasPrefix(name, http.TrailerPrefix) {
			return false
		}
		for _, l := range listed {
			if l == name {
				return false
			}
		}
		return true
	}

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
