package httpcache

import (
	"strconv"
	"time"

	"github.com/readthrough/readthrough/storage"
)

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
