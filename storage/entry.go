package storage

import (
	"net/http"
	"time"
)

// Entry is one cached response: the value of one field of a bucket.
// [github.com/readthrough/readthrough/envelope.Encode] and
// [github.com/readthrough/readthrough/envelope.Decode] turn it into the
// versioned envelope described in envelope/ENVELOPE.md; times are kept
// to the millisecond.
type Entry struct {
	// Status is the response status code.
	Status int
	// Header holds the response headers worth keeping, canonical names.
	// It never holds hop-by-hop headers, trailers, Set-Cookie, Date, Age,
	// Content-Length, Content-Encoding (the coding is in Coding),
	// Cache-Status, Surrogate-Key or Surrogate-Control:
	// [github.com/readthrough/readthrough/envelope.StorableHeader] drops
	// them before an entry is stored and
	// [github.com/readthrough/readthrough/envelope.Decode] after it is
	// read.
	Header http.Header
	// Stored is when the response was produced.
	Stored time.Time
	// Fresh is how long after Stored the entry is fresh.
	Fresh time.Duration
	// StaleWhileRevalidate is how long after freshness ends the entry may be
	// served while it is refreshed.
	StaleWhileRevalidate time.Duration
	// StaleIfError is how long after freshness ends the entry may be served
	// when the origin fails.
	StaleIfError time.Duration
	// OriginTime is how long the origin took to produce the response; the
	// XFetch refresh rule uses it.
	OriginTime time.Duration
	// Coding is the content coding of Body ("" for identity, "gzip", ...).
	Coding string
	// CacheEncoded says the cache applied Coding itself (the origin sent
	// the body unencoded), so a strong ETag must be weakened when the
	// encoded bytes are served.
	CacheEncoded bool
	// Date is the origin's Date header (RFC 9110 section 6.6.1), kept
	// by routes in standards mode so that every hit carries the time
	// the origin produced the response, and zero otherwise (a hit then
	// gets the time it is sent). Kept to the second.
	Date time.Time
	// Body is the response body in Coding. After Decode it aliases the
	// decoded bytes.
	Body []byte
}

// FreshUntil is when the entry stops being fresh.
func (e *Entry) FreshUntil() time.Time { return e.Stored.Add(e.Fresh) }

// Lifetime is the longest the entry can still be of use after Stored: fresh
// plus the longer of its two stale windows. Stores keep the bucket at least
// this long.
func (e *Entry) Lifetime() time.Duration {
	return e.Fresh + max(e.StaleWhileRevalidate, e.StaleIfError)
}
