package httpcache

import (
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cacheControl holds the Cache-Control (or Surrogate-Control,
// CDN-Cache-Control) directives the cache acts on (RFC 9111 section 5.2,
// RFC 5861, RFC 9213).
type cacheControl struct {
	noStore, noCache, private bool
	// mustRevalidate is must-revalidate or proxy-revalidate (the same to
	// a shared cache); hardMustRevalidate is must-revalidate alone, which
	// RFC 9111 section 3.5 names for authenticated requests.
	mustRevalidate, hardMustRevalidate bool
	public, mustUnderstand             bool
	immutable, noTransform             bool
	maxAge, sMaxAge                    time.Duration
	hasMaxAge, hasSMaxAge              bool
	swr, sie                           time.Duration
	hasSWR, hasSIE                     bool
	// Request directives (RFC 9111 section 5.2.1).
	minFresh                  time.Duration
	hasMinFresh, onlyIfCached bool
	// noCacheFields and privateFields are the field names a qualified
	// no-cache or private lists (RFC 9111 sections 5.2.2.4 and 5.2.2.7),
	// canonical; a qualified directive does not set noCache or private.
	noCacheFields, privateFields []string
	// directives counts the directives found, so that a targeted field
	// with none is known to be empty (RFC 9213 section 2.1).
	directives int
}

// parseCacheControl parses header values leniently: unknown directives are
// ignored and a malformed delta-seconds makes its directive absent, except
// that a malformed max-age counts as max-age=0 (RFC 9111 section 4.2.1
// asks a cache to treat it as stale). Quoted arguments may hold commas
// (no-cache="Set-Cookie, X-Id").
func parseCacheControl(values []string) cacheControl { return parseDirectives(values, false) }

// parseDirectives is parseCacheControl; with sf, the values are a
// Structured Field Dictionary (CDN-Cache-Control), whose members may
// carry parameters (;name=value), which are dropped.
func parseDirectives(values []string, sf bool) cacheControl {
	var cc cacheControl
	for _, v := range values {
		for v != "" {
			var d string
			d, v = cutUnquoted(v, ',')
			if sf {
				d, _ = cutUnquoted(d, ';') // the member without its parameters
			}
			name, arg, hasArg := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			cc.directives++
			arg = strings.TrimSpace(arg)
			quoted := len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"'
			arg = strings.Trim(arg, `"`)
			secs, ok := deltaSeconds(arg)
			switch name {
			case "no-store":
				cc.noStore = true
			case "no-cache":
				if hasArg && quoted && strings.TrimSpace(arg) != "" {
					cc.noCacheFields = appendFieldNames(cc.noCacheFields, arg)
				} else {
					cc.noCache = true
				}
			case "private":
				if hasArg && quoted && strings.TrimSpace(arg) != "" {
					cc.privateFields = appendFieldNames(cc.privateFields, arg)
				} else {
					cc.private = true
				}
			case "public":
				cc.public = true
			case "must-understand":
				cc.mustUnderstand = true
			case "immutable":
				cc.immutable = true
			case "no-transform":
				cc.noTransform = true
			case "must-revalidate":
				cc.mustRevalidate, cc.hardMustRevalidate = true, true
			case "proxy-revalidate":
				cc.mustRevalidate = true
			case "max-age":
				// Malformed is 0: stale; so are two that disagree
				// (RFC 9111 section 4.2.1).
				if cc.hasMaxAge && cc.maxAge != secs {
					secs = 0
				}
				cc.maxAge, cc.hasMaxAge = secs, true
			case "s-maxage":
				if ok {
					if cc.hasSMaxAge && cc.sMaxAge != secs {
						secs = 0
					}
					cc.sMaxAge, cc.hasSMaxAge = secs, true
				}
			case "min-fresh":
				if ok {
					cc.minFresh, cc.hasMinFresh = secs, true
				}
			case "only-if-cached":
				cc.onlyIfCached = true
			case "stale-while-revalidate":
				if ok {
					cc.swr, cc.hasSWR = secs, true
				}
			case "stale-if-error":
				if ok {
					cc.sie, cc.hasSIE = secs, true
				}
			}
		}
	}
	return cc
}

// cutUnquoted cuts v at the first sep outside a quoted string (where a
// backslash escapes the next byte): the directive before a ',' of a
// Cache-Control value, or a Structured Field member before its ';'
// parameters.
func cutUnquoted(v string, sep byte) (before, after string) {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted && i+1 < len(v):
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			return v[:i], v[i+1:]
		}
	}
	return v, ""
}

