package httpcache

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// serve writes the stored entry e as the response to r, answering
// conditional requests with 304 and choosing between the stored bytes and
// their decoded form by the client's Accept-Encoding. It never mutates e,
// which may be shared by collapsed requests.
func (rt *route) serve(w http.ResponseWriter, r *http.Request, e *storage.Entry, now time.Time, cacheStatus string) {
	h := w.Header()
	for name, values := range e.Header {
		h[name] = values[:len(values):len(values)] // appends by others must copy
	}
	// One backing array for the headers the cache sets: Age, Cache-Status,
	// Content-Encoding, Content-Length.
	own := make([]string, 4)
	age := max(now.Sub(e.Stored), 0) / time.Second
	own[0] = strconv.FormatInt(int64(age), 10)
	own[1] = cacheStatus
	h["Age"] = own[0:1:1]
	h["Cache-Status"] = own[1:2:2]
	if e.Coding != "" {
		addVary(h, "Accept-Encoding")
	}
	if e.Status == http.StatusOK && notModified(r, e) {
		delete(h, "Content-Type")
		delete(h, "Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	bodyless := r.Method == http.MethodHead || e.Status == http.StatusNoContent || e.Status == http.StatusNotModified
	if e.Coding == "" || acceptsCoding(r.Header["Accept-Encoding"], e.Coding) {
		if e.Coding != "" {
			own[2] = e.Coding
			h["Content-Encoding"] = own[2:3:3]
			if e.CacheEncoded {
				weakenETag(h)
			}
		}
		if e.Status != http.StatusNoContent {
			own[3] = strconv.Itoa(len(e.Body))
			h["Content-Length"] = own[3:4:4]
		}
		w.WriteHeader(e.Status)
		if !bodyless {
			w.Write(e.Body) //nolint:errcheck // the client went away; nothing to do
		}
		return
	}
	// The client does not accept the stored coding: decode into a pooled
	// buffer so the response still has an exact Content-Length.
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuf(buf)
	if err := storage.WriteBody(buf, e); err != nil {
		// Undecodable body: not servable. Report it and fail this response
		// rather than send garbage; the next fill replaces the entry.
		rt.reportError(r.Context(), "decode stored body", err)
		clear(h)
		http.Error(w, "cached entry unreadable", http.StatusBadGateway)
		return
	}
	delete(h, "Content-Encoding")
	if e.Status != http.StatusNoContent {
		h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	}
	w.WriteHeader(e.Status)
	if !bodyless {
		w.Write(buf.Bytes()) //nolint:errcheck // the client went away; nothing to do
	}
}

// notModified evaluates If-None-Match, or If-Modified-Since when there is
// no If-None-Match (RFC 9110 section 13.2.2), against the stored entry.
func notModified(r *http.Request, e *storage.Entry) bool {
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		etag := e.Header.Get("Etag")
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
	ims := r.Header.Get("If-Modified-Since")
	lm := e.Header.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	modified, err := http.ParseTime(lm)
	if err != nil {
		return false
	}
	return !modified.After(since)
}

func weakMatch(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// weakenETag marks a strong ETag weak: the cache changed the representation
// by encoding it, so byte-for-byte equality with the origin's no longer holds.
func weakenETag(h http.Header) {
	if v := h["Etag"]; len(v) == 1 && strings.HasPrefix(v[0], `"`) {
		h["Etag"] = []string{"W/" + v[0]}
	}
}

// addVary adds name to the Vary header unless it is already listed.
func addVary(h http.Header, name string) {
	for _, v := range h["Vary"] {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, name) {
				return
			}
		}
	}
	vary := h["Vary"]
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
