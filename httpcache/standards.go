package httpcache

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// Standards mode (policy.Policy.Standards): the route is an RFC 9111
// shared cache in front of its handler. The response's own header fields
// decide whether it is stored and for how long; the route's MaxTTL caps
// every lifetime and window. The rest of the cache (keys, collapsing,
// the store, purges) is the same in both modes.

// heuristicStatuses are the statuses RFC 9110 section 15.1 calls
// heuristically cacheable, but 206, which the cache never stores.
var heuristicStatuses = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// understoodStatuses are the final statuses whose caching requirements
// the cache implements, for must-understand (RFC 9111 section 5.2.2.3):
// those RFC 9110 defines and the common ones of later RFCs.
var understoodStatuses = []int{
	200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308,
	400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
	414, 415, 416, 417, 421, 422, 426, 428, 429, 431, 451,
	500, 501, 502, 503, 504, 505, 511,
}

// heuristicFraction is the share of the time since Last-Modified that a
// response without an explicit lifetime is fresh (RFC 9111 section
// 4.2.2 suggests at most 10%).
const heuristicFraction = 10

// standardsLifetime decides whether a response may be stored and for
// how long, as RFC 9111 says a shared cache does (sections 3, 4.2, 5.2.2)
// with the targeted fields of RFC 9213, received at now.
func (rt *route) standardsLifetime(r *http.Request, status int, h http.Header, now time.Time) (decision, bool) {
	p := &rt.policy
	d := decision{standards: true}
	// Section 3: a final status the cache can store (206 and 304 are
	// never entries of their own).
	if status < 200 || status > 599 || status == http.StatusPartialContent || status == http.StatusNotModified {
		return d, false
	}
	// RFC 9213 section 2.1: the first targeted field with a valid,
	// non-empty value replaces Cache-Control and Expires. Surrogate-Control
	// is addressed to this cache alone, CDN-Cache-Control to every CDN.
	cc, targeted := parseCacheControl(h["Cache-Control"]), false
	if t := parseCacheControl(h["Surrogate-Control"]); t.directives > 0 {
		cc, targeted = t, true
	} else if t, ok := cdnCacheControl(h); ok {
		cc, targeted = t, true
	}
	// Section 5.2.2.3: must-understand with a status the cache
	// understands overrides no-store; with another, nothing is stored.
	understood := slices.Contains(understoodStatuses, status)
	if cc.mustUnderstand && !understood {
		return d, false
	}
	if cc.noStore && !(cc.mustUnderstand && understood) {
		return d, false
	}
	// Section 5.2.2.7: private is for one user's cache.
	if cc.private {
		return d, false
	}
	// Section 3.5: a response to a request with Authorization is stored
	// (and then shared) only when it says a shared cache may.
	if _, auth := r.Header["Authorization"]; auth && !cc.public && !cc.hasSMaxAge && !cc.hardMustRevalidate {
		return d, false
	}

	d.date = originDate(h)
	base := d.date
	if base.IsZero() {
		base = now
	}
	explicit := true
	switch {
	case cc.hasSMaxAge: // section 4.2.1: s-maxage first for a shared cache
		d.fresh = cc.sMaxAge
	case cc.hasMaxAge:
		d.fresh = cc.maxAge
	case !targeted && len(h["Expires"]) > 0:
		// An invalid Expires (0, say, or two of them) means already
		// expired (section 5.3); so does one at or before Date.
		if exp, ok := parseHTTPDate(h["Expires"]); ok && exp.After(base) {
			d.fresh = exp.Sub(base)
		}
	default:
		explicit = false
	}
	heuristic := slices.Contains(heuristicStatuses, status)
	if !explicit {
		// Section 3: without an explicit lifetime only heuristically
		// cacheable statuses, or a response marked public, are stored;
		// section 4.2.2: their lifetime is a fraction of the time since
		// Last-Modified.
		if !heuristic && !cc.public {
			return d, false
		}
		if lm, ok := parseHTTPDate(h["Last-Modified"]); ok && lm.Before(base) {
			d.fresh = base.Sub(lm) / heuristicFraction
		}
	}
	d.swr, d.sie = cc.swr, cc.sie
	// Section 4.2.4: never served stale against must-revalidate,
	// proxy-revalidate, s-maxage (which has proxy-revalidate's meaning
	// for a shared cache, section 5.2.2.10) or no-cache.
	if cc.mustRevalidate || cc.hasSMaxAge {
		d.swr, d.sie = 0, 0
	}
	if cc.noCache {
		// Section 5.2.2.4: stored, but reused only once validated.
		d.fresh, d.swr, d.sie = 0, 0, 0
	}
	d.fresh, d.swr, d.sie = min(d.fresh, p.MaxTTL), min(d.swr, p.MaxTTL), min(d.sie, p.MaxTTL)
	d.strip = append(slices.Clone(cc.noCacheFields), cc.privateFields...)
	d.noTransform = cc.noTransform
	if age, ok := ageValue(h); ok {
		d.age = age
	}
	// Worth storing only while something is left of its lifetime, or
	// for its validators, which let the next fill ask the origin with a
	// conditional request instead of fetching the body again.
	if d.initialAge(now, now) >= d.fresh+max(d.swr, d.sie) {
		if status != http.StatusOK || headerValue(h, "Etag") == "" && headerValue(h, "Last-Modified") == "" {
			return d, false
		}
		d.fresh, d.swr, d.sie, d.revalidateOnly = 0, 0, 0, true
	}
	return d, true
}

