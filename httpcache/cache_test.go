package httpcache

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

func TestMissThenHit(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	o := textOrigin("hello", "Etag", `"v1"`, "X-Origin", "yes")
	h := mux(t, c, "GET /users/{id}", policy.Policy{TTL: time.Minute}, o)

	first := do(h, "GET", "/users/15")
	if first.status != 200 || first.body != "hello" {
		t.Fatalf("first = %d %q", first.status, first.body)
	}
	if got, want := first.cacheStatus(), "readthrough; fwd=uri-miss; fwd-status=200; stored"; got != want {
		t.Errorf("first Cache-Status = %q, want %q", got, want)
	}
	second := do(h, "GET", "/users/15")
	if !second.isHit() || second.body != "hello" {
		t.Fatalf("second = %q %q", second.cacheStatus(), second.body)
	}
	for _, name := range []string{"Etag", "X-Origin", "Content-Type"} {
		if second.header.Get(name) != first.header.Get(name) {
			t.Errorf("%s = %q on hit, %q from origin", name, second.header.Get(name), first.header.Get(name))
		}
	}
	if second.header.Get("Age") != "0" {
		t.Errorf("Age = %q", second.header.Get("Age"))
	}
	if second.header.Get("Content-Length") != "5" {
		t.Errorf("Content-Length = %q", second.header.Get("Content-Length"))
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1", n)
	}
	if other := do(h, "GET", "/users/16"); other.isHit() {
		t.Errorf("other bucket was a hit: %q", other.cacheStatus())
	}
	s := c.Stats()
	if s.Hits != 1 || s.Misses != 2 || s.Stored != 2 {
		t.Errorf("stats = %+v", s)
	}
}

func TestConditionalAndHead(t *testing.T) {
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	c := newTestCache(t, newMemStore(t))
	o := textOrigin("body", "Etag", `"abc"`, "Last-Modified", lm)
	h := mux(t, c, "GET /x", policy.Policy{}, o)
	do(h, "GET", "/x")

	tests := []struct {
		name       string
		give       []string
		method     string
		wantStatus int
		wantBody   string
	}{
		{"if-none-match", []string{"If-None-Match", `"abc"`}, "GET", 304, ""},
		{"if-none-match weak", []string{"If-None-Match", `W/"abc"`}, "GET", 304, ""},
		{"if-none-match list", []string{"If-None-Match", `"zz", "abc"`}, "GET", 304, ""},
		{"if-none-match star", []string{"If-None-Match", `*`}, "GET", 304, ""},
		{"if-none-match other", []string{"If-None-Match", `"zz"`}, "GET", 200, "body"},
		{"if-modified-since same", []string{"If-Modified-Since", lm}, "GET", 304, ""},
		{"if-modified-since earlier", []string{"If-Modified-Since", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)}, "GET", 200, "body"},
		{"inm wins over ims", []string{"If-None-Match", `"zz"`, "If-Modified-Since", lm}, "GET", 200, "body"},
		{"head", nil, "HEAD", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(h, tt.method, "/x", tt.give...)
			if got.status != tt.wantStatus || got.body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", got.status, got.body, tt.wantStatus, tt.wantBody)
			}
			if !got.isHit() {
				t.Errorf("Cache-Status = %q, want a hit", got.cacheStatus())
			}
		})
	}
	if head := do(h, "HEAD", "/x"); head.header.Get("Content-Length") != "4" {
		t.Errorf("HEAD Content-Length = %q", head.header.Get("Content-Length"))
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1", n)
	}
}

func TestHeadMissFillsGetEntry(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	var methods []string
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		methods = append(methods, r.Method)
		io.WriteString(w, "payload")
	}}
	h := mux(t, c, "/x", policy.Policy{}, o)
	if got := do(h, "HEAD", "/x"); got.status != 200 || got.body != "" {
		t.Fatalf("HEAD = %d %q", got.status, got.body)
	}
	if got := do(h, "GET", "/x"); !got.isHit() || got.body != "payload" {
		t.Fatalf("GET after HEAD = %q %q", got.cacheStatus(), got.body)
	}
	if len(methods) != 1 || methods[0] != "GET" {
		t.Errorf("origin saw %v, want one GET", methods)
	}
}

