package httpcache

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/storage"
)

// serveEntry writes the stored entry e as the response to r, answering
// conditional requests with 304 and choosing between the stored bytes and
// their decoded form by the client's Accept-Encoding. It never mutates e,
// which may be shared by collapsed requests.
//
// When the body must be decoded for the client and cannot be, it sends
// nothing, leaves w's headers as they were, and returns false, so that the
// caller can go to the origin instead: a body that does not decode is
// reported and its entry deleted (the next request is a miss that replaces
// it); one that decodes past the route's MaxBodyBytes (a decompression
// bomb: 100 KB of gzip can hold 100 MB of zeros) is never decoded further,
// and its entry is kept for the clients that take it as it is.
func (rt *route) serveEntry(w http.ResponseWriter, r *http.Request, e *storage.Entry, now time.Time, cacheStatus string) bool {
	return rt.serveEntryOwn(w, r, e, now, cacheStatus, make([]string, 7), true)
}

// serveEntryOwn is serveEntry with own, seven strings the caller allocated,
// as the backing array of the headers the cache sets (the hit path
// allocates them with other things it needs).
//
// With shared, e is a local copy that outlives the request: the values of
// its headers are copied rather than handed out, so that a handler
// wrapping the cache which sets a value in place (h["X"][0] = v) changes
// this response only.
func (rt *route) serveEntryOwn(w http.ResponseWriter, r *http.Request, e *storage.Entry, now time.Time, cacheStatus string, own []string, shared bool) bool {
	if !rt.mayServe(r, e) {
		return false
	}
	notMod := e.Status == http.StatusOK && notModified(r, e)
	send := e.Body // the body as the client gets it
	decode := !notMod && e.Coding != "" && !acceptsCoding(r.Header["Accept-Encoding"], e.Coding)
	if decode && rt.noTransform(e) {
		return false // no-transform: the origin answers this client
	}
	if decode {
		// The client does not accept the stored coding: it gets the body
		// decoded, with an exact Content-Length. Decoded before any header
		// is set, so that a body that does not decode leaves no trace.
		if send = rt.cache.decoded.Get(e.Body); send == nil {
			buf := boundedBuffers.Get().(*boundedBuffer)
			defer buf.release()
			buf.limit = rt.policy.MaxBodyBytes
			err := codec.Decode(buf, e.Coding, e.Body)
			switch {
			case errors.Is(err, errDecodedTooLarge):
				rt.stats.add(cOversizeDecodes, 1)
				return false
			case err != nil:
				rt.reportError(r.Context(), "decode stored body", err)
				if k, kerr := rt.key.Key(r); kerr == nil {
					rt.dropField(context.WithoutCancel(r.Context()), k)
				}
				return false
			}
			send = buf.Bytes()
			if rt.cache.decoded.Takes(len(e.Body), len(send)) {
				rt.cache.decoded.Put(e.Body, bytes.Clone(send))
			}
		}
	}

	h := w.Header()
	if shared {
		copyHeader(h, e.Header)
	} else {
		for name, values := range e.Header {
			if name == "Surrogate-Key" {
				continue // the entry's tags, for this cache only
			}
			h[name] = values[:len(values):len(values)] // appends by others must copy
		}
	}
	// One backing array for the headers the cache sets: Age, Cache-Status,
	// Content-Encoding, Content-Length, Vary, ETag, Date.
	age := max(now.Sub(e.Stored), 0) / time.Second
	own[0] = strconv.FormatInt(int64(age), 10)
	own[1] = cacheStatus
	h["Age"] = own[0:1:1]
	h["Cache-Status"] = own[1:2:2]
	if !e.Date.IsZero() {
		// The origin's Date, which a standards-mode entry keeps (RFC
		// 9111 section 4): the Age above counts from it.
		own[6] = e.Date.Format(http.TimeFormat)
		h["Date"] = own[6:7:7]
	}
	if e.Coding != "" {
		addVary(h, "Accept-Encoding", own[4:5:5])
	}
	if notMod {
		// The 304 carries the ETag the 200 would have (RFC 9110 section
		// 15.4.5): weak when the bytes this client would get are not the
		// origin's.
		wouldDecode := e.Coding != "" && !acceptsCoding(r.Header["Accept-Encoding"], e.Coding)
		if wouldDecode != e.CacheEncoded && e.Coding != "" {
			weakenETag(h, own[5:6:6])
		}
		delete(h, "Content-Type")
		delete(h, "Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	switch {
	case decode:
		delete(h, "Content-Encoding")
		if !e.CacheEncoded {
			// The origin's ETag names its encoded bytes; these differ.
			weakenETag(h, own[5:6:6])
		}
	case e.Coding != "":
		own[2] = e.Coding
		h["Content-Encoding"] = own[2:3:3]
		if e.CacheEncoded {
			// The cache encoded them: not the origin's bytes either.
			weakenETag(h, own[5:6:6])
		}
	}
	status := e.Status
	if rt.policy.Standards && status == http.StatusOK && len(r.Header["Range"]) > 0 {
		// One range of the stored representation (RFC 9110 section 14),
		// of the bytes this client gets, validated by the ETag it gets.
		size := int64(len(send))
		start, end, kind := evalRange(r, size, headerValue(h, "Etag"), headerValue(h, "Last-Modified"), headerValue(h, "Date"))
		switch kind {
		case rangePartial:
			status, send = http.StatusPartialContent, send[start:end+1]
			h["Content-Range"] = []string{contentRange(start, end, size, kind)}
		case rangeUnsatisfiable:
			status, send = http.StatusRequestedRangeNotSatisfiable, nil
			h["Content-Range"] = []string{contentRange(0, 0, size, kind)}
			delete(h, "Content-Type")
		}
	}
	bodyless := r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
	writeBody(w, status, send, bodyless, own[3:4:4])
	return true
}

// errDecodedTooLarge is a stored body that decodes past the route's
// MaxBodyBytes.
var errDecodedTooLarge = errors.New("httpcache: stored body decodes past the route's MaxBodyBytes")

// boundedBuffer is a buffer that refuses to grow past limit bytes; they
// are pooled, so that a decoding hit allocates nothing for it.
type boundedBuffer struct {
	bytes.Buffer
	limit int64
}

var boundedBuffers = sync.Pool{New: func() any { return new(boundedBuffer) }}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len()+len(p)) > b.limit {
		return 0, errDecodedTooLarge
	}
	return b.Buffer.Write(p)
}