// appendFieldNames appends the canonical names of a comma separated list.
func appendFieldNames(dst []string, list string) []string {
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			dst = append(dst, textproto.CanonicalMIMEHeaderKey(f))
		}
	}
	return dst
}

// maxDelta caps delta-seconds (RFC 9111 section 1.2.2 suggests 2^31).
const maxDelta = 1 << 31

func deltaSeconds(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxDelta {
		n = maxDelta
	}
	return time.Duration(n) * time.Second, true
}

// decision is whether and for how long to store a response.
type decision struct {
	store      bool
	fresh, swr time.Duration
	sie        time.Duration
	coding     string
	tags       []string // every tag the entry is stored under
	// surrogate is the origin's Surrogate-Key, kept with the entry (never
	// sent) so that a revalidation that does not repeat it keeps the
	// entry's tags.
	surrogate string
	// age is how old the origin said the response already was (its Age
	// header, honoured with HonorOriginCacheControl): the entry counts as
	// stored that long before it was (RFC 9111 section 4.2.3). In
	// standards mode the fill corrects it with date (initialAge).
	age time.Duration

	// The standards mode's (standards.go).
	standards bool
	// date is the origin's Date, zero when it sent none (the fill then
	// stores its own time of receipt, RFC 9110 section 6.6.1).
	date time.Time
	// revalidateOnly stores a response that may only be reused once the
	// origin has validated it (no-cache, or no lifetime at all), for
	// its validators.
	revalidateOnly bool
	// strip are the fields a qualified no-cache or private keeps out of
	// the stored response (RFC 9111 sections 5.2.2.4 and 5.2.2.7).
	strip []string
	// noTransform keeps the body as the origin sent it (RFC 9110
	// section 7.7): the route's compression is not applied.
	noTransform bool
	// vary are the request headers the response varies on that the
	// route is not keyed on (vary.go): it is stored under a secondary key.
	vary []string
}

// decodableCodings are the content codings the cache can decode for
// clients that do not accept them; responses in other codings are not
// stored.
var decodableCodings = []string{"gzip", "x-gzip", "deflate", "zstd"}

// Bounds on the tags one response is stored with, so that an origin (or a
// request reflected into a Surrogate-Key) cannot make one fill create any
// number of Redis keys of any size. A response over either bound is not
// stored: dropping some of its tags would let a purge of those tags miss
// it.
const (
	// MaxTags is the most tags (Surrogate-Key words and the policy's
	// Tags together) a stored response may carry.
	MaxTags = 64
	// MaxTagBytes is the longest tag a stored response may carry.
	MaxTagBytes = 256
)

// decide applies the policy (or, in standards mode, RFC 9111) and the
// never-store rules to a response's status and headers, before its body
// is known. h must be in canonical form (see canonicalize); decide removes
// the Surrogate-Control and Surrogate-Key headers, which are for this
// cache only (see decision.keepSurrogate).
func (rt *route) decide(r *http.Request, status int, h http.Header) decision {
	defer func() {
		delete(h, "Surrogate-Control")
		delete(h, "Surrogate-Key")
	}()
	var (
		d  decision
		ok bool
	)
	if rt.policy.Standards {
		d, ok = rt.standardsLifetime(r, status, h, time.Now())
	} else {
		d, ok = rt.policyLifetime(status, h)
	}
	if !ok || !rt.storableHeaders(h, &d) {
		return decision{}
	}
	if d.fresh <= 0 && d.swr <= 0 && d.sie <= 0 && !d.revalidateOnly {
		return decision{}
	}
	keys := surrogateKeys(h)
	if len(keys) > 0 {
		d.surrogate = strings.Join(keys, " ")
	}
	d.tags = append(keys, rt.requestTags(r)...)
	if len(d.tags) > MaxTags || slices.ContainsFunc(d.tags, func(t string) bool { return t == "" || len(t) > MaxTagBytes }) {
		rt.stats.add(cTagsRefused, 1)
		return decision{}
	}
	d.store = true
	return d
}

