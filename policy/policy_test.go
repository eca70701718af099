package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		give      Policy
		wantField string // "" for valid
	}{
		{"zero is valid", Policy{}, ""},
		{"full", Policy{TTL: time.Minute, StaleWhileRevalidate: time.Minute, RefreshAhead: 0.8, Vary: []string{"Accept-Language"}, Statuses: []int{200, 404}}, ""},
		{"negative ttl", Policy{TTL: -1}, "TTL"},
		{"tiny ttl", Policy{TTL: time.Microsecond}, "TTL"},
		{"negative swr", Policy{StaleWhileRevalidate: -time.Second}, "StaleWhileRevalidate"},
		{"refresh ratio 1", Policy{RefreshAhead: 1}, "RefreshAhead"},
		{"both refresh rules", Policy{RefreshAhead: 0.5, XFetchBeta: 1}, "XFetchBeta"},
		{"negative beta", Policy{XFetchBeta: -1}, "XFetchBeta"},
		{"query list and ignore", Policy{IgnoreQuery: true, QueryParams: []string{"a"}}, "QueryParams"},
		{"duplicate query", Policy{QueryParams: []string{"a", "a"}}, "QueryParams"},
		{"empty bucket param", Policy{BucketParams: []string{""}}, "BucketParams"},
		{"bad vary", Policy{Vary: []string{"Accept Language"}}, "Vary"},
		{"duplicate vary", Policy{Vary: []string{"accept-language", "Accept-Language"}}, "Vary"},
		{"1xx status", Policy{Statuses: []int{101}}, "Statuses"},
		{"206", Policy{Statuses: []int{206}}, "Statuses"},
		{"negative body", Policy{MaxBodyBytes: -1}, "MaxBodyBytes"},
		{"short lock", Policy{LockTTL: time.Millisecond}, "LockTTL"},
		{"dictionary", Policy{Compression: CompressDictionary}, ""},
		{"no compression", Policy{Compression: CompressNone}, ""},
		{"unknown compression", Policy{Compression: "brotli"}, "Compression"},
		{"compression is case-sensitive", Policy{Compression: "Gzip"}, "Compression"},
		{"forward a tracing id", Policy{ForwardHeaders: []string{"Traceparent"}}, ""},
		{"forward cookies", Policy{ForwardHeaders: []string{"cookie"}}, "ForwardHeaders"},
		{"forward authorization", Policy{ForwardHeaders: []string{"Authorization"}, Vary: []string{"Authorization"}, AllowAuthorized: true}, "ForwardHeaders"},
		{"key on authorization", Policy{Vary: []string{"Authorization"}, AllowAuthorized: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("Validate() = %v, want a FieldError on %s", err, tt.wantField)
			}
			named := ForRoute("GET /x", err)
			if !strings.Contains(named.Error(), `route "GET /x": `+tt.wantField) {
				t.Errorf("ForRoute: %v", named)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.TTL != DefaultTTL || p.LockTTL != DefaultLockTTL || p.LockWait != DefaultLockWait || p.MaxBodyBytes != DefaultMaxBodyBytes || p.MaxFields != DefaultMaxFields || len(p.Statuses) == 0 {
		t.Errorf("defaults = %+v", p)
	}
	if p.Compression != CompressGzip {
		t.Errorf("default compression = %q, want %q", p.Compression, CompressGzip)
	}
	if q := (Policy{TTL: time.Second}).WithDefaults(); q.TTL != time.Second {
		t.Errorf("a set TTL was replaced: %v", q.TTL)
	}
	if DefaultMaxTTL != 24*time.Hour {
		t.Errorf("DefaultMaxTTL = %v, documented as 24h", DefaultMaxTTL)
	}
	// MaxTTL defaults to a day, or to the longest lifetime the policy
	// itself asks for, so that the default never cuts a declared one.
	for _, tt := range []struct {
		give Policy
		want time.Duration
	}{
		{Policy{}, 24 * time.Hour},
		{Policy{TTL: time.Hour}, 24 * time.Hour},
		{Policy{TTL: 48 * time.Hour}, 48 * time.Hour},
		{Policy{StaleWhileRevalidate: 30 * time.Hour}, 30 * time.Hour},
		{Policy{StaleIfError: 72 * time.Hour}, 72 * time.Hour},
		{Policy{TTL: 48 * time.Hour, MaxTTL: 49 * time.Hour}, 49 * time.Hour},
	} {
		if got := tt.give.WithDefaults().MaxTTL; got != tt.want {
			t.Errorf("%+v: MaxTTL %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestFileParseAndApply(t *testing.T) {
	f, err := Parse([]byte(`{
		"/users/{id}": {"ttl": "30s", "stale_if_error": "1h", "vary": ["Accept-Language"], "max_body_bytes": 1024},
		"GET /items": {"ignore_query": true, "compression": "dictionary", "local": true},
		"/proxy/{path...}": {"standards": true, "honor_request_cache_control": true, "max_ttl": "1h"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Patterns(); len(got) != 3 || got[1] != "/users/{id}" {
		t.Errorf("Patterns() = %q", got)
	}
	base := Policy{TTL: time.Minute, StaleWhileRevalidate: time.Minute, QueryParams: []string{"page"}}
	p, ok, err := f.Apply("/users/{id}", base)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if p.TTL != 30*time.Second || p.StaleIfError != time.Hour || p.StaleWhileRevalidate != time.Minute || p.MaxBodyBytes != 1024 || len(p.QueryParams) != 1 || p.Vary[0] != "Accept-Language" {
		t.Errorf("applied = %+v: present keys override, absent keys keep the code's values", p)
	}
	if p.Compression != "" {
		t.Errorf("compression = %q, want it left unset", p.Compression)
	}
	if p.Local {
		t.Errorf("local = true, want it left unset")
	}
	if p, _, err := f.Apply("GET /items", base); err != nil || !p.Local {
		t.Errorf("local from the file: %v %v", p.Local, err)
	}
	if p, _, err := f.Apply("GET /items", base); err != nil || p.Compression != CompressDictionary {
		t.Errorf("compression from the file = %q, %v; want %q", p.Compression, err, CompressDictionary)
	}
	if p, _, err := f.Apply("/proxy/{path...}", Policy{}); err != nil || !p.Standards || !p.HonorRequestCacheControl || p.MaxTTL != time.Hour {
		t.Errorf("standards from the file = %+v, %v", p, err)
	}
	if _, ok, _ := f.Apply("/other", base); ok {
		t.Errorf("Apply of an unlisted pattern reported an entry")
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"not json", `{`, "policy: file"},
		{"not an object", `[1]`, "policy: file"},
		{"null", `null`, "top level must be an object"},
		{"trailing", `{} {}`, "trailing data"},
		{"unknown key", `{"/x": {"ttl": "1s", "tll": "2s"}}`, `route "/x": json: unknown field "tll"`},
		{"bad duration", `{"/x": {"ttl": "soon"}}`, `bad duration "soon"`},
		{"number duration", `{"/x": {"ttl": 30}}`, "duration must be a string"},
		{"invalid value", `{"/x": {"refresh_ahead": 2}}`, `route "/x": RefreshAhead`},
		{"unknown compression", `{"/x": {"compression": "lz4"}}`, `route "/x": Compression: unknown compression "lz4"`},
		{"compression not a string", `{"/x": {"compression": true}}`, `route "/x"`},
		{"empty pattern", `{"": {}}`, "empty route pattern"},
		{"wrong type", `{"/x": {"vary": "Accept"}}`, `route "/x"`},
		{"standards with a ttl", `{"/x": {"standards": true, "ttl": "1m"}}`, `route "/x": TTL: cannot be set with Standards`},
		{"standards with statuses", `{"/x": {"standards": true, "statuses": [200]}}`, `route "/x": Statuses: cannot be set with Standards`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.give))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.json")
	os.WriteFile(path, []byte(`{"/x": {"ttl": "nope"}}`), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load = %v, want the file named", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("Load of a missing file: want an error")
	}
}

// FuzzParse: no policy file panics the parser, and whatever it accepts
// applies cleanly and validates.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"/users/{id}": {"ttl": "30s", "stale_if_error": "1h", "vary": ["Accept-Language"]}}`))
	f.Add([]byte(`{"/x": {"statuses": [200, 404], "refresh_ahead": 0.5, "bucket_params": ["id"]}}`))
	f.Add([]byte(`{"/x": {"ttl": "-1s"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		for _, pattern := range file.Patterns() {
			p, ok, err := file.Apply(pattern, Policy{})
			if !ok || err != nil {
				t.Fatalf("accepted file does not apply to %q: %v", pattern, err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted file yields an invalid policy for %q: %v", pattern, err)
			}
		}
	})
}
