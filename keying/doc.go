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
// A bucket is esc(pattern) + "|" + esc(v1) + "|" + esc(v2) ... for the bucket
// parameter values in pattern order. esc percent-encodes '%', '{', '}', '|',
// the control bytes below 0x20 and 0x7f, and nothing else, so the encoding is
// injective, the parts are separated unambiguously and a bucket never holds a
// brace: it can sit inside a Redis Cluster hash tag. Every bucket of a route
// starts with [Route.BucketPrefix], and no other route's buckets do.
//
// # Field format
//
// The field is the first 16 bytes of the SHA-256 digest of this byte string
// (version 1), where str is a uvarint byte length followed by the bytes and n
// is a uvarint count:
//
//	0x01                         format version
//	str  method class            "GET" for GET and HEAD, else the method as sent
//	str  host                    r.Host (r.URL.Host if empty), ASCII-lowercased
//	n × (str name, str value)    the path parameters that are not bucket parameters, in pattern order,
//	                             then the shadow readings and the request path (see below)
//	n × (byte flags, str name, str value)
//	                             the kept query parameters, sorted by name, repeated names in request order
//	n × (str name, byte present, [n × str value])
//	                             the Vary headers, by canonical name, sorted; values in order
//
// Query parameters are parsed from the raw query by splitting on '&' only
// (';' is an ordinary byte), ignoring empty pieces, and unescaping name and
// value as [net/url.QueryUnescape] does. A name or value that does not unescape is
// kept as sent and flagged (bit 0 of flags for the name, bit 1 for the value),
// so "a%zz" as sent never equals the decoded "a%zz" of "a%25zz". A piece
// without '=' has the empty value: "a" and "a=" are the same variant, as they
// are to [net/url.Values.Get]. Sorting is by the name's bytes, then unflagged
// before flagged. The allow list in [policy.Policy.QueryParams] matches
// decoded names; a name that does not unescape is never allowed.
//
// Two pattern forms mean different things to the two routers, and keying
// cannot tell which router a pattern is for. For "{$}" (a ServeMux end
// anchor, a parameter named "$" to chi) and "{rest...}" (the parameter
// "rest" to ServeMux, "rest..." to chi), the field also holds PathValue("$")
// or PathValue("rest..."), which is empty under ServeMux. A pattern whose
// path ends in '/' matches a whole subtree under ServeMux, and the rest of
// the path is no parameter: its field also holds r.URL.Path and
// r.URL.RawPath, under the names "/path" and "/rawpath".
//
// A Vary header that is absent has present = 0 and no values; a header sent
// with an empty value has present = 1 and one empty value.
package keying
