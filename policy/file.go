package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// File holds per-route policy overrides loaded from JSON, keyed by route
// pattern exactly as the route is declared. Operators use it to tune
// lifetimes without a rebuild: a key present in the file replaces the value
// declared in Go, an absent key keeps it.
//
// The format, with durations in [time.ParseDuration] syntax:
//
//	{
//	  "/users/{id}": {
//	    "ttl": "30s",
//	    "stale_while_revalidate": "1m",
//	    "stale_if_error": "10m",
//	    "refresh_ahead": 0.8,
//	    "xfetch_beta": 1.0,
//	    "lock_ttl": "5s",
//	    "lock_wait": "5s",
//	    "fill_timeout": "30s",
//	    "bucket_params": ["id"],
//	    "query_params": ["page"],
//	    "ignore_query": false,
//	    "vary": ["Accept-Language"],
//	    "statuses": [200, 404],
//	    "max_body_bytes": 1048576,
//	    "max_fields": 1000,
//	    "max_ttl": "24h",
//	    "forward_headers": ["X-Request-Id"],
//	    "honor_origin_cache_control": true,
//	    "allow_authorized": false,
//	    "compression": "dictionary",
//	    "local": true
//	  }
//	}
type File struct {
	entries map[string]json.RawMessage
}

// Load reads and checks a policy file; see [Parse].
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: read file: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return f, nil
}

// Parse checks a policy file's contents: it must be one JSON object of
// route patterns to policy objects, with known keys only, valid durations,
// and values that pass [Policy.Validate].
func Parse(data []byte) (*File, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("policy: file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("policy: file: trailing data after the top-level object")
	}
	if raw == nil {
		return nil, errors.New("policy: file: top level must be an object of route patterns")
	}
	var errs []error
	for _, pattern := range sortedKeys(raw) {
		if pattern == "" {
			errs = append(errs, errors.New("policy: file: empty route pattern"))
			continue
		}
		var p Policy
		if err := p.decodeOverride(raw[pattern]); err != nil {
			errs = append(errs, fmt.Errorf("policy: route %q: %w", pattern, err))
			continue
		}
		errs = append(errs, ForRoute(pattern, p.Validate()))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &File{entries: raw}, nil
}

// Patterns returns the route patterns the file configures, sorted.
func (f *File) Patterns() []string {
	if f == nil {
		return nil
	}
	return sortedKeys(f.entries)
}

// Apply returns p with the file's overrides for pattern applied, and
// whether the file has an entry for pattern.
func (f *File) Apply(pattern string, p Policy) (Policy, bool, error) {
	if f == nil {
		return p, false, nil
	}
	raw, ok := f.entries[pattern]
	if !ok {
		return p, false, nil
	}
	if err := p.decodeOverride(raw); err != nil {
		return p, true, fmt.Errorf("policy: route %q: %w", pattern, err)
	}
	return p, true, nil
}

// fileEntry mirrors Policy with JSON names; pointers tell present keys from
// absent ones so that only present keys override.
type fileEntry struct {
	TTL                      *duration `json:"ttl"`
	StaleWhileRevalidate     *duration `json:"stale_while_revalidate"`
	StaleIfError             *duration `json:"stale_if_error"`
	RefreshAhead             *float64  `json:"refresh_ahead"`
	XFetchBeta               *float64  `json:"xfetch_beta"`
	LockTTL                  *duration `json:"lock_ttl"`
	LockWait                 *duration `json:"lock_wait"`
	FillTimeout              *duration `json:"fill_timeout"`
	BucketParams             *[]string `json:"bucket_params"`
	QueryParams              *[]string `json:"query_params"`
	IgnoreQuery              *bool     `json:"ignore_query"`
	Vary                     *[]string `json:"vary"`
	Statuses                 *[]int    `json:"statuses"`
	MaxBodyBytes             *int64    `json:"max_body_bytes"`
	MaxFields                *int      `json:"max_fields"`
	MaxTTL                   *duration `json:"max_ttl"`
	ForwardHeaders           *[]string `json:"forward_headers"`
	HonorOriginCacheControl  *bool     `json:"honor_origin_cache_control"`
	AllowAuthorized          *bool     `json:"allow_authorized"`
	Compression              *string   `json:"compression"`
	Local                    *bool     `json:"local"`
	Standards                *bool     `json:"standards"`
	HonorRequestCacheControl *bool     `json:"honor_request_cache_control"`
}

func (p *Policy) decodeOverride(raw json.RawMessage) error {
	var e fileEntry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return err
	}
	setD := func(dst *time.Duration, src *duration) {
		if src != nil {
			*dst = time.Duration(*src)
		}
	}
	setD(&p.TTL, e.TTL)
	setD(&p.StaleWhileRevalidate, e.StaleWhileRevalidate)
	setD(&p.StaleIfError, e.StaleIfError)
	setD(&p.LockTTL, e.LockTTL)
	setD(&p.LockWait, e.LockWait)
	setD(&p.FillTimeout, e.FillTimeout)
	set(&p.RefreshAhead, e.RefreshAhead)
	set(&p.XFetchBeta, e.XFetchBeta)
	set(&p.BucketParams, e.BucketParams)
	set(&p.QueryParams, e.QueryParams)
	set(&p.IgnoreQuery, e.IgnoreQuery)
	set(&p.Vary, e.Vary)
	set(&p.Statuses, e.Statuses)
	set(&p.MaxBodyBytes, e.MaxBodyBytes)
	set(&p.MaxFields, e.MaxFields)
	setD(&p.MaxTTL, e.MaxTTL)
	set(&p.ForwardHeaders, e.ForwardHeaders)
	set(&p.HonorOriginCacheControl, e.HonorOriginCacheControl)
	set(&p.AllowAuthorized, e.AllowAuthorized)
	set(&p.Local, e.Local)
	set(&p.Standards, e.Standards)
	set(&p.HonorRequestCacheControl, e.HonorRequestCacheControl)
	if e.Compression != nil {
		p.Compression = Compression(*e.Compression)
	}
	return nil
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// duration decodes a JSON string in time.ParseDuration syntax.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	*d = duration(v)
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
