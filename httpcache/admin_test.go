package httpcache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

const testToken = "0123456789abcdef-admin"

// adminFixture is a cache with two routes, a user's posts and items, plus
// its admin handler.
type adminFixture struct {
	cache *Cache
	app   http.Handler
	admin http.Handler
	logs  *bytes.Buffer
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	c := newTestCache(t, newMemStore(t))
	app := http.NewServeMux()
	posts := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Surrogate-Key", "user-"+r.PathValue("id")+" posts")
		fmt.Fprintf(w, "posts of %s page %s", r.PathValue("id"), r.URL.Query().Get("page"))
	}}
	app.Handle("GET /users/{id}/posts", c.Handler("GET /users/{id}/posts", policy.Policy{TTL: time.Minute, QueryParams: []string{"page"}}, posts))
	items := textOrigin(strings.Repeat("item ", 100))
	app.Handle("GET /items/{id}", c.Handler("GET /items/{id}", policy.Policy{
		TTL:  time.Minute,
		Tags: func(r *http.Request) []string { return []string{"catalog"} },
	}, items))
	logs := &bytes.Buffer{}
	admin, err := c.AdminHandler(WithAdminToken("ops", testToken), WithAdminLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return &adminFixture{cache: c, app: app, admin: http.StripPrefix("/admin", admin), logs: logs}
}

func (f *adminFixture) call(method, path, body string, headers ...string) result {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, r)
	return result{status: w.Code, header: w.Header(), body: w.Body.String()}
}

func (f *adminFixture) warm(t *testing.T, targets ...string) {
	t.Helper()
	for _, target := range targets {
		do(f.app, "GET", target)
		if got := do(f.app, "GET", target); !got.isHit() {
			t.Fatalf("%s not cached: %q", target, got.cacheStatus())
		}
	}
}

func (f *adminFixture) hit(target string) bool { return do(f.app, "GET", target).isHit() }

func TestAdminPurge(t *testing.T) {
	all := []string{"/users/15/posts", "/users/15/posts?page=2", "/users/16/posts", "/items/1", "/items/2"}
	tests := []struct {
		name        string
		body        string
		wantRemoved int64
		wantGone    []string
	}{
		{"bucket", `{"route": "GET /users/{id}/posts", "params": {"id": "15"}}`, 1, []string{"/users/15/posts", "/users/15/posts?page=2"}},
		{"url", `{"url": "http://example.com/users/15/posts?page=9"}`, 1, []string{"/users/15/posts", "/users/15/posts?page=2"}},
		{"route", `{"route": "GET /items/{id}"}`, 2, []string{"/items/1", "/items/2"}},
		{"surrogate key tag", `{"tag": "user-16"}`, 1, []string{"/users/16/posts"}},
		{"policy tag", `{"tag": "catalog"}`, 2, []string{"/items/1", "/items/2"}},
		{"all", `{"all": true}`, 0, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAdminFixture(t)
			f.warm(t, all...)
			got := f.call("POST", "/admin/purge", tt.body)
			if got.status != 200 {
				t.Fatalf("status %d: %s", got.status, got.body)
			}
			var res purgeResponse
			if err := json.Unmarshal([]byte(got.body), &res); err != nil {
				t.Fatal(err)
			}
			if tt.wantRemoved > 0 && res.Removed != tt.wantRemoved {
				t.Errorf("removed = %d, want %d", res.Removed, tt.wantRemoved)
			}
			for _, target := range all {
				gone := false
				for _, g := range tt.wantGone {
					gone = gone || g == target
				}
				if f.hit(target) == gone {
					t.Errorf("%s: hit=%v after the purge, want gone=%v", target, !gone, gone)
				}
			}
			if !strings.Contains(f.logs.String(), "readthrough: purge") || !strings.Contains(f.logs.String(), "who=ops") {
				t.Errorf("purge not logged with its caller: %s", f.logs)
			}
		})
	}
}

