package keying

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"

	"github.com/readthrough/readthrough/policy"
)

// fieldLen is the length of [Key.Field] in bytes: 128 bits of SHA-256.
const fieldLen = 16

// Key identifies one cached variant: the bucket (a Redis hash, the content of
// the Redis Cluster hash tag) and the field in it.
//
// Bucket is printable text without '{' or '}' (see the package
// documentation). Field is 16 raw bytes; use [Key.FieldHex] to show it.
type Key struct {
	Bucket, Field string
	// Digested reports that a bucket parameter value was longer than
	// [MaxBucketValue] and is in Bucket as its digest.
	Digested bool
}

// FieldHex returns the field in lowercase hexadecimal, for logs and the admin
// inspect view.
func (k Key) FieldHex() string {
	return hex.EncodeToString([]byte(k.Field))
}

// Route is a route pattern compiled together with its policy, once, when the
// route is declared. It is safe for concurrent use.
type Route struct {
	pat    *Pattern
	prefix string // esc(pattern) + "|"
	// bucketParams are the bucket parameters in pattern order.
	bucketParams []string
	// fieldParams are the path parameters that go into the field, in
	// pattern order, followed by the pattern's shadow names.
	fieldParams []string
	ignoreQuery bool
	// allow is the query allow list; nil keeps every query parameter.
	allow map[string]struct{}
	// vary holds the canonical Vary header names, sorted, without
	// duplicates.
	vary []string

	// match is the pattern as a path matcher, built on first use by Match.
	matchOnce sync.Once
	match     *patternMatcher
}

