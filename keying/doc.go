// Package keying turns a request, its declared route pattern and the route's
// [policy.Policy] into the [Key] a cached response is stored under.
//
// A key has two parts. The bucket names one Redis hash: the escaped route
// pattern followed by the values of the route's bucket parameters, so that
// everything about, say, user 15 is invalidated together. The field names one
// variant inside the bucket: a 128-bit SHA-256 digest of a canonical,
// length-prefixed encoding of the method class, the host, the remaining path
// parameters, the query parameters the policy keeps and the request headers
// the policy varies on.
//
// The package is pure: it does no I/O, keeps no global state besides a pool of
// scratch buffers, and does not import any router. Path parameter values are
// read with [http.Request.PathValue], which both [http.ServeMux] and chi
// (v5.5 and later) fill in, so a [Route] can be compiled from either kind of
// pattern:
//
//   - [http.ServeMux] patterns: "[METHOD ][HOST]/path/{name}/{rest...}", with
//     "{$}" anchoring the end;
//   - chi patterns: "/users/{id}", "/users/{id:[0-9]+}" (the name is before the
//     colon, the regular expression may itself hold braces, as in
//     "{id:[0-9]{3}}") and a trailing "*" whose parameter name is "*".
//
// Compile a route once, where it is declared, and call [Route.Key] per
// request; Key does not allocate beyond the two strings it returns.
//
// # Bucket format
//
// A bucket is esc(pattern) + "|" + v1 + "|" + v2 ... for the bucket
// parameter values in pattern order, where each vi is esc(value), or, for a
// value longer than [MaxBucketValue] bytes, "%#" followed by the lowercase
// hexadecimal first 16 bytes of its SHA-256 digest, so that no request can
// make a bucket name (and the Redis key, lock name and fill notification
// built from it) longer than the pattern plus 130 bytes per parameter. esc
// percent-encodes '%', '{', '}', '|', the control bytes below 0x20 and 0x7f,
// and nothing else, so the encoding is injective (esc never writes "%#"),
// the parts are separated unambiguously and a bucket never holds a brace:
// it can sit inside a Redis Cluster hash tag. Every bucket of a route
// starts with [Route.BucketPrefix], and no other route's buckets do.
//
// # Field format
//
// The field is the first 16 bytes of the SHA-256 digest of this byte string
// (version 3), where str is a uvarint byte length followed by the bytes and n
// is a uvarint count:
//
//	0x03                         format version
//	str  method class            "GET" for GET and HEAD, else the method as sent
//	str  scheme                  "https" when r.TLS is set, else "http"
//	str  host                    r.Host, exactly as sent (case, port, trailing dot)
//	str  target                  the request target as sent, up to its query (see [RequestTarget]):
//	                             the path of an origin-form target, the whole of an absolute-form one
//	n × (str name, str value)    the path parameters that are not bucket parameters, in pattern order,
//	                             then the shadow readings (see below)
//	str  query                   the kept query exactly as sent (see [Route.KeptQuery])
//	n × (str name, byte present, [n × str value])
//	                             the Vary headers, by canonical name, sorted; values in order
//
// Everything in the field is what the handler sees, as it sees it: the
// host, scheme, target and query as the client sent them (before any
// rewriting, and undecoded: a handler that reflects r.RequestURI or
// r.URL.RawQuery reflects exactly what the key holds), the path values
// its router set and the request headers as sent. Two requests that a
// router or net/url would treat alike but that differ in bytes ("%61"
// and "a", "a=1&b=2" and "b=2&a=1", a trailing slash a router ignores)
// are distinct variants: a miss costs latency, a wrong hit costs trust.
//
// The kept query is r.URL.RawQuery as it is when the route keeps every
// parameter; with an allow list ([policy.Policy.QueryParams]), the pieces
// of it (split on '&') whose name, unescaped as [net/url.QueryUnescape]
// does, the list holds, as sent, in the order sent, joined by '&'; with
// IgnoreQuery, empty. A query that [net/url.ParseQuery] rejects (a piece
// with ';', a malformed escape, more pieces than its limit) has no key:
// [Route.Key] returns [ErrQuery] and the request must bypass the cache.
//
// Two pattern forms mean different things to the two routers, and keying
// cannot tell which router a pattern is for. For "{$}" (a ServeMux end
// anchor, a parameter named "$" to chi) and "{rest...}" (the parameter
// "rest" to ServeMux, "rest..." to chi), the field also holds PathValue("$")
// or PathValue("rest..."), which is empty under ServeMux.
//
// A Vary header that is absent has present = 0 and no values; a header sent
// with an empty value has present = 1 and one empty value.
//
// # Router nesting
//
// The key is built from the pattern a route was declared with, so it must
// be the whole pattern the request was routed by: a route declared inside
// a chi sub-router or Mount with only its local part would not key the
// parameters of its parents. [Route.Routed] compares the declared pattern
// with [http.Request.Pattern]; the cache bypasses a request for which it
// reports false.
package keying
