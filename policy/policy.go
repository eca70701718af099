package policy

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"time"
)

// Defaults applied by [Policy.WithDefaults] to zero fields.
const (
	DefaultTTL          = time.Minute
	DefaultLockTTL      = 5 * time.Second
	DefaultLockWait     = 5 * time.Second
	DefaultFillTimeout  = 30 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxFields    = 1000
	DefaultMaxTTL       = 24 * time.Hour
)

// DefaultStatuses are the response statuses stored when [Policy.Statuses] is
// empty: the statuses RFC 9110 section 15.1 calls heuristically cacheable,
// minus 206 (partial content is never stored).
var DefaultStatuses = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// Policy says how one route is cached. It is plain data: declare it next to
// the route in Go or load it from a file with [Load]. A zero field means its
// default, stated in the field's comment.
type Policy struct {
	// TTL is how long a stored response is fresh. Default [DefaultTTL].
	// Not with Standards, where the response's own headers decide.
	TTL time.Duration

	// StaleWhileRevalidate is how long after freshness ends the stale
	// response may still be served while it is refreshed in the background
	// (RFC 5861). Default 0: never served stale. Not with Standards,
	// where only the response's own stale-while-revalidate permits it.
	StaleWhileRevalidate time.Duration

	// StaleIfError is how long after freshness ends the stale response may
	// still be served when the origin fails (RFC 5861). Default 0. Not
	// with Standards, where only the response's own stale-if-error
	// permits it.
	StaleIfError time.Duration

	// RefreshAhead is the fraction of TTL after which a hit schedules a
	// background refresh while it is still served, in (0, 1). Default 0:
	// no refresh ahead by ratio. Exclusive with XFetchBeta.
	RefreshAhead float64

	// XFetchBeta enables probabilistic early refresh (XFetch, Vattani et
	// al., VLDB 2015) with this beta; 1 is the paper's recommendation, larger
	// refreshes earlier. Default 0: off. Exclusive with RefreshAhead.
	XFetchBeta float64

	// LockTTL is the expiry of the cross-instance fill lock; it is extended
	// while a slow origin is still running. Default [DefaultLockTTL].
	LockTTL time.Duration

	// LockWait is how long a request waits for another caller's fill before
	// going to the origin itself. Default [DefaultLockWait].
	LockWait time.Duration

	// FillTimeout bounds one origin call made on behalf of other callers
	// (a shared fill or a background refresh). Default [DefaultFillTimeout].
	FillTimeout time.Duration

	// BucketParams names the path parameters whose values choose the bucket
	// (one Redis hash invalidated as a whole). The other path parameters go
	// into the field. Default: every path parameter of the route.
	BucketParams []string

	// QueryParams is the allow list of query parameters that are part of
	// the key; the others are ignored. Default: every query parameter.
	QueryParams []string

	// IgnoreQuery leaves the whole query string out of the key.
	// Default false. Exclusive with QueryParams.
	IgnoreQuery bool

	// Vary names request headers whose values are part of the key, in
	// addition to the Host. Default none.
	Vary []string

	// Statuses lists the response statuses that are stored.
	// Default [DefaultStatuses]. Not with Standards, where RFC 9111
	// decides which statuses are stored.
	Statuses []int

	// MaxBodyBytes is the largest body stored; larger responses stream
	// through uncached. It also bounds the memory one in-flight response
	// takes. Default [DefaultMaxBodyBytes].
	MaxBodyBytes int64

	// MaxFields bounds the number of variants stored in one bucket; past it
	// new variants are not stored (counted and logged by the cache), while
	// the variants stored already are kept and refreshed, so that requests
	// with junk query strings cannot push out the variants real traffic
	// uses. Default [DefaultMaxFields].
	MaxFields int

	// MaxTTL caps the fresh lifetime and the stale windows that the
	// origin sets with HonorOriginCacheControl (an s-maxage of 99999999999
	// would otherwise keep an entry, and its Redis key, for three thousand
	// years), and those of every entry read from the store. Default
	// [DefaultMaxTTL], or the longest of TTL, StaleWhileRevalidate and
	// StaleIfError when that is longer.
	MaxTTL time.Duration

	// HonorOriginCacheControl makes the origin's Cache-Control and
	// Surrogate-Control s-maxage / max-age set the fresh lifetime, and its
	// stale-while-revalidate and stale-if-error set the stale windows.
	// no-store and private are honoured whatever this says. Default false.
	HonorOriginCacheControl bool

	// ForwardHeaders names request headers that a background refresh
	// passes to the handler besides those in Vary: tracing ids and the
	// like. A refresh runs on behalf of every client of an entry, so it
	// sends the handler only what the entry is keyed on (method, path,
	// kept query parameters, host, scheme, the Vary headers) and these;
	// a header listed here must not change the response, and credentials
	// (Authorization, Cookie, Proxy-Authorization) are refused: key on
	// them with Vary instead. Default none.
	ForwardHeaders []string

	// AllowAuthorized caches requests that carry Authorization,
	// Proxy-Authorization or Cookie headers. Only set it when the
	// response does not depend on them, or when they are listed in Vary.
	// Default false: such requests bypass (but in standards mode, where
	// Authorization follows RFC 9111 section 3.5).
	AllowAuthorized bool

	// Standards makes the route an RFC 9111 shared cache in front of its
	// handler, as a proxy cache is: the response's Cache-Control,
	// CDN-Cache-Control, Surrogate-Control, Expires, Date, Age and
	// Last-Modified decide whether it is stored and for how long, any
	// final status with an explicit lifetime is stored, and requests with
	// Authorization are answered as RFC 9111 section 3.5 says. TTL,
	// StaleWhileRevalidate, StaleIfError and Statuses must then be left
	// zero; MaxTTL still caps every lifetime and stale window. It
	// includes what HonorOriginCacheControl does. See the README's
	// "Standards mode" for what it does and does not do. Default false:
	// the policy decides, as described on each field.
	Standards bool

	// HonorRequestCacheControl makes the cache act on the client's
	// Cache-Control request directives (RFC 9111 section 5.2.1):
	// no-cache, max-age and min-fresh send a request whose stored
	// response is older, or fresher for less long, than it accepts to
	// the origin (with the stored validators, so an unchanged response
	// costs a 304), and only-if-cached answers 504 instead of calling the
	// origin. Default false: only no-store is honoured (the request
	// bypasses the cache), because a client's no-cache or max-age=0
	// would let any client send every request to the origin, the load
	// this cache exists to absorb. Turn it on for routes whose clients
	// are trusted, such as internal services behind the cache.
	HonorRequestCacheControl bool

	// Tags computes surrogate keys for a request; purging a tag removes
	// every bucket stored with it. Not settable from a file. Default none.
	Tags func(r *http.Request) []string

	// Compression chooses how stored bodies are compressed, trading Redis
	// memory against the cost of a hit; see [Compression]. Default
	// [CompressGzip].
	Compression Compression

	// Local keeps copies of the route's entries in process memory, in the
	// cache's local tier (httpcache.WithLocalTier), so that a hit sends
	// no store command: for the hottest read routes. The tier drops a
	// copy as soon as its bucket changes in the store, on any instance,
	// and serves none while it cannot prove it heard of every change
	// (see the README's "Local tier"). Declaring a Local route on a cache
	// without a local tier is an error. Default false.
	Local bool
}