// Compile compiles pattern, an [http.ServeMux] or chi route pattern, with its
// policy p. It validates p with [policy.Policy.Validate] and checks that every
// name in p.BucketParams is a path parameter of pattern; policy errors are
// [*policy.FieldError] values naming pattern as their route. A malformed
// pattern is reported as by [ParamNames].
//
// When p.BucketParams is empty every path parameter is a bucket parameter.
// Bucket parameters are always taken in pattern order, whatever their order
// in p.BucketParams.
func Compile(pattern string, p policy.Policy) (*Route, error) {
	pat, perr := ParsePattern(pattern)
	var errs []error
	if perr != nil {
		errs = append(errs, perr)
	}
	if err := p.Validate(); err != nil {
		errs = append(errs, policy.ForRoute(pattern, err))
	}
	if perr == nil {
		for _, name := range p.BucketParams {
			if name != "" && !slices.Contains(pat.params, name) {
				errs = append(errs, &policy.FieldError{
					Route:  pattern,
					Field:  "BucketParams",
					Reason: fmt.Sprintf("%q is not a path parameter of the pattern (%s)", name, describeParams(pat.params)),
				})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	rt := &Route{
		pat:         pat,
		prefix:      string(appendEscaped(nil, pattern)) + "|",
		ignoreQuery: p.IgnoreQuery,
	}
	for _, name := range pat.params {
		if len(p.BucketParams) == 0 || slices.Contains(p.BucketParams, name) {
			rt.bucketParams = append(rt.bucketParams, name)
		} else {
			rt.fieldParams = append(rt.fieldParams, name)
		}
	}
	rt.fieldParams = append(rt.fieldParams, pat.shadows...)
	if len(p.QueryParams) > 0 {
		rt.allow = make(map[string]struct{}, len(p.QueryParams))
		for _, name := range p.QueryParams {
			rt.allow[name] = struct{}{}
		}
	}
	for _, h := range p.Vary {
		rt.vary = append(rt.vary, textproto.CanonicalMIMEHeaderKey(h))
	}
	slices.Sort(rt.vary)
	rt.vary = slices.Compact(rt.vary)
	return rt, nil
}

func describeParams(names []string) string {
	if len(names) == 0 {
		return "it has none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "it has " + strings.Join(q, ", ")
}

// Pattern returns the route pattern rt was compiled from.
func (rt *Route) Pattern() string { return rt.pat.text }

// Parsed returns rt's pattern, parsed.
func (rt *Route) Parsed() *Pattern { return rt.pat }

// BucketPrefix returns the escaped route pattern followed by "|". Every bucket
// of rt starts with it and no bucket of a route with another pattern does, so
// it selects a whole route for purging.
func (rt *Route) BucketPrefix() string { return rt.prefix }

// ErrQuery is returned by [Route.Key] for a query that [net/url.ParseQuery]
// rejects: a piece holding ';', a malformed percent-escape, or more pieces
// than its limit (10,000 unless a GODEBUG setting says otherwise). The
// handler's [net/url.URL.Query] then drops some pieces or all of them, and
// [http.Request.ParseForm] returns the error, so no key can stand for what
// the handler sees: such requests must bypass the cache.
var ErrQuery = errors.New("keying: query that net/url does not parse cleanly")

// Key returns the key of r, a request routed to rt's pattern. Path parameter
// values are read with [http.Request.PathValue]. See the package
// documentation for what goes into the bucket and the field.
//
// Key fails only with [ErrQuery]. A parameter the router did not set counts
// as empty, and any method is accepted (GET and HEAD share their variants;
// an empty method counts as GET, as in [http.Request]).
func (rt *Route) Key(r *http.Request) (Key, error) {
	s := scratchPool.Get().(*scratch)
	defer s.put()
	k := Key{Bucket: rt.prefix}
	if len(rt.bucketParams) > 0 {
		b := append(s.buf[:0], rt.prefix...)
		for i, name := range rt.bucketParams {
			if i > 0 {
				b = append(b, '|')
			}
			v := r.PathValue(name)
			k.Digested = k.Digested || len(v) > MaxBucketValue
			b = appendBucketValue(b, v)
		}
		k.Bucket = string(b)
		s.buf = b
	}
	var ok bool
	if s.buf, ok = rt.appendCanonical(s.buf[:0], s, r); !ok {
		return Key{}, ErrQuery
	}
	sum := sha256.Sum256(s.buf)
	k.Field = string(sum[:fieldLen])
	return k, nil
}

// Bucket returns the bucket of r, a request routed to rt's pattern: the
// Bucket of [Route.Key], which depends on the path values alone. It is
// meant for invalidating what r's URL is cached under after a write to
// it.
func (rt *Route) Bucket(r *http.Request) string {
	if len(rt.bucketParams) == 0 {
		return rt.prefix
	}
	b := []byte(rt.prefix)
	for i, name := range rt.bucketParams {
		if i > 0 {
			b = append(b, '|')
		}
		b = appendBucketValue(b, r.PathValue(name))
	}
	return string(b)
}

// BucketParams returns the names of rt's bucket parameters, in pattern
// order. The caller must not modify the slice.
func (rt *Route) BucketParams() []string { return rt.bucketParams }

// Routed reports whether r was routed to rt's pattern: whether
// [http.Request.Pattern], which [http.ServeMux] and chi set on every
// request they route, names the pattern rt was compiled from. A route
// declared inside a chi sub-router, a Mount or a Route group sees less
// than the whole routed pattern (chi's r.Pattern is the whole one,
// "/tenants/{tenant}/items/{id}" for "/items/{id}" declared under
// "/tenants/{tenant}"): the parameters outside it are invisible to rt's
// key, so such a request must not be keyed by rt. chi's rendering of a
// pattern (a trailing '/' removed, "/*/" collapsed) counts as the pattern.
// An unrouted request (Pattern empty) is not routed to rt.
func (rt *Route) Routed(r *http.Request) bool { return rt.pat.Routed(r) }

// Vary returns the request header names the field holds, canonical and
// sorted. The caller must not modify the slice.
func (rt *Route) Vary() []string { return rt.vary }

// KeptQuery returns the query of r that the field holds, as sent: the
// whole raw query, the raw pieces of the parameters the policy's allow
// list keeps (in request order), or "" with IgnoreQuery. A background
// refresh sends the handler this query and no other.
func (rt *Route) KeptQuery(r *http.Request) string {
	s := scratchPool.Get().(*scratch)
	defer s.put()
	q, _ := rt.keptQuery(s, r)
	return q
}

// BucketFor returns the bucket of rt for the given bucket parameter values,
// as [Route.Key] computes it for a request with these path values. It is
// meant for purging one bucket by route and parameters. values must hold
// exactly the bucket parameters; the error names each missing or unknown one.
func (rt *Route) BucketFor(values map[string]string) (string, error) {
	var errs []error
	var unknown []string
	for name := range values {
		if !slices.Contains(rt.bucketParams, name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		errs = append(errs, fmt.Errorf("keying: route %q: unknown bucket parameter %q (%s)",
			rt.pat.text, name, describeBucketParams(rt.bucketParams)))
	}
	for _, name := range rt.bucketParams {
		if _, ok := values[name]; !ok {
			errs = append(errs, fmt.Errorf("keying: route %q: missing bucket parameter %q", rt.pat.text, name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	b := []byte(rt.prefix)
	for i, name := range rt.bucketParams {
		if i > 0 {
			b = append(b, '|')
		}
		b = appendBucketValue(b, values[name])
	}
	return string(b), nil
}

func describeBucketParams(names []string) string {
	if len(names) == 0 {
		return "the route has no bucket parameters"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "bucket parameters: " + strings.Join(q, ", ")
}

// MaxBucketValue is the longest bucket parameter value kept as it is in a
// bucket name; a longer one is replaced by its digest (see the package
// documentation), so that a request with a huge path segment cannot create
// a huge Redis key, lock name or fill notification.
const MaxBucketValue = 128

// appendBucketValue appends the bucket form of a bucket parameter value:
// escaped, or "%#" and the hexadecimal first 16 bytes of the SHA-256 of v
// when v is longer than [MaxBucketValue]. The escaping never writes '%'
// followed by '#', so the two forms never meet.
func appendBucketValue(dst []byte, v string) []byte {
	if len(v) <= MaxBucketValue {
		return appendEscaped(dst, v)
	}
	sum := sha256.Sum256([]byte(v))
	dst = append(dst, '%', '#')
	return hex.AppendEncode(dst, sum[:fieldLen])
}

// appendEscaped appends s to dst with '%', '{', '}', '|', the bytes below
// 0x20 and 0x7f percent-encoded (uppercase hex).
func appendEscaped(dst []byte, s string) []byte {
	const hexDigits = "0123456789ABCDEF"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c == '{' || c == '}' || c == '|' || c < 0x20 || c == 0x7f {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&0xf])
			start = i + 1
		}
	}
	return append(dst, s[start:]...)
}

// chiRoutePattern renders pattern as chi's RoutePattern renders a routed
// pattern, which is what chi puts in r.Pattern: "/*/" collapsed to "/",
// then a trailing "//" or "/" removed (but "/" itself kept).
func chiRoutePattern(pattern string) string {
	for strings.Contains(pattern, "/*/") {
		pattern = strings.ReplaceAll(pattern, "/*/", "/")
	}
	if pattern != "/" {
		pattern = strings.TrimSuffix(pattern, "//")
		pattern = strings.TrimSuffix(pattern, "/")
	}
	return pattern
}
