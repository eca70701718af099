package httpcache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// Errors of the purge and inspect methods; match them with [errors.Is].
var (
	// ErrUnknownRoute: no route was declared with that pattern.
	ErrUnknownRoute = errors.New("httpcache: unknown route")
	// ErrNoRoute: no declared route matches the URL.
	ErrNoRoute = errors.New("httpcache: no cached route matches the URL")
	// ErrCannotPurge: the store does not implement [storage.Purger].
	ErrCannotPurge = errors.New("httpcache: the store cannot purge")
	// ErrInvalid: a malformed argument (URL, bucket parameters, tag).
	ErrInvalid = errors.New("httpcache: invalid argument")
)

// fence is the purge generation a fill read before running the origin; a
// fenced store write fails if the bucket was purged since.
type fence struct {
	generation string
	ok         bool
}

func (c *Cache) purger() (storage.Purger, error) {
	p, ok := c.store.(storage.Purger)
	if !ok {
		return nil, ErrCannotPurge
	}
	return p, nil
}

// routePurger returns the store's purger and the route declared with
// pattern.
func (c *Cache) routePurger(pattern string) (storage.Purger, *route, error) {
	p, err := c.purger()
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.routes[pattern]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownRoute, pattern)
	}
	return p, rt, nil
}

// Every purge goes through these: after the store's purge, the fills of
// this process that began before it can no longer be joined (see
// flights.forget); other processes' are fenced by the store. The local
// tier learns of it at once (localChanged), whatever the store reports.

func (c *Cache) purgeBucket(ctx context.Context, p storage.Purger, bucket string) (int64, error) {
	ctx, sp := c.purgeSpan(ctx, "bucket", bucket)
	n, err := p.PurgeBucket(ctx, bucket)
	c.flights.forget(bucket + "\x00")
	c.localChanged([]string{bucket}, false)
	endPurge(sp, n, err)
	return n, err
}

func (c *Cache) purgePrefix(ctx context.Context, p storage.Purger, prefix string) (int64, error) {
	ctx, sp := c.purgeSpan(ctx, "route", prefix)
	n, err := p.PurgePrefix(ctx, prefix)
	c.flights.forget(prefix)
	c.localRoutePurged(prefix)
	endPurge(sp, n, err)
	return n, err
}

// purgeTag forgets every flight: which buckets carry the tag is known to
// the store only.
func (c *Cache) purgeTag(ctx context.Context, p storage.Purger, tag string) (int64, error) {
	ctx, sp := c.purgeSpan(ctx, "tag", tag)
	n, err := p.PurgeTag(ctx, tag)
	c.flights.forget("")
	c.localChanged(nil, true)
	endPurge(sp, n, err)
	return n, err
}

// PurgeBucket removes the bucket of the route declared with pattern whose
// bucket parameters have the given values, e.g. everything cached about
// user 15: one store command, every variant gone, on every instance.
func (c *Cache) PurgeBucket(ctx context.Context, pattern string, params map[string]string) (int64, error) {
	p, rt, err := c.routePurger(pattern)
	if err != nil {
		return 0, err
	}
	bucket, err := rt.key.BucketFor(params)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c.purgeBucket(ctx, p, bucket)
}

// PurgeRoute removes every bucket of the route declared with pattern.
func (c *Cache) PurgeRoute(ctx context.Context, pattern string) (int64, error) {
	p, rt, err := c.routePurger(pattern)
	if err != nil {
		return 0, err
	}
	return c.purgePrefix(ctx, p, rt.key.BucketPrefix())
}

// PurgeTag removes every bucket stored with tag, whether the policy's Tags
// func or the origin's Surrogate-Key header attached it.
func (c *Cache) PurgeTag(ctx context.Context, tag string) (int64, error) {
	p, err := c.purger()
	if err != nil {
		return 0, err
	}
	if tag == "" {
		return 0, fmt.Errorf("%w: empty tag", ErrInvalid)
	}
	return c.purgeTag(ctx, p, tag)
}

// PurgeAll removes everything the cache stored under the store's prefix.
func (c *Cache) PurgeAll(ctx context.Context) (int64, error) {
	p, err := c.purger()
	if err != nil {
		return 0, err
	}
	ctx, sp := c.purgeSpan(ctx, "all", "")
	n, err := p.PurgeAll(ctx)
	c.flights.forget("")
	c.localChanged(nil, true)
	endPurge(sp, n, err)
	return n, err
}