// Compression is how the cache compresses the bodies it stores. Bodies the
// origin already sent with a Content-Encoding are stored as they came,
// whatever the setting.
type Compression string

const (
	// CompressGzip gzips bodies of 192 bytes or more when
	// that saves at least an eighth. Clients that accept gzip (every
	// browser and Go's http.Client) get the stored bytes untouched, so a
	// hit costs no compression work; the others get them decoded. The
	// default: the fastest hits.
	CompressGzip Compression = "gzip"
	// CompressDictionary compresses bodies with zstd and a dictionary
	// trained from the route's own responses and shared by every instance
	// through the store. Small and mid-size JSON answers of one route
	// repeat the same keys and much of the same text, which a dictionary
	// captures and gzip cannot: a 2 KB JSON answer is stored about 40%
	// smaller than gzipped, a quarter less Redis memory per response with
	// the key's own overhead. Hits decode the body (a few microseconds,
	// once for hot entries: see httpcache.WithDecodedCache) and send it
	// uncompressed, since no client has the dictionary. Until the route's
	// dictionary is ready (trained from its first 64 KiB of responses of
	// at most 16 KiB each, or loaded from the store) bodies are gzipped;
	// a route whose bodies are all larger never trains one. For routes
	// where Redis memory matters more than bytes on the wire, such as
	// internal APIs.
	CompressDictionary Compression = "dictionary"
	// CompressNone stores bodies as the origin sent them: no compression
	// work on fills, none on hits for any client, and the most memory.
	// For routes whose bodies are small or already compressed.
	CompressNone Compression = "none"
)