func TestContentCoding(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	body := strings.Repeat(`{"name":"readthrough","kind":"cache"},`, 100)
	h := mux(t, c, "/j", policy.Policy{}, textOrigin(body, "Content-Type", "application/json", "Etag", `"j1"`))
	do(h, "GET", "/j")

	gz := do(h, "GET", "/j", "Accept-Encoding", "br, gzip;q=0.8")
	if gz.header.Get("Content-Encoding") != "gzip" || !strings.Contains(gz.header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("gzip client got Content-Encoding %q, Vary %q", gz.header.Get("Content-Encoding"), gz.header.Get("Vary"))
	}
	if gz.header.Get("Etag") != `W/"j1"` {
		t.Errorf("ETag of cache-encoded body = %q, want weak", gz.header.Get("Etag"))
	}
	zr, err := gzip.NewReader(strings.NewReader(gz.body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); string(plain) != body {
		t.Errorf("gzip body decodes to %d bytes, want %d", len(plain), len(body))
	}
	for _, ae := range []string{"", "identity", "gzip;q=0", "br"} {
		got := do(h, "GET", "/j", "Accept-Encoding", ae)
		if got.body != body || got.header.Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q: got %d bytes, Content-Encoding %q", ae, len(got.body), got.header.Get("Content-Encoding"))
		}
		if got.header.Get("Etag") != `"j1"` {
			t.Errorf("Accept-Encoding %q: ETag %q", ae, got.header.Get("Etag"))
		}
	}
}

func TestOriginEncodedBodyKept(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	plain := strings.Repeat("abc", 500)
	var buf strings.Builder
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, plain)
	zw.Close()
	h := mux(t, c, "/g", policy.Policy{}, textOrigin(buf.String(), "Content-Encoding", "gzip", "Vary", "Accept-Encoding"))
	do(h, "GET", "/g", "Accept-Encoding", "gzip")
	got := do(h, "GET", "/g", "Accept-Encoding", "gzip")
	if !got.isHit() || got.body != buf.String() {
		t.Fatalf("hit = %q, %d bytes, want the origin's gzip bytes", got.cacheStatus(), len(got.body))
	}
	if dec := do(h, "GET", "/g"); dec.body != plain || dec.header.Get("Content-Encoding") != "" {
		t.Errorf("identity client got %d bytes with Content-Encoding %q", len(dec.body), dec.header.Get("Content-Encoding"))
	}
}

func TestBypass(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		headers []string
		pol     policy.Policy
		want    string
	}{
		{"post", "POST", nil, policy.Policy{}, "readthrough; fwd=method"},
		{"authorization", "GET", []string{"Authorization", "Bearer x"}, policy.Policy{}, "readthrough; fwd=bypass; detail=authorization"},
		{"cookie", "GET", []string{"Cookie", "a=b"}, policy.Policy{}, "readthrough; fwd=bypass; detail=cookie"},
		{"no-store", "GET", []string{"Cache-Control", "no-store"}, policy.Policy{}, "readthrough; fwd=request; detail=no-store"},
		{"upgrade", "GET", []string{"Upgrade", "websocket"}, policy.Policy{}, "readthrough; fwd=bypass; detail=upgrade"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, newMemStore(t))
			o := textOrigin("x")
			h := mux(t, c, "/b", tt.pol, o)
			for range 2 {
				if got := do(h, tt.method, "/b", tt.headers...); got.cacheStatus() != tt.want {
					t.Fatalf("Cache-Status = %q, want %q", got.cacheStatus(), tt.want)
				}
			}
			if o.calls.Load() != 2 {
				t.Errorf("origin calls = %d, want 2", o.calls.Load())
			}
			if got := do(h, "GET", "/b"); got.isHit() {
				t.Errorf("a bypassed request stored its response")
			}
		})
	}
	t.Run("allow authorized", func(t *testing.T) {
		c := newTestCache(t, newMemStore(t))
		h := mux(t, c, "/b", policy.Policy{AllowAuthorized: true, Vary: []string{"Authorization"}}, textOrigin("x"))
		do(h, "GET", "/b", "Authorization", "Bearer a")
		if got := do(h, "GET", "/b", "Authorization", "Bearer a"); !got.isHit() {
			t.Errorf("Cache-Status = %q, want a hit", got.cacheStatus())
		}
		if got := do(h, "GET", "/b", "Authorization", "Bearer b"); got.isHit() {
			t.Errorf("another token got the first one's entry")
		}
	})
}