// release returns b to the pool unless it grew too large to keep.
func (b *boundedBuffer) release() {
	if b.Cap() <= 4<<20 {
		b.Reset()
		boundedBuffers.Put(b)
	}
}

// copyHeader sets the headers of stored in h, but Surrogate-Key, with
// copies of their values in one backing array.
func copyHeader(h, stored http.Header) {
	n := 0
	for _, values := range stored {
		n += len(values)
	}
	all := make([]string, 0, n)
	for name, values := range stored {
		if name == "Surrogate-Key" {
			continue // the entry's tags, for this cache only
		}
		start := len(all)
		all = append(all, values...)
		h[name] = all[start:len(all):len(all)]
	}
}

// writeBody sends status and body, with a Content-Length (held in
// length, a one-element slice of the caller's) unless the status is 204,
// and without the body for HEAD and bodyless statuses.
func writeBody(w http.ResponseWriter, status int, body []byte, bodyless bool, length []string) {
	if status != http.StatusNoContent {
		length[0] = strconv.Itoa(len(body))
		w.Header()["Content-Length"] = length
	}
	w.WriteHeader(status)
	if !bodyless {
		w.Write(body) //nolint:errcheck // the client went away; nothing to do
	}
}

// notModified evaluates If-None-Match, or If-Modified-Since when there is
// no If-None-Match (RFC 9110 section 13.2.2), against the stored entry.
func notModified(r *http.Request, e *storage.Entry) bool {
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		etag := headerValue(e.Header, "Etag")
		if etag == "" {
			return false
		}
		for _, list := range inm {
			for _, tag := range strings.Split(list, ",") {
				tag = strings.TrimSpace(tag)
				if tag == "*" || weakMatch(tag, etag) {
					return true
				}
			}
		}
		return false
	}
	ims := headerValue(r.Header, "If-Modified-Since")
	if ims == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	lm := headerValue(e.Header, "Last-Modified")
	if lm == "" {
		// Without a Last-Modified, the stored response's Date answers
		// (RFC 9111 section 4.3.2): a standards-mode entry keeps it.
		return !e.Date.IsZero() && !e.Date.After(since)
	}
	modified, err := http.ParseTime(lm)
	if err != nil {
		return false
	}
	return !modified.After(since)
}