func TestAdminBadRequests(t *testing.T) {
	f := newAdminFixture(t)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		headers    []string
		wantStatus int
		wantReason string
	}{
		{"no token", "POST", "/admin/purge", `{"all":true}`, []string{"Authorization", ""}, 401, "bearer token"},
		{"wrong token", "POST", "/admin/purge", `{"all":true}`, []string{"Authorization", "Bearer 0123456789abcdef-wrong"}, 401, "bearer token"},
		{"basic auth", "POST", "/admin/purge", `{"all":true}`, []string{"Authorization", "Basic " + testToken}, 401, "bearer token"},
		{"wrong method purge", "GET", "/admin/purge", "", nil, 405, "not allowed"},
		{"wrong method stats", "DELETE", "/admin/stats", "", nil, 405, "not allowed"},
		{"unknown endpoint", "GET", "/admin/nope", "", nil, 404, "unknown endpoint"},
		{"malformed json", "POST", "/admin/purge", `{"route":`, nil, 400, "malformed JSON"},
		{"unknown field", "POST", "/admin/purge", `{"rout": "x"}`, nil, 400, "unknown field"},
		{"trailing data", "POST", "/admin/purge", `{"all": true} {}`, nil, 400, "trailing data"},
		{"no scope", "POST", "/admin/purge", `{}`, nil, 400, "exactly one"},
		{"two scopes", "POST", "/admin/purge", `{"tag": "a", "all": true}`, nil, 400, "exactly one"},
		{"params without route", "POST", "/admin/purge", `{"params": {"id": "1"}, "tag": "x"}`, nil, 400, `"params" goes with "route"`},
		{"unknown route", "POST", "/admin/purge", `{"route": "GET /nope"}`, nil, 400, "unknown route"},
		{"missing param", "POST", "/admin/purge", `{"route": "GET /users/{id}/posts", "params": {}}`, nil, 400, "id"},
		{"unknown param", "POST", "/admin/purge", `{"route": "GET /users/{id}/posts", "params": {"id": "1", "x": "2"}}`, nil, 400, "x"},
		{"url of no route", "POST", "/admin/purge", `{"url": "http://h/elsewhere"}`, nil, 400, "no cached route"},
		{"bad url", "POST", "/admin/purge", `{"url": "http://h/%zz"}`, nil, 400, "invalid argument"},
		{"oversized body", "POST", "/admin/purge", `{"tag": "` + strings.Repeat("x", 70<<10) + `"}`, nil, 400, "body exceeds"},
		// The purge body is strict JSON: exact lowercase keys, each once,
		// each with its own type, and nothing after the object.
		{"duplicate all", "POST", "/admin/purge", `{"all": false, "all": true}`, nil, 400, `duplicate key "all"`},
		{"duplicate tag", "POST", "/admin/purge", `{"tag": "a", "tag": "b"}`, nil, 400, `duplicate key "tag"`},
		{"duplicate escaped", "POST", "/admin/purge", `{"route": "GET /items/{id}", "\u0072oute": "GET /nope"}`, nil, 400, `duplicate key "route"`},
		{"duplicate param", "POST", "/admin/purge", `{"route": "GET /users/{id}/posts", "params": {"id": "1", "id": "2"}}`, nil, 400, `"params": duplicate key "id"`},
		{"uppercase key", "POST", "/admin/purge", `{"ALL": true}`, nil, 400, `unknown field "ALL"`},
		{"capitalised key", "POST", "/admin/purge", `{"Route": "GET /items/{id}"}`, nil, 400, `unknown field "Route"`},
		{"escaped case variant", "POST", "/admin/purge", `{"\u0041ll": true}`, nil, 400, `unknown field "All"`},
		{"kelvin sign", "POST", "/admin/purge", `{"t\u0061\u212a": "x"}`, nil, 400, "unknown field"},
		{"params null", "POST", "/admin/purge", `{"route": "GET /items/{id}", "params": null}`, nil, 400, `"params" must be an object of strings`},
		{"params array", "POST", "/admin/purge", `{"route": "GET /items/{id}", "params": ["id"]}`, nil, 400, `"params" must be an object of strings`},
		{"params number", "POST", "/admin/purge", `{"route": "GET /items/{id}", "params": {"id": 1}}`, nil, 400, `"params" must be an object of strings`},
		{"params nested", "POST", "/admin/purge", `{"route": "GET /items/{id}", "params": {"id": {"x": "1"}}}`, nil, 400, `"params" must be an object of strings`},
		{"params null value", "POST", "/admin/purge", `{"route": "GET /items/{id}", "params": {"id": null}}`, nil, 400, `"params" must be an object of strings`},
		{"all string", "POST", "/admin/purge", `{"all": "yes"}`, nil, 400, `"all" must be true or false`},
		{"all number", "POST", "/admin/purge", `{"all": 1}`, nil, 400, `"all" must be true or false`},
		{"all null", "POST", "/admin/purge", `{"all": null}`, nil, 400, `"all" must be true or false`},
		{"route null", "POST", "/admin/purge", `{"route": null, "all": true}`, nil, 400, `"route" must be a string`},
		{"tag number", "POST", "/admin/purge", `{"tag": 7}`, nil, 400, `"tag" must be a string`},
		{"url object", "POST", "/admin/purge", `{"url": {}}`, nil, 400, `"url" must be a string`},
		{"trailing brace", "POST", "/admin/purge", `{"all": true}}`, nil, 400, "trailing data"},
		{"trailing bracket", "POST", "/admin/purge", `{"all": true}]`, nil, 400, "trailing data"},
		{"not an object", "POST", "/admin/purge", `["all"]`, nil, 400, "want a JSON object"},
		{"null body", "POST", "/admin/purge", `null`, nil, 400, "want a JSON object"},
		{"empty body", "POST", "/admin/purge", ``, nil, 400, "malformed JSON"},
		{"truncated after key", "POST", "/admin/purge", `{"all"`, nil, 400, "malformed JSON"},
		{"inspect without url", "GET", "/admin/inspect", "", nil, 400, `missing query parameter "url"`},
		{"inspect bad header", "GET", "/admin/inspect?url=/items/1&header=nocolon", "", nil, 400, "Name:Value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := f.call(tt.method, tt.path, tt.body, tt.headers...)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", got.status, tt.wantStatus, got.body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(got.body), &e); err != nil || !strings.Contains(e.Error, tt.wantReason) {
				t.Errorf("body %s, want an error containing %q", got.body, tt.wantReason)
			}
			if tt.wantStatus == 405 && got.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if tt.wantStatus == 401 && got.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

func TestAdminInspectAndStats(t *testing.T) {
	f := newAdminFixture(t)
	f.warm(t, "/items/7")
	got := f.call("GET", "/admin/inspect?url=http://example.com/items/7", "")
	var in Inspection
	if err := json.Unmarshal([]byte(got.body), &in); err != nil || got.status != 200 {
		t.Fatalf("%d %s", got.status, got.body)
	}
	if !in.Found || in.Route != "GET /items/{id}" || in.State != "fresh" || in.Status != 200 || in.Coding != "gzip" || in.TTLSec != 60 || in.Size == 0 || in.BodySize == 0 {
		t.Errorf("inspection = %+v", in)
	}
	if !strings.HasSuffix(in.Bucket, "|7") || len(in.Field) != 32 {
		t.Errorf("bucket %q field %q", in.Bucket, in.Field)
	}
	miss := f.call("GET", "/admin/inspect?url=http://example.com/items/8", "")
	if !strings.Contains(miss.body, `"found": false`) {
		t.Errorf("uncached URL: %s", miss.body)
	}

	stats := f.call("GET", "/admin/stats", "")
	var s struct {
		Total  Stats
		Routes map[string]Stats
	}
	if err := json.Unmarshal([]byte(stats.body), &s); err != nil {
		t.Fatal(err)
	}
	if s.Total.Hits != 1 || s.Routes["GET /items/{id}"].Misses != 1 {
		t.Errorf("stats = %s", stats.body)
	}
}

func TestAdminRefusesWithoutToken(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	if _, err := c.AdminHandler(); err == nil {
		t.Error("no token and not insecure: want an error")
	}
	if _, err := c.AdminHandler(WithAdminToken("a", "short")); err == nil {
		t.Error("short token: want an error")
	}
	h, err := c.AdminHandler(WithInsecureAdmin())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host string
		want int
	}{
		{"localhost:9090", 200},
		{"127.0.0.1", 200},
		{"[::1]:9090", 200},
		{"example.com", http.StatusForbidden},       // a rebound name
		{"192.168.1.10:9090", http.StatusForbidden}, // not loopback
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/stats", nil)
		r.Host = tt.host
		h.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("insecure handler, Host %s: %d, want %d", tt.host, w.Code, tt.want)
		}
	}
}

// TestPurgeRacingFill: a fill that started before a purge and stores
// after it must not leave the pre-purge content cached.
func TestPurgeRacingFill(t *testing.T) {
	store := newMemStore(t)
	c := newTestCache(t, store)
	version := "old"
	started := make(chan struct{})
	release := make(chan struct{})
	o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
		v := version // the origin reads its data...
		if v == "old" {
			close(started)
			<-release // ...and is slow to answer
		}
		io.WriteString(w, v)
	}}
	h := mux(t, c, "GET /users/{id}", policy.Policy{}, o)
	done := make(chan result)
	go func() { done <- do(h, "GET", "/users/1") }()
	<-started
	version = "new" // the data changes and the service purges
	if _, err := c.PurgeBucket(t.Context(), "GET /users/{id}", map[string]string{"id": "1"}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if got := <-done; got.body != "old" {
		t.Fatalf("the racing request got %q", got.body)
	}
	got := do(h, "GET", "/users/1")
	if got.body != "new" {
		t.Fatalf("after the purge: %q (%s), want the new content", got.body, got.cacheStatus())
	}
	if c.Stats().PurgeRaces != 1 {
		t.Errorf("purge races = %d, want 1", c.Stats().PurgeRaces)
	}
}