func TestNeverStore(t *testing.T) {
	big := strings.Repeat("x", 2000)
	tests := []struct {
		name string
		pol  policy.Policy
		fn   http.HandlerFunc
	}{
		{"set-cookie", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
			io.WriteString(w, "x")
		}},
		{"private", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "private, max-age=60")
			io.WriteString(w, "x")
		}},
		{"no-store", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, "x")
		}},
		{"surrogate no-store", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Surrogate-Control", "no-store")
			io.WriteString(w, "x")
		}},
		{"status not listed", policy.Policy{Statuses: []int{200}}, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "gone", http.StatusNotFound)
		}},
		{"server error", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}},
		{"too large", policy.Policy{MaxBodyBytes: 1000}, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, big)
		}},
		{"short body", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
		}},
		{"flushed stream", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "a")
			http.NewResponseController(w).Flush()
			io.WriteString(w, "b")
		}},
		{"vary on unkeyed header", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Language")
			io.WriteString(w, "x")
		}},
		{"vary star", policy.Policy{}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "*")
			io.WriteString(w, "x")
		}},
		{"honoured max-age=0", policy.Policy{HonorOriginCacheControl: true}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=0")
			io.WriteString(w, "x")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore(t)
			c := newTestCache(t, store)
			o := &origin{fn: tt.fn}
			h := mux(t, c, "/n", tt.pol, o)
			first := do(h, "GET", "/n")
			second := do(h, "GET", "/n")
			if o.calls.Load() != 2 || second.isHit() {
				t.Fatalf("stored: origin calls %d, second Cache-Status %q", o.calls.Load(), second.cacheStatus())
			}
			if first.body != second.body {
				t.Errorf("bodies differ: %q vs %q", first.body, second.body)
			}
			if strings.Contains(first.cacheStatus(), "stored") && tt.name != "too large" && tt.name != "short body" && tt.name != "flushed stream" {
				t.Errorf("Cache-Status %q claims stored", first.cacheStatus())
			}
		})
	}
}

func TestPanicIsNotStored(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	var fail bool = true
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		if fail {
			panic("boom")
		}
	}}
	h := mux(t, c, "/p", policy.Policy{}, o)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the origin's panic re-raised", v)
			}
		}()
		do(h, "GET", "/p")
	}()
	fail = false
	if got := do(h, "GET", "/p"); got.isHit() {
		t.Fatalf("partial response was stored")
	}
	if got := do(h, "GET", "/p"); !got.isHit() {
		t.Fatalf("whole response was not stored: %q", got.cacheStatus())
	}
}

func TestHonorOriginCacheControl(t *testing.T) {
	tests := []struct {
		name      string
		give      []string
		wantFresh time.Duration
	}{
		{"max-age", []string{"Cache-Control", "public, max-age=120"}, 120 * time.Second},
		{"s-maxage wins", []string{"Cache-Control", "max-age=10, s-maxage=300"}, 300 * time.Second},
		{"surrogate-control wins", []string{"Cache-Control", "s-maxage=300", "Surrogate-Control", "max-age=900"}, 900 * time.Second},
		{"none: policy ttl", nil, 42 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore(t)
			c := newTestCache(t, store)
			h := mux(t, c, "/c", policy.Policy{TTL: 42 * time.Second, HonorOriginCacheControl: true}, textOrigin("x", tt.give...))
			first := do(h, "GET", "/c")
			if first.header.Get("Surrogate-Control") != "" {
				t.Errorf("Surrogate-Control reached the client")
			}
			got := do(h, "GET", "/c")
			want := "ttl=" + itoa(int(tt.wantFresh/time.Second))
			if !strings.Contains(got.cacheStatus(), want) {
				t.Errorf("Cache-Status = %q, want %s", got.cacheStatus(), want)
			}
		})
	}
}