// storableHeaders applies the rules every mode shares: no cookies, no
// partial content, no trailers, no Vary on a request header the route is
// not keyed on, and only content codings the cache can decode, which it
// records in d.
func (rt *route) storableHeaders(h http.Header, d *decision) bool {
	for _, name := range [...]string{"Set-Cookie", "Set-Cookie2", "Content-Range", "Trailer"} {
		// Trailers are sent after the body, when a held response has
		// been stored already: a response that declares any is not
		// stored.
		if _, ok := h[name]; ok {
			return false
		}
	}
	for name := range h {
		if strings.HasPrefix(name, http.TrailerPrefix) {
			return false
		}
	}
	names, ok := rt.unkeyedVary(h)
	switch {
	case !ok:
		return false // Vary: * never matches another request
	case len(names) > 0 && !rt.policy.Standards:
		return false // the default mode keys on the policy's Vary alone
	}
	d.vary = names
	if ce := h["Content-Encoding"]; len(ce) > 0 {
		c := strings.ToLower(strings.TrimSpace(strings.Join(ce, ",")))
		if !slices.Contains(decodableCodings, c) {
			return false
		}
		if c == "x-gzip" {
			c = "gzip"
		}
		d.coding = c
	}
	return true
}

// policyLifetime is the default mode's lifetime of a response: the
// policy's, or with HonorOriginCacheControl the origin's Cache-Control
// and Surrogate-Control within the policy's MaxTTL.
func (rt *route) policyLifetime(status int, h http.Header) (decision, bool) {
	p := &rt.policy
	d := decision{fresh: p.TTL, swr: p.StaleWhileRevalidate, sie: p.StaleIfError}
	if !p.Stores(status) {
		return d, false
	}
	cc := parseCacheControl(h["Cache-Control"])
	if cc.noStore || cc.private || cc.noCache || len(cc.privateFields) > 0 || len(cc.noCacheFields) > 0 {
		return d, false
	}
	sc := parseCacheControl(h["Surrogate-Control"])
	if sc.noStore {
		return d, false
	}
	if !p.HonorOriginCacheControl {
		return d, true
	}
	switch {
	case sc.hasMaxAge:
		d.fresh = sc.maxAge
	case cc.hasSMaxAge:
		d.fresh = cc.sMaxAge
	case cc.hasMaxAge:
		d.fresh = cc.maxAge
	}
	if cc.hasSWR {
		d.swr = cc.swr
	}
	if cc.hasSIE {
		d.sie = cc.sie
	}
	if sc.hasSWR {
		d.swr = sc.swr
	}
	if sc.hasSIE {
		d.sie = sc.sie
	}
	// must-revalidate, proxy-revalidate and s-maxage (which implies
	// proxy-revalidate, RFC 9111 section 5.2.2.10) forbid serving the
	// response stale without validating it: the policy's stale windows
	// do not apply, only those the response itself states.
	if cc.mustRevalidate || cc.hasSMaxAge || sc.mustRevalidate {
		if !cc.hasSWR && !sc.hasSWR {
			d.swr = 0
		}
		if !cc.hasSIE && !sc.hasSIE {
			d.sie = 0
		}
	}
	d.fresh, d.swr, d.sie = min(d.fresh, p.MaxTTL), min(d.swr, p.MaxTTL), min(d.sie, p.MaxTTL)
	if age, ok := deltaSeconds(strings.TrimSpace(headerValue(h, "Age"))); ok {
		// Older than all its windows: nothing left to store.
		if age >= d.fresh+max(d.swr, d.sie) {
			return d, false
		}
		d.age = age
	}
	return d, true
}

// keepSurrogate sets the Surrogate-Key of h, the header of the entry d
// stores, to the origin's tags, which serveEntry never sends.
func (d decision) keepSurrogate(h http.Header) {
	if d.surrogate == "" {
		delete(h, "Surrogate-Key")
		return
	}
	h["Surrogate-Key"] = []string{d.surrogate}
}

// varies reports whether the policy keys on request header name.
func (rt *route) varies(name string) bool {
	for _, v := range rt.policy.Vary {
		if textproto.CanonicalMIMEHeaderKey(v) == name {
			return true
		}
	}
	return false
}

// surrogateKeys returns the tags an origin attached with Surrogate-Key
// (space separated).
func surrogateKeys(h http.Header) []string {
	var tags []string
	for _, v := range h["Surrogate-Key"] {
		tags = append(tags, strings.Fields(v)...)
	}
	return tags
}

// requestTags returns the tags the policy computes for r.
func (rt *route) requestTags(r *http.Request) []string {
	if rt.policy.Tags == nil {
		return nil
	}
	return rt.policy.Tags(r)
}