// headerValue is h.Get(key) for a key already in canonical form, without
// Get's canonicalisation of it, which is a measurable share of a hit: the
// hit path looks up several headers of every request and entry, whose
// names net/http and envelope.Decode have put in canonical form.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// weakenETag marks a strong ETag weak: the cache changed the representation
// by encoding it, so byte-for-byte equality with the origin's no longer
// holds. slot, a one-element slice, holds the new value.
func weakenETag(h http.Header, slot []string) {
	if v := h["Etag"]; len(v) == 1 && strings.HasPrefix(v[0], `"`) {
		slot[0] = "W/" + v[0]
		h["Etag"] = slot
	}
}

// addVary adds name to the Vary header unless it is already listed. slot,
// a one-element slice, holds the header when it had no value.
func addVary(h http.Header, name string, slot []string) {
	vary := h["Vary"]
	for _, v := range vary {
		for f, rest, more := "", v, true; more; {
			f, rest, more = strings.Cut(rest, ",")
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, name) {
				return
			}
		}
	}
	if len(vary) == 0 {
		slot[0] = name
		h["Vary"] = slot
		return
	}
	h["Vary"] = append(vary[:len(vary):len(vary)], name)
}

// acceptsCoding reports whether an Accept-Encoding header accepts coding
// with a non-zero quality (RFC 9110 section 12.5.3).
func acceptsCoding(header []string, coding string) bool {
	wildcard := false
	for _, list := range header {
		for list != "" {
			var item string
			item, list, _ = strings.Cut(list, ",")
			name, params, _ := strings.Cut(item, ";")
			name = strings.TrimSpace(name)
			ok := qualityNonZero(params)
			switch {
			case strings.EqualFold(name, coding):
				return ok
			case name == "*":
				wildcard = ok
			case coding == "gzip" && strings.EqualFold(name, "x-gzip"):
				return ok
			}
		}
	}
	return wildcard
}

func qualityNonZero(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err != nil || q > 0
		}
	}
	return true
}

// Cache-Status values (RFC 9211).

func (rt *route) status(params string) string { return rt.cache.name + "; " + params }

func itoa(n int) string { return strconv.Itoa(n) }

// ttlSeconds is the entry's remaining freshness in whole seconds, negative
// once stale; it is the freshness lifetime minus the Age header's value, so
// the two always add up.
func ttlSeconds(e *storage.Entry, now time.Time) int64 {
	age := max(now.Sub(e.Stored), 0) / time.Second
	return int64(e.Fresh/time.Second) - int64(age)
}

func hitStatus(name string, e *storage.Entry, now time.Time) string {
	// Built in a stack buffer: one allocation, the string, per hit.
	var buf [64]byte
	b := append(buf[:0], name...)
	b = append(b, "; hit; ttl="...)
	return string(strconv.AppendInt(b, ttlSeconds(e, now), 10))
}

// localHitStatus is hitStatus for a copy served from the local tier.
func localHitStatus(name string, e *storage.Entry, now time.Time) string {
	var buf [80]byte
	b := append(buf[:0], name...)
	b = append(b, "; hit; ttl="...)
	b = strconv.AppendInt(b, ttlSeconds(e, now), 10)
	return string(append(b, "; detail=local"...))
}

// localStaleStatus is staleStatus for a copy served from the local tier.
func localStaleStatus(name string, e *storage.Entry, now time.Time) string {
	return name + "; hit; ttl=" + strconv.FormatInt(ttlSeconds(e, now), 10) + "; detail=local-stale-while-revalidate"
}

func staleStatus(name string, e *storage.Entry, now time.Time) string {
	return name + "; hit; ttl=" + strconv.FormatInt(ttlSeconds(e, now), 10) + "; detail=stale-while-revalidate"
}

// staleErrorStatus marks a stale entry served because the origin failed
// (fwdStatus is its status, 0 when it produced none) or the fill wait ran out.
func staleErrorStatus(name string, e *storage.Entry, fwdStatus int, detail string) string {
	s := name + "; fwd=stale"
	if fwdStatus != 0 {
		s += "; fwd-status=" + strconv.Itoa(fwdStatus)
	}
	return s + "; ttl=" + strconv.FormatInt(ttlSeconds(e, time.Now()), 10) + "; detail=" + detail
}