// originDate is the response's Date, or zero when it has none or an
// invalid one.
func originDate(h http.Header) time.Time {
	t, ok := parseHTTPDate(h["Date"])
	if !ok {
		return time.Time{}
	}
	return t
}

// parseHTTPDate parses the one field line of an HTTP-date field (RFC 9110
// section 5.6.7): an IMF-fixdate, or one of the two obsolete formats a
// recipient accepts, exactly as the grammar writes them (Go's parsers
// also take one-digit hours and extra spaces, which are invalid), but
// for the case of the names. Several field lines are invalid.
func parseHTTPDate(lines []string) (time.Time, bool) {
	if len(lines) != 1 {
		return time.Time{}, false
	}
	v := strings.TrimSpace(lines[0])
	if n := len(v); n > 4 && strings.EqualFold(v[n-4:], " GMT") {
		v = v[:n-3] + "GMT" // the zone in any case, as the names are
	}
	for _, layout := range [...]string{http.TimeFormat, time.RFC850, time.ANSIC} {
		t, err := time.Parse(layout, v)
		if err == nil && strings.EqualFold(afterDayName(t.Format(layout)), afterDayName(v)) {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// afterDayName is an HTTP-date without its day name, which a recipient
// does not check against the date (Go's parser does not either).
func afterDayName(v string) string {
	if i := strings.IndexAny(v, ", "); i >= 0 {
		return v[i:]
	}
	return v
}

// ageValue is the response's Age (RFC 9111 section 5.1): the first
// element of its first field line, when that is a delta-seconds.
func ageValue(h http.Header) (time.Duration, bool) {
	lines := h["Age"]
	if len(lines) == 0 {
		return 0, false
	}
	first, _, _ := strings.Cut(lines[0], ",")
	return deltaSeconds(strings.TrimSpace(first))
}

// cdnCacheControl parses CDN-Cache-Control (RFC 9213), a Structured Field
// Dictionary (RFC 8941): ok is false when the field is absent, empty or
// not a valid dictionary, or when a directive the cache acts on has a
// value of the wrong type (max-age="60"); the cache then ignores it, as
// section 2.1 says, and Cache-Control decides.
func cdnCacheControl(h http.Header) (cacheControl, bool) {
	lines := h["Cdn-Cache-Control"]
	if len(lines) == 0 || !validCDNCacheControl(strings.Join(lines, ",")) {
		return cacheControl{}, false
	}
	cc := parseDirectives(lines, true)
	return cc, cc.directives > 0
}

// validCDNCacheControl reports whether v is a Structured Field Dictionary
// whose delta-seconds directives are integers and whose other known
// directives are booleans.
func validCDNCacheControl(v string) bool {
	v = strings.Trim(v, " \t")
	if v == "" {
		return false
	}
	for v != "" {
		i := sfKey(v)
		if i == 0 {
			return false
		}
		key := v[:i]
		v = v[i:]
		kind := byte('?') // a bare key is the boolean true
		if strings.HasPrefix(v, "=") {
			var ok bool
			if kind, v, ok = sfItem(v[1:]); !ok {
				return false
			}
		}
		// parameters
		for strings.HasPrefix(v, ";") {
			v = strings.TrimLeft(v[1:], " ")
			j := sfKey(v)
			if j == 0 {
				return false
			}
			v = v[j:]
			if strings.HasPrefix(v, "=") {
				var ok bool
				if _, v, ok = sfItem(v[1:]); !ok {
					return false
				}
			}
		}
		switch key {
		case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
			if kind != 'i' {
				return false
			}
		case "no-store", "private", "no-cache", "public", "must-revalidate", "proxy-revalidate", "must-understand", "no-transform", "immutable":
			if kind != '?' {
				return false
			}
		}
		v = strings.TrimLeft(v, " \t")
		if v == "" {
			return true
		}
		if v[0] != ',' {
			return false
		}
		v = strings.TrimLeft(v[1:], " \t")
		if v == "" {
			return false // a trailing comma
		}
	}
	return true
}

// sfKey is the length of the Structured Field key at the front of v
// (RFC 8941 section 3.1.2): a lower-case letter or '*', then lower-case
// letters, digits, '_', '-', '.' and '*'; 0 when there is none.
func sfKey(v string) int {
	i := 0
	for i < len(v) && (v[i] >= 'a' && v[i] <= 'z' || v[i] == '*' || i > 0 && (v[i] >= '0' && v[i] <= '9' || v[i] == '_' || v[i] == '-' || v[i] == '.')) {
		i++
	}
	return i
}

// sfItem reads one Structured Field bare item off the front of v and
// returns its kind ('i' integer, 'd' decimal, 's' string, 't' token, 'b'
// byte sequence, '?' boolean) and the rest of v.
func sfItem(v string) (kind byte, rest string, ok bool) {
	if v == "" {
		return 0, v, false
	}
	switch c := v[0]; {
	case c == '-' || c >= '0' && c <= '9':
		i := 0
		if c == '-' {
			i++
		}
		start, dot := i, -1
		for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.' && dot < 0) {
			if v[i] == '.' {
				dot = i
			}
			i++
		}
		switch {
		case i == start, dot == i-1:
			return 0, v, false
		case dot < 0 && i-start > 15, dot >= 0 && (dot-start > 12 || i-dot-1 > 3):
			return 0, v, false
		case dot >= 0:
			return 'd', v[i:], true
		}
		return 'i', v[i:], true
	case c == '"':
		for i := 1; i < len(v); i++ {
			switch {
			case v[i] == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\'):
				i++
			case v[i] == '\\':
				return 0, v, false
			case v[i] == '"':
				return 's', v[i+1:], true
			case v[i] < 0x20 || v[i] > 0x7e:
				return 0, v, false
			}
		}
		return 0, v, false
	case c == '?':
		if len(v) < 2 || v[1] != '0' && v[1] != '1' {
			return 0, v, false
		}
		return '?', v[2:], true
	case c == ':':
		end := strings.IndexByte(v[1:], ':')
		if end < 0 {
			return 0, v, false
		}
		for _, b := range []byte(v[1 : 1+end]) {
			if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=') {
				return 0, v, false
			}
		}
		return 'b', v[end+2:], true
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '*':
		i := 1
		for i < len(v) && (isTokenChar(v[i]) || v[i] == ':' || v[i] == '/') {
			i++
		}
		return 't', v[i:], true
	}
	return 0, v, false
}

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// initialAge is how old the response already was when it was received
// at response, for a request sent at request (RFC 9111 section 4.2.3):
// the larger of its apparent age (response minus its Date) and its Age
// header plus the time the request took. Both are counted in whole
// seconds, as Date and Age are: a response received 900ms into the
// second its Date names is not 900ms old. In the default mode it is
// the Age header alone.
func (d decision) initialAge(request, response time.Time) time.Duration {
	if !d.standards {
		return d.age
	}
	apparent := time.Duration(0)
	if !d.date.IsZero() {
		apparent = max(response.Truncate(time.Second).Sub(d.date), 0)
	}
	corrected := d.age + max(response.Sub(request), 0).Truncate(time.Second)
	return max(apparent, corrected)
}

// entryDate is the Date a standards-mode entry keeps: the origin's, or
// the time it was received when the origin sent none.
func (d decision) entryDate(received time.Time) time.Time {
	if !d.standards {
		return time.Time{}
	}
	if d.date.IsZero() {
		return received.Truncate(time.Second)
	}
	return d.date
}

// stripFields deletes from h the fields a qualified no-cache or private
// keeps out of the stored response.
func (d decision) stripFields(h http.Header) {
	for _, name := range d.strip {
		delete(h, name)
	}
}

// mayServe reports whether a route in standards mode may answer r with
// the stored e. A request with Authorization is answered only with a
// response that says a shared cache may answer such requests (RFC 9111
// section 3.5): public, s-maxage or must-revalidate; the others go to
// the origin.
func (rt *route) mayServe(r *http.Request, e *storage.Entry) bool {
	if !rt.policy.Standards {
		return true
	}
	if _, auth := r.Header["Authorization"]; !auth {
		return true
	}
	cc := parseCacheControl(e.Header["Cache-Control"])
	if t, ok := cdnCacheControl(e.Header); ok {
		cc = t
	}
	return cc.public || cc.hasSMaxAge || cc.hardMustRevalidate
}

// canServe reports whether e may be served to r as it is stored: the
// route may answer r with it (mayServe), and r accepts its coding or e
// allows the cache to decode it (noTransform). A fill does not revalidate
// an entry it could not serve to its client.
func (rt *route) canServe(r *http.Request, e *storage.Entry) bool {
	if !rt.mayServe(r, e) {
		return false
	}
	return e.Coding == "" || acceptsCoding(r.Header["Accept-Encoding"], e.Coding) || !rt.noTransform(e)
}

// noTransform reports whether e's Cache-Control forbids the cache to
// transform its body (RFC 9110 section 7.7), which in standards mode
// keeps a client that does not accept its coding from getting it decoded.
func (rt *route) noTransform(e *storage.Entry) bool {
	return rt.policy.Standards && parseCacheControl(e.Header["Cache-Control"]).noTransform
}