func TestStoreErrorsGoToOrigin(t *testing.T) {
	boom := errors.New("redis down")
	var seen []error
	store := storeFuncs{Store: newMemStore(t), get: func() error { return boom }, set: func() error { return boom }}
	c := newTestCache(t, store, WithOnError(func(_ context.Context, err error) { seen = append(seen, err) }))
	o := textOrigin("fine")
	h := mux(t, c, "/e", policy.Policy{}, o)
	for range 3 {
		if got := do(h, "GET", "/e"); got.status != 200 || got.body != "fine" {
			t.Fatalf("got %d %q", got.status, got.body)
		}
	}
	if len(seen) == 0 || !errors.Is(seen[0], boom) {
		t.Errorf("OnError saw %v", seen)
	}
}

func TestUndecodableEntryIsAMiss(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	o := textOrigin("good")
	h := mux(t, c, "/u", policy.Policy{}, o)
	do(h, "GET", "/u")
	// Overwrite every field with garbage.
	k := keyOf(t, "/u", "/u", policy.Policy{})
	store.Set(t.Context(), k.Bucket, k.Field, []byte("\xffgarbage"), storage.SetOptions{TTL: time.Minute})
	got := do(h, "GET", "/u")
	if got.isHit() || got.body != "good" {
		t.Fatalf("garbage entry served: %q %q", got.cacheStatus(), got.body)
	}
	if got := do(h, "GET", "/u"); !got.isHit() {
		t.Errorf("entry not refilled after garbage: %q", got.cacheStatus())
	}
}

func TestInvalidPolicyNamesRoute(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	tests := []struct {
		name      string
		pattern   string
		give      policy.Policy
		wantField string
	}{
		{"negative ttl", "GET /a/{id}", policy.Policy{TTL: -time.Second}, "TTL"},
		{"unknown bucket param", "GET /a/{id}", policy.Policy{BucketParams: []string{"uid"}}, "BucketParams"},
		{"refresh ratio", "GET /a/{id}", policy.Policy{RefreshAhead: 1.5}, "RefreshAhead"},
		{"bad status", "GET /a/{id}", policy.Policy{Statuses: []int{99}}, "Statuses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Route(tt.pattern, tt.give)
			var fe *policy.FieldError
			if !errors.As(err, &fe) || fe.Route != tt.pattern || fe.Field != tt.wantField {
				t.Fatalf("err = %v, want a FieldError for %s on %s", err, tt.wantField, tt.pattern)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("MustRoute did not panic")
		}
	}()
	c.MustRoute("/z", policy.Policy{TTL: -1})
}

func TestPolicyFile(t *testing.T) {
	f, err := policy.Parse([]byte(`{"GET /a/{id}": {"ttl": "2m", "vary": ["Accept-Language"]}, "GET /nowhere": {"ttl": "1s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, newMemStore(t), WithPolicyFile(f))
	h := mux(t, c, "GET /a/{id}", policy.Policy{TTL: time.Second, StaleIfError: time.Hour}, textOrigin("x"))
	do(h, "GET", "/a/1")
	if got := do(h, "GET", "/a/1"); !strings.Contains(got.cacheStatus(), "ttl=120") {
		t.Errorf("file TTL not applied: %q", got.cacheStatus())
	}
	if got := do(h, "GET", "/a/1", "Accept-Language", "fr"); got.isHit() {
		t.Errorf("file Vary not applied")
	}
	err = c.VerifyRoutes()
	if err == nil || !strings.Contains(err.Error(), `"GET /nowhere"`) {
		t.Errorf("VerifyRoutes = %v, want the unmatched pattern named", err)
	}
}

func TestPolicyVaryIsAdvertised(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	h := mux(t, c, "/v", policy.Policy{Vary: []string{"Accept-Language"}}, textOrigin("x"))
	miss := do(h, "GET", "/v", "Accept-Language", "fr")
	hit := do(h, "GET", "/v", "Accept-Language", "fr")
	if !hit.isHit() {
		t.Fatalf("not a hit: %q", hit.cacheStatus())
	}
	for _, r := range []result{miss, hit} {
		if !strings.Contains(strings.Join(r.header["Vary"], ","), "Accept-Language") {
			t.Errorf("Vary = %q, want Accept-Language listed", r.header["Vary"])
		}
	}
	if other := do(h, "GET", "/v", "Accept-Language", "de"); other.isHit() {
		t.Errorf("another language got the French entry")
	}
}