// WithDefaults returns p with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	if p.TTL == 0 {
		p.TTL = DefaultTTL
	}
	if p.LockTTL == 0 {
		p.LockTTL = DefaultLockTTL
	}
	if p.LockWait == 0 {
		p.LockWait = DefaultLockWait
	}
	if p.FillTimeout == 0 {
		p.FillTimeout = DefaultFillTimeout
	}
	if len(p.Statuses) == 0 {
		p.Statuses = DefaultStatuses
	}
	if p.MaxBodyBytes == 0 {
		p.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if p.MaxFields == 0 {
		p.MaxFields = DefaultMaxFields
	}
	if p.MaxTTL == 0 {
		p.MaxTTL = max(DefaultMaxTTL, p.TTL, p.StaleWhileRevalidate, p.StaleIfError)
	}
	if p.Compression == "" {
		p.Compression = CompressGzip
	}
	return p
}

// FieldError reports one invalid policy field of one route.
type FieldError struct {
	Route  string // route pattern, may be empty when validated alone
	Field  string // Go field name, e.g. "TTL"
	Reason string
}

// Error names the route (when known), the field and the reason.
func (e *FieldError) Error() string {
	if e.Route == "" {
		return fmt.Sprintf("policy: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("policy: route %q: %s: %s", e.Route, e.Field, e.Reason)
}

// Validate reports every invalid field of p, joined, as [*FieldError]
// values without a route. Zero fields are valid (they mean the default).
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"TTL", p.TTL}, {"StaleWhileRevalidate", p.StaleWhileRevalidate},
		{"StaleIfError", p.StaleIfError}, {"LockTTL", p.LockTTL},
		{"LockWait", p.LockWait}, {"FillTimeout", p.FillTimeout},
		{"MaxTTL", p.MaxTTL},
	}
	for _, d := range durations {
		if d.d < 0 {
			bad(d.name, "must not be negative, got %v", d.d)
		}
	}
	if p.TTL > 0 && p.TTL < time.Millisecond {
		bad("TTL", "must be at least 1ms, got %v", p.TTL)
	}
	if p.LockTTL > 0 && p.LockTTL < 10*time.Millisecond {
		bad("LockTTL", "must be at least 10ms, got %v", p.LockTTL)
	}
	if p.MaxTTL > 0 {
		for _, d := range durations[:3] {
			if d.d > p.MaxTTL {
				bad("MaxTTL", "%v is shorter than %s (%v)", p.MaxTTL, d.name, d.d)
			}
		}
	}
	if p.RefreshAhead < 0 || p.RefreshAhead >= 1 {
		bad("RefreshAhead", "must be in (0, 1) or 0 for off, got %v", p.RefreshAhead)
	}
	if p.XFetchBeta < 0 {
		bad("XFetchBeta", "must not be negative, got %v", p.XFetchBeta)
	}
	if p.RefreshAhead > 0 && p.XFetchBeta > 0 {
		bad("XFetchBeta", "cannot be combined with RefreshAhead; choose one")
	}
	if p.Standards {
		// In standards mode the response decides these; a value set
		// here would be silently ignored.
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"TTL", p.TTL != 0}, {"StaleWhileRevalidate", p.StaleWhileRevalidate != 0},
			{"StaleIfError", p.StaleIfError != 0}, {"Statuses", len(p.Statuses) > 0},
		} {
			if f.set {
				bad(f.name, "cannot be set with Standards: the response's own headers decide it (RFC 9111); leave it zero, and cap lifetimes with MaxTTL")
			}
		}
	}
	if p.IgnoreQuery && len(p.QueryParams) > 0 {
		bad("QueryParams", "cannot be combined with IgnoreQuery")
	}
	checkNames := func(field string, names []string) {
		seen := map[string]bool{}
		for _, n := range names {
			switch {
			case n == "":
				bad(field, "empty name")
			case seen[n]:
				bad(field, "duplicate name %q", n)
			}
			seen[n] = true
		}
	}
	checkNames("BucketParams", p.BucketParams)
	checkNames("QueryParams", p.QueryParams)
	checkHeaders := func(field string, names []string) {
		seen := map[string]bool{}
		for _, h := range names {
			if !validHeaderName(h) {
				bad(field, "invalid header name %q", h)
				continue
			}
			c := textproto.CanonicalMIMEHeaderKey(h)
			if seen[c] {
				bad(field, "duplicate header %q", h)
			}
			seen[c] = true
		}
	}
	checkHeaders("Vary", p.Vary)
	checkHeaders("ForwardHeaders", p.ForwardHeaders)
	for _, h := range p.ForwardHeaders {
		switch c := textproto.CanonicalMIMEHeaderKey(h); c {
		case "Authorization", "Cookie", "Proxy-Authorization":
			// A refresh runs for every client of the entry: forwarding
			// one client's credentials stores their answer for all.
			bad("ForwardHeaders", "%s is a credential: a refresh would send one client's to the handler and store its answer for every client; key on it with Vary (and AllowAuthorized) instead", c)
		}
	}
	for _, s := range p.Statuses {
		switch {
		case s < 200 || s > 599:
			bad("Statuses", "status %d is not a final status", s)
		case s == http.StatusPartialContent:
			bad("Statuses", "206 Partial Content is never stored")
		}
	}
	if p.MaxBodyBytes < 0 {
		bad("MaxBodyBytes", "must not be negative, got %d", p.MaxBodyBytes)
	}
	if p.MaxFields < 0 {
		bad("MaxFields", "must not be negative, got %d", p.MaxFields)
	}
	switch p.Compression {
	case "", CompressGzip, CompressDictionary, CompressNone:
	default:
		bad("Compression", "unknown compression %q; want %q, %q or %q",
			p.Compression, CompressGzip, CompressDictionary, CompressNone)
	}
	return errors.Join(errs...)
}

// ForRoute returns err with route set on every [*FieldError] it holds, so a
// policy error names the route it belongs to.
func ForRoute(route string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := slices.Clone(j.Unwrap())
		for i, e := range errs {
			errs[i] = ForRoute(route, e)
		}
		return errors.Join(errs...)
	}
	if errors.As(err, &fe) && fe.Route == "" {
		c := *fe
		c.Route = route
		return &c
	}
	return err
}

// Stores reports whether status is one of p's cacheable statuses.
func (p *Policy) Stores(status int) bool {
	statuses := p.Statuses
	if len(statuses) == 0 {
		statuses = DefaultStatuses
	}
	return slices.Contains(statuses, status)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' ||
			c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' ||
			c == '\\' || c == ']' || c == '{' || c == '}' || c == '"' {
			return false
		}
	}
	return true
}