// PurgeURL removes the bucket that a GET of rawURL would be cached in.
func (c *Cache) PurgeURL(ctx context.Context, rawURL string) (int64, error) {
	p, err := c.purger()
	if err != nil {
		return 0, err
	}
	_, k, err := c.resolve(rawURL, nil)
	if err != nil {
		return 0, err
	}
	return c.purgeBucket(ctx, p, k.Bucket)
}

// resolve finds the declared route a GET of rawURL falls under (the most
// specific when several match) and the key it would be cached under.
func (c *Cache) resolve(rawURL string, header http.Header) (*route, keying.Key, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, keying.Key{}, fmt.Errorf("%w: URL: %w", ErrInvalid, err)
	}
	if u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https" {
		return nil, keying.Key{}, fmt.Errorf("%w: URL scheme %q", ErrInvalid, u.Scheme)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	r := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: header}
	if u.Scheme == "https" {
		r.TLS = &tls.ConnectionState{} // the scheme is part of the key
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	c.mu.Lock()
	routes := make([]*route, 0, len(c.routes))
	for _, rt := range c.routes {
		routes = append(routes, rt)
	}
	c.mu.Unlock()
	sort.Slice(routes, func(i, j int) bool {
		si, sj := routes[i].key.Specificity(), routes[j].key.Specificity()
		if si != sj {
			return si > sj
		}
		return routes[i].key.Pattern() < routes[j].key.Pattern()
	})
	for _, rt := range routes {
		if rt.key.Match(r) {
			k, err := rt.key.Key(r)
			if err != nil {
				return nil, keying.Key{}, fmt.Errorf("%w: URL: %w", ErrInvalid, err)
			}
			return rt, k, nil
		}
	}
	return nil, keying.Key{}, fmt.Errorf("%w: %s", ErrNoRoute, rawURL)
}

// Inspection describes what the cache holds for a URL.
type Inspection struct {
	Route    string `json:"route"`
	Bucket   string `json:"bucket"`
	Field    string `json:"field"` // hex
	Found    bool   `json:"found"`
	State    string `json:"state,omitempty"` // fresh, stale, stale-if-error, dead; undecodable or unknown-coding (misses)
	Status   int    `json:"status,omitempty"`
	AgeSec   int64  `json:"age_seconds,omitempty"`
	TTLSec   int64  `json:"ttl_seconds,omitempty"` // remaining freshness; negative when stale
	Size     int    `json:"stored_bytes,omitempty"`
	BodySize int    `json:"body_bytes,omitempty"`
	Coding   string `json:"content_coding,omitempty"`
	Stored   string `json:"stored_at,omitempty"`
	// VaryOn names the request headers the stored response varies on
	// beyond the route's key (standards mode): Field is then the
	// secondary field of the header's values given to Inspect.
	VaryOn []string `json:"vary_on,omitempty"`
}

// orEmpty is header, or an empty one for nil.
func orEmpty(header http.Header) http.Header {
	if header == nil {
		return http.Header{}
	}
	return header
}

// Inspect returns the key a GET of rawURL maps to and the state of its
// entry; header supplies request headers the route varies on.
func (c *Cache) Inspect(ctx context.Context, rawURL string, header http.Header) (Inspection, error) {
	rt, k, err := c.resolve(rawURL, header)
	if err != nil {
		return Inspection{}, err
	}
	in := Inspection{Route: rt.key.Pattern(), Bucket: k.Bucket, Field: k.FieldHex()}
	raw, err := c.store.Get(ctx, k.Bucket, k.Field)
	if err == nil && envelope.IsVary(raw) && rt.policy.Standards {
		if names, verr := envelope.DecodeVary(raw); verr == nil {
			in.VaryOn = names
		}
		k, raw, err = rt.resolveVary(ctx, k, raw, err, orEmpty(header))
		in.Field = k.FieldHex()
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return in, nil
	case err != nil:
		return in, fmt.Errorf("httpcache: inspect: %w", err)
	}
	var e storage.Entry
	if err := envelope.Decode(raw, &e); err != nil {
		in.State = "undecodable"
		in.Size = len(raw)
		return in, nil
	}
	now := time.Now()
	in.Found = true
	in.State = [...]string{"fresh", "stale", "stale-if-error", "dead"}[freshness(&e, now)]
	if !codec.Supported(e.Coding) && e.Coding != envelope.DictionaryCoding {
		in.State = "unknown-coding" // a miss on the hit path, whatever its times
	}
	in.Status = e.Status
	in.AgeSec = int64(max(now.Sub(e.Stored), 0) / time.Second)
	in.TTLSec = ttlSeconds(&e, now)
	in.Size = len(raw)
	in.BodySize = len(e.Body)
	in.Coding = e.Coding
	in.Stored = e.Stored.UTC().Format(time.RFC3339)
	return in, nil
}
