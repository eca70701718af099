package httpcache

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// The conformance table of standards mode: each case cites the section
// of RFC 9111 (or RFC 9110, 5861, 9213) it checks, and runs through a
// real net/http server in front of a scripted origin.

// stdOrigin answers the n-th origin call (from 1) of a case.
type stdOrigin func(n int64, w http.ResponseWriter, r *http.Request)

// stdStep is one request of a case and what its answer must be.
type stdStep struct {
	sleep   time.Duration // before the request
	method  string        // GET when empty
	headers []string      // request header name, value pairs
	// hit: the answer came from the cache (Cache-Status "hit", or
	// "fwd=stale" for stale-if-error); otherwise from the origin.
	hit    bool
	status int   // 200 when 0
	calls  int64 // origin calls so far; -1: not checked (a refresh may run)
	check  func(t *testing.T, res stdResult)
}

type stdResult struct {
	status int
	header http.Header
	body   string
	// conditional is the If-None-Match the origin saw last, if any.
	conditional string
}

type stdCase struct {
	name, rfc string
	origin    stdOrigin
	policy    policy.Policy // Standards is set by the test
	steps     []stdStep
}

// date formats t as an HTTP date.
func date(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// answer writes status and body with the header pairs.
func answer(w http.ResponseWriter, status int, body string, headers ...string) {
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Add(headers[i], headers[i+1])
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func numbered(n int64) string { return "v" + strconv.FormatInt(n, 10) }

func runStandardsCase(t *testing.T, tc stdCase) {
	t.Helper()
	c := newTestCache(t, newMemStore(t))
	var calls atomic.Int64
	var lastINM atomic.Value
	lastINM.Store("")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		lastINM.Store(r.Header.Get("If-None-Match"))
		tc.origin(n, w, r)
	})
	p := tc.policy
	p.Standards = true
	srv := httptest.NewServer(mux(t, c, "/r/{id}", p, h))
	t.Cleanup(srv.Close)
	client := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for i, st := range tc.steps {
		time.Sleep(st.sleep)
		method := st.method
		if method == "" {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, srv.URL+"/r/1", nil)
		for j := 0; j+1 < len(st.headers); j += 2 {
			req.Header.Add(st.headers[j], st.headers[j+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res := stdResult{status: resp.StatusCode, header: resp.Header, body: string(body), conditional: lastINM.Load().(string)}
		cs := resp.Header.Get("Cache-Status")
		hit := strings.Contains(cs, "; hit") || strings.Contains(cs, "detail=stale-if-error")
		want := st.status
		if want == 0 {
			want = http.StatusOK
		}
		if res.status != want || hit != st.hit || calls.Load() != st.calls && st.calls >= 0 {
			t.Fatalf("%s: step %d: status %d hit %t origin calls %d, want %d %t %d (Cache-Status %q, body %q)",
				tc.rfc, i+1, res.status, hit, calls.Load(), want, st.hit, st.calls, cs, res.body)
		}
		if st.check != nil {
			st.check(t, res)
		}
	}
}

func TestStandardsConformance(t *testing.T) {
	t.Parallel()
	header := func(name, want string) func(*testing.T, stdResult) {
		return func(t *testing.T, res stdResult) {
			t.Helper()
			if got := res.header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	}
	body := func(want string) func(*testing.T, stdResult) {
		return func(t *testing.T, res stdResult) {
			t.Helper()
			if res.body != want {
				t.Errorf("body = %q, want %q", res.body, want)
			}
		}
	}
	both := func(fs ...func(*testing.T, stdResult)) func(*testing.T, stdResult) {
		return func(t *testing.T, res stdResult) {
			t.Helper()
			for _, f := range fs {
				f(t, res)
			}
		}
	}
	// fixed is an origin answering 200 with the body vN and headers.
	fixed := func(headers ...string) stdOrigin {
		return func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), append([]string{"Date", date(time.Now())}, headers...)...)
		}
	}
	withStatus := func(status int, headers ...string) stdOrigin {
		return func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, status, numbered(n), append([]string{"Date", date(time.Now())}, headers...)...)
		}
	}
	hit := func(calls int64, check ...func(*testing.T, stdResult)) stdStep {
		return stdStep{hit: true, calls: calls, check: both(check...)}
	}
	miss := func(calls int64, check ...func(*testing.T, stdResult)) stdStep {
		return stdStep{calls: calls, check: both(check...)}
	}
	past := time.Now().Add(-2 * time.Hour)
	recent := time.Now().Add(-10 * time.Second)
	// echoMode answers with vN and the request's X-Mode.
	echoMode := func(headers ...string) stdOrigin {
		return func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n)+" "+r.Header.Get("X-Mode"), append([]string{"Date", date(time.Now())}, headers...)...)
		}
	}

	cases := []stdCase{
		// Freshness: RFC 9111 section 4.2.1.
		{name: "max-age", rfc: "9111 §4.2.1", origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1), hit(1, body("v1"))}},
		{name: "s-maxage over max-age", rfc: "9111 §4.2.1, §5.2.2.10", origin: fixed("Cache-Control", "max-age=0, s-maxage=60"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "max-age=0 not reused", rfc: "9111 §4.2.1", origin: fixed("Cache-Control", "max-age=0"),
			steps: []stdStep{miss(1), miss(2, body("v2"))}},
		{name: "s-maxage=0 beats max-age", rfc: "9111 §4.2.1", origin: fixed("Cache-Control", "max-age=60, s-maxage=0"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "expires minus date", rfc: "9111 §4.2.1, §5.3", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			now := time.Now()
			answer(w, 200, numbered(n), "Date", date(now), "Expires", date(now.Add(time.Hour)))
		}, steps: []stdStep{miss(1), hit(1)}},
		{name: "expires uses the origin's date, not ours", rfc: "9111 §4.2.1", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			// The origin's clock is two hours behind: Expires is an hour
			// after its Date, so an hour fresh, though past by our clock.
			answer(w, 200, numbered(n), "Date", date(past), "Expires", date(past.Add(3*time.Hour)))
		}, steps: []stdStep{miss(1), hit(1)}},
		{name: "invalid expires is stale", rfc: "9111 §5.3", origin: fixed("Expires", "0"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "expires with extra spaces is invalid", rfc: "9110 §5.6.7, 9111 §5.3", origin: fixed("Expires", "Thu, 18  Aug  2050 02:01:18 GMT"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "expires with a one-digit hour is invalid", rfc: "9110 §5.6.7, 9111 §5.3", origin: fixed("Expires", "Thu, 18 Aug 2050 2:01:18 GMT"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "two expires lines are invalid", rfc: "9111 §5.3", origin: fixed("Expires", "Thu, 18 Aug 2050 02:01:18 GMT", "Expires", "Thu, 18 Aug 2050 02:01:19 GMT"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "expires with a wrong day name", rfc: "9110 §5.6.7", origin: fixed("Expires", "Thu Aug  8 02:01:18 2050"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "expires in another case", rfc: "9110 §5.6.7", origin: fixed("Expires", "Thu, 18 Aug 2050 02:01:18 gMT"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "expires in the rfc850 and asctime formats", rfc: "9110 §5.6.7", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			exp := time.Now().Add(time.Hour).UTC()
			format := time.RFC850
			if n%2 == 0 {
				format = time.ANSIC
			}
			answer(w, 200, numbered(n), "Date", date(time.Now()), "Expires", exp.Format(format))
		}, steps: []stdStep{miss(1), hit(1)}},
		{name: "max-age beats expires", rfc: "9111 §5.3", origin: fixed("Cache-Control", "max-age=60", "Expires", "0"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "no freshness, no validators: not stored", rfc: "9111 §4.2, §3", origin: fixed(),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "heuristic from last-modified", rfc: "9111 §4.2.2", origin: fixed("Last-Modified", date(past)),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "no heuristic for 302", rfc: "9111 §4.2.2, 9110 §15.1", origin: withStatus(302, "Location", "/x", "Last-Modified", date(past)),
			steps: []stdStep{{status: 302, calls: 1}, {status: 302, calls: 2}}},
		{name: "heuristic for public 302", rfc: "9111 §4.2.2, §5.2.2.9", origin: withStatus(302, "Location", "/x", "Cache-Control", "public", "Last-Modified", date(past)),
			steps: []stdStep{{status: 302, calls: 1}, {status: 302, calls: 1, hit: true}}},

		// Targeted fields: RFC 9213.
		{name: "cdn-cache-control over cache-control", rfc: "9213 §2.1", origin: fixed("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "cdn-cache-control no-store", rfc: "9213 §2.1", origin: fixed("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control private", rfc: "9213 §2.1", origin: fixed("Cache-Control", "max-age=60", "CDN-Cache-Control", "private"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control no-cache", rfc: "9213 §2.1", origin: fixed("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-cache"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control ignores expires", rfc: "9213 §2.1", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now()), "Expires", date(time.Now().Add(time.Hour)), "CDN-Cache-Control", "must-revalidate")
		}, steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control not a structured field: ignored", rfc: "9213 §2.1, 8941 §4.2", origin: fixed("CDN-Cache-Control", "max-age=10000, &&&&&", "Cache-Control", "no-store"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control of the wrong type: ignored", rfc: "9213 §2.1", origin: fixed("CDN-Cache-Control", `max-age="10000"`, "Cache-Control", "no-store"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control with a space before =: ignored", rfc: "8941 §4.2.2", origin: fixed("CDN-Cache-Control", "max-age =10000", "Cache-Control", "no-store"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "cdn-cache-control with parameters and other items", rfc: "8941 §3.2", origin: fixed("CDN-Cache-Control", `max-age=60;x=1, foo="a, b", bar=:AQI=:, baz=?0, q=0.5, t=tok/1`, "Cache-Control", "no-store"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "empty cdn-cache-control falls back", rfc: "9213 §2.1", origin: fixed("Cache-Control", "max-age=60", "CDN-Cache-Control", ""),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "surrogate-control first, never sent", rfc: "9213 §2.1", origin: fixed("CDN-Cache-Control", "no-store", "Surrogate-Control", "max-age=60"),
			steps: []stdStep{miss(1, header("Surrogate-Control", "")), hit(1, header("Surrogate-Control", ""), header("Cdn-Cache-Control", "no-store"))}},

		// Age and Date: RFC 9111 section 4.2.3, section 5.1.
		{name: "origin age counts", rfc: "9111 §4.2.3", origin: fixed("Cache-Control", "max-age=60", "Age", "30"),
			steps: []stdStep{miss(1), hit(1, func(t *testing.T, res stdResult) {
				if a, _ := strconv.Atoi(res.header.Get("Age")); a < 30 || a > 32 {
					t.Errorf("Age = %q, want about 30", res.header.Get("Age"))
				}
			})}},
		{name: "age: the first element of a list", rfc: "9111 §5.1", origin: fixed("Cache-Control", "max-age=3600", "Age", "7200, 0"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "age: the first element is young", rfc: "9111 §5.1", origin: fixed("Cache-Control", "max-age=3600", "Age", "0, 7200"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "age past lifetime: not reused", rfc: "9111 §4.2.3", origin: fixed("Cache-Control", "max-age=60", "Age", "61"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "apparent age from date", rfc: "9111 §4.2.3", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-30*time.Second)), "Cache-Control", "max-age=60")
		}, steps: []stdStep{miss(1), hit(1, func(t *testing.T, res stdResult) {
			if a, _ := strconv.Atoi(res.header.Get("Age")); a < 30 || a > 32 {
				t.Errorf("Age = %q, want about 30", res.header.Get("Age"))
			}
		})}},
		{name: "apparent age past max-age", rfc: "9111 §4.2.3", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-61*time.Second)), "Cache-Control", "max-age=60")
		}, steps: []stdStep{miss(1), miss(2)}},
		{name: "hit keeps the origin's date", rfc: "9111 §4, 9110 §6.6.1", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-10*time.Second)), "Cache-Control", "max-age=60")
		}, steps: []stdStep{miss(1), {sleep: 1100 * time.Millisecond, hit: true, calls: 1, check: func(t *testing.T, res stdResult) {
			d, err := http.ParseTime(res.header.Get("Date"))
			if err != nil || time.Since(d) < 10*time.Second {
				t.Errorf("Date = %q, want the origin's, 10s or more ago", res.header.Get("Date"))
			}
		}}}},

		// Storable statuses: RFC 9111 section 3, 9110 section 15.1.
		{name: "302 with max-age stored", rfc: "9111 §3", origin: withStatus(302, "Location", "/x", "Cache-Control", "max-age=60"),
			steps: []stdStep{{status: 302, calls: 1}, {status: 302, calls: 1, hit: true, check: header("Location", "/x")}}},
		{name: "307 with expires stored", rfc: "9111 §3", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 307, numbered(n), "Date", date(time.Now()), "Location", "/y", "Expires", date(time.Now().Add(time.Hour)))
		}, steps: []stdStep{{status: 307, calls: 1}, {status: 307, calls: 1, hit: true}}},
		{name: "500 with max-age served while fresh", rfc: "9111 §3", origin: withStatus(500, "Cache-Control", "max-age=60"),
			steps: []stdStep{{status: 500, calls: 1}, {status: 500, calls: 1, hit: true, check: body("v1")}}},
		{name: "400 without freshness not stored", rfc: "9111 §3", origin: withStatus(400),
			steps: []stdStep{{status: 400, calls: 1}, {status: 400, calls: 2}}},
		{name: "404 heuristic", rfc: "9111 §4.2.2", origin: withStatus(404, "Last-Modified", date(past)),
			steps: []stdStep{{status: 404, calls: 1}, {status: 404, calls: 1, hit: true}}},
		{name: "must-understand, unknown status", rfc: "9111 §5.2.2.3", origin: withStatus(299, "Cache-Control", "max-age=60, must-understand, no-store"),
			steps: []stdStep{{status: 299, calls: 1}, {status: 299, calls: 2}}},
		{name: "must-understand overrides no-store", rfc: "9111 §5.2.2.3", origin: fixed("Cache-Control", "max-age=60, must-understand, no-store"),
			steps: []stdStep{miss(1), hit(1)}},
		{name: "no-store", rfc: "9111 §5.2.2.5", origin: fixed("Cache-Control", "max-age=60, no-store"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "private", rfc: "9111 §5.2.2.7", origin: fixed("Cache-Control", "max-age=60, private"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "private with a field: stored without it", rfc: "9111 §5.2.2.7", origin: fixed("Cache-Control", `max-age=60, private="X-User"`, "X-User", "ann"),
			steps: []stdStep{miss(1, header("X-User", "ann")), hit(1, header("X-User", ""))}},
		{name: "no-cache with a field: reused without it", rfc: "9111 §5.2.2.4", origin: fixed("Cache-Control", `max-age=60, no-cache="X-Token, X-Other"`, "X-Token", "t", "X-Kept", "k"),
			steps: []stdStep{miss(1, header("X-Token", "t")), hit(1, header("X-Token", ""), header("X-Kept", "k"))}},

		// Validation: RFC 9111 sections 4.3, 5.2.2.4.
		{name: "no-cache revalidates every time", rfc: "9111 §5.2.2.4, §4.3.1", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == `"a"` {
				w.Header().Set("ETag", `"a"`)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now()), "Cache-Control", "no-cache", "ETag", `"a"`)
		}, steps: []stdStep{miss(1), {calls: 2, check: func(t *testing.T, res stdResult) {
			if res.body != "v1" || res.conditional != `"a"` {
				t.Errorf("body %q after If-None-Match %q, want v1 revalidated with \"a\"", res.body, res.conditional)
			}
		}}}},
		{name: "no lifetime but an etag: stored for validation", rfc: "9111 §4.3.1", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == `"b"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now()), "Cache-Control", "max-age=0", "ETag", `"b"`)
		}, steps: []stdStep{miss(1), {calls: 2, check: body("v1")}}},
		{name: "304 updates the stored headers", rfc: "9111 §3.2, §4.3.4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == `"c"` {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("X-Version", "2")
				w.WriteHeader(http.StatusNotModified)
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now()), "Cache-Control", "max-age=0", "ETag", `"c"`, "X-Version", "1")
		}, steps: []stdStep{miss(1), {calls: 2, check: header("X-Version", "2")}, hit(2, header("X-Version", "2"), body("v1"))}},

		{name: "if-modified-since against the date", rfc: "9111 §4.3.2", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(recent), "Cache-Control", "max-age=60")
		}, steps: []stdStep{
			{calls: 1, check: body("v1")},
			{headers: []string{"If-Modified-Since", date(recent.Add(5 * time.Second))}, status: 304, calls: 1, hit: true},
			{headers: []string{"If-Modified-Since", date(recent.Add(-5 * time.Second))}, calls: 1, hit: true, check: body("v1")},
		}},

		// Invalidation: RFC 9111 section 4.4.
		{name: "a write invalidates every variant", rfc: "9111 §4.4", origin: echoMode("Cache-Control", "max-age=60", "Vary", "X-Mode"),
			steps: []stdStep{
				{headers: []string{"X-Mode", "a"}, calls: 1},
				{headers: []string{"X-Mode", "b"}, calls: 2},
				{headers: []string{"X-Mode", "a"}, calls: 2, hit: true},
				{method: http.MethodPost, calls: 3},
				{headers: []string{"X-Mode", "a"}, calls: 4, check: body("v4 a")},
				{headers: []string{"X-Mode", "b"}, calls: 5, check: body("v5 b")},
			}},

		// Stale: RFC 5861, RFC 9111 section 4.2.4.
		{name: "stale-while-revalidate", rfc: "5861 §3", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, stale-while-revalidate=60")
		}, steps: []stdStep{miss(1), {hit: true, calls: -1, check: body("v1")}, {sleep: 300 * time.Millisecond, hit: true, calls: -1, check: body("v2")}}},
		{name: "stale-if-error on 500", rfc: "5861 §4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				answer(w, 500, "down")
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, stale-if-error=60")
		}, steps: []stdStep{miss(1), {hit: true, calls: 2, check: body("v1")}}},
		{name: "stale-if-error on a connection error (502)", rfc: "5861 §4, 9111 §4.2.4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				w.WriteHeader(http.StatusBadGateway) // what httputil.ReverseProxy answers when the backend is down
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, stale-if-error=60")
		}, steps: []stdStep{miss(1), {hit: true, calls: 2, check: body("v1")}}},
		{name: "must-revalidate: no stale-if-error", rfc: "9111 §5.2.2.2, §4.2.4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				answer(w, 500, "down")
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, must-revalidate, stale-if-error=60, stale-while-revalidate=60")
		}, steps: []stdStep{miss(1), {status: 500, calls: 2, check: body("down")}}},
		{name: "proxy-revalidate: no stale", rfc: "9111 §5.2.2.8", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, proxy-revalidate, stale-while-revalidate=60")
		}, steps: []stdStep{miss(1), miss(2, body("v2"))}},
		{name: "s-maxage: no stale", rfc: "9111 §5.2.2.10, §4.2.4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "s-maxage=1, stale-while-revalidate=60")
		}, steps: []stdStep{miss(1), miss(2, body("v2"))}},
		{name: "proxy-authorization bypasses", rfc: "9110 §11.7.2", origin: fixed("Cache-Control", "max-age=60, public"),
			steps: []stdStep{{headers: []string{"Proxy-Authorization", "Basic YTpi"}, calls: 1}, {calls: 2}, hit(2)}},
		{name: "policy windows do not apply", rfc: "9111 §4.2.4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1")
		}, steps: []stdStep{miss(1), miss(2)}},

		// Authenticated requests: RFC 9111 section 3.5.
		{name: "authorization: not stored without permission", rfc: "9111 §3.5", origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{
				{headers: []string{"Authorization", "Bearer a"}, calls: 1},
				{headers: []string{"Authorization", "Bearer a"}, calls: 2},
				{calls: 3},
			}},
		{name: "authorization: public is shared", rfc: "9111 §3.5, §5.2.2.9", origin: fixed("Cache-Control", "max-age=60, public"),
			steps: []stdStep{
				{headers: []string{"Authorization", "Bearer a"}, calls: 1},
				{headers: []string{"Authorization", "Bearer b"}, calls: 1, hit: true},
				{calls: 1, hit: true},
			}},
		{name: "authorization: s-maxage is shared", rfc: "9111 §3.5", origin: fixed("Cache-Control", "s-maxage=60"),
			steps: []stdStep{{headers: []string{"Authorization", "Bearer a"}, calls: 1}, {calls: 1, hit: true}}},
		{name: "authorization: must-revalidate is shared", rfc: "9111 §3.5", origin: fixed("Cache-Control", "max-age=60, must-revalidate"),
			steps: []stdStep{{headers: []string{"Authorization", "Bearer a"}, calls: 1}, {calls: 1, hit: true}}},
		{name: "authorization: proxy-revalidate is not", rfc: "9111 §3.5", origin: fixed("Cache-Control", "max-age=60, proxy-revalidate"),
			steps: []stdStep{{headers: []string{"Authorization", "Bearer a"}, calls: 1}, {calls: 2}}},
		{name: "authorization: an anonymous entry is not served to it", rfc: "9111 §3.5", origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1), {headers: []string{"Authorization", "Bearer a"}, calls: 2, check: body("v2")}, hit(2, body("v1"))}},

		// Vary: RFC 9111 section 4.1.
		{name: "vary on an unkeyed header: a secondary key", rfc: "9111 §4.1", origin: echoMode("Cache-Control", "max-age=60", "Vary", "X-Mode"),
			steps: []stdStep{
				{headers: []string{"X-Mode", "a"}, calls: 1, check: body("v1 a")},
				{headers: []string{"X-Mode", "a"}, calls: 1, hit: true, check: both(body("v1 a"), header("Vary", "X-Mode"))},
				{headers: []string{"X-Mode", "b"}, calls: 2, check: body("v2 b")},
				{headers: []string{"X-Mode", "b"}, calls: 2, hit: true, check: body("v2 b")},
				{calls: 3, check: body("v3 ")},
				{calls: 3, hit: true, check: body("v3 ")},
				{headers: []string{"X-Mode", ""}, calls: 4, check: body("v4 ")}, // empty is not absent
				{headers: []string{"X-Mode", "a"}, calls: 4, hit: true, check: body("v1 a")},
			}},
		{name: "vary: values normalised", rfc: "9111 §4.1", origin: echoMode("Cache-Control", "max-age=60", "Vary", "accept-language, X-Mode"),
			steps: []stdStep{
				{headers: []string{"Accept-Language", "en-US, fr;q=0.5", "X-Mode", " a "}, calls: 1},
				{headers: []string{"Accept-Language", "en-us,FR;q=0.5", "X-Mode", "a"}, calls: 1, hit: true},
				{headers: []string{"Accept-Language", "en-us", "Accept-Language", "fr;q=0.5", "X-Mode", "a"}, calls: 1, hit: true},
				{headers: []string{"Accept-Language", "fr;q=0.5, en-us", "X-Mode", "a"}, calls: 2},
				{headers: []string{"Accept-Language", "en-US, fr;q=0.5", "X-Mode", "A"}, calls: 3},
			}},
		{name: "vary on a header the origin is not sent", rfc: "9111 §4.1", origin: fixed("Cache-Control", "max-age=60", "Vary", "Range"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "vary star: never matches", rfc: "9111 §4.1", origin: fixed("Cache-Control", "max-age=60", "Vary", "*"),
			steps: []stdStep{miss(1), miss(2)}},
		{name: "stored vary is the origin's", rfc: "9111 §4.1", policy: policy.Policy{Vary: []string{"X-Lang"}}, origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1, header("Vary", "")), hit(1, header("Vary", ""))}},

		// Request directives: RFC 9111 section 5.2.1, a policy choice.
		{name: "request no-cache ignored by default", rfc: "9111 §5.2.1.4", origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1), {headers: []string{"Cache-Control", "no-cache"}, hit: true, calls: 1}}},
		{name: "request no-cache honoured: revalidated", rfc: "9111 §5.2.1.4", policy: policy.Policy{HonorRequestCacheControl: true},
			origin: func(n int64, w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("If-None-Match") == `"n"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				answer(w, 200, numbered(n), "Date", date(time.Now()), "Cache-Control", "max-age=60", "ETag", `"n"`)
			},
			steps: []stdStep{miss(1), {headers: []string{"Cache-Control", "no-cache"}, calls: 2, check: func(t *testing.T, res stdResult) {
				if res.body != "v1" || res.conditional != `"n"` {
					t.Errorf("body %q after If-None-Match %q, want v1 revalidated", res.body, res.conditional)
				}
			}}, hit(2)}},
		{name: "request max-age honoured", rfc: "9111 §5.2.1.1", policy: policy.Policy{HonorRequestCacheControl: true}, origin: fixed("Cache-Control", "max-age=60", "Age", "10"),
			steps: []stdStep{miss(1), {headers: []string{"Cache-Control", "max-age=20"}, hit: true, calls: 1}, {headers: []string{"Cache-Control", "max-age=5"}, calls: 2}}},
		{name: "request max-age=0 on a fresh immutable response", rfc: "RFC 8246 §2.1", policy: policy.Policy{HonorRequestCacheControl: true}, origin: fixed("Cache-Control", "max-age=60, immutable", "Age", "5"),
			steps: []stdStep{miss(1), {headers: []string{"Cache-Control", "max-age=0"}, hit: true, calls: 1}, {headers: []string{"Cache-Control", "no-cache"}, calls: 2}}},
		{name: "refresh error kept out by stale-if-error", rfc: "5861 §4", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
			if n > 1 {
				answer(w, 503, "down", "Cache-Control", "max-age=60")
				return
			}
			answer(w, 200, numbered(n), "Date", date(time.Now().Add(-2*time.Second)), "Cache-Control", "max-age=1, stale-while-revalidate=60, stale-if-error=60")
		}, steps: []stdStep{miss(1), {hit: true, calls: -1, check: body("v1")}, {sleep: 200 * time.Millisecond, hit: true, calls: -1, check: body("v1")}}},
		{name: "request min-fresh honoured", rfc: "9111 §5.2.1.3", policy: policy.Policy{HonorRequestCacheControl: true}, origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{miss(1), {headers: []string{"Cache-Control", "min-fresh=30"}, hit: true, calls: 1}, {headers: []string{"Cache-Control", "min-fresh=100"}, calls: 2}}},
		{name: "only-if-cached honoured", rfc: "9111 §5.2.1.7", policy: policy.Policy{HonorRequestCacheControl: true}, origin: fixed("Cache-Control", "max-age=60"),
			steps: []stdStep{{headers: []string{"Cache-Control", "only-if-cached"}, status: 504, calls: 0}, miss(1), {headers: []string{"Cache-Control", "only-if-cached"}, hit: true, calls: 1}}},

		// no-transform: RFC 9110 section 7.7, RFC 9111 section 5.2.2.6.
		{name: "no-transform: not compressed by the cache", rfc: "9111 §5.2.2.6", origin: fixed("Cache-Control", "max-age=60, no-transform", "ETag", `"z"`, "Content-Type", "text/plain"),
			steps: []stdStep{miss(1), {headers: []string{"Accept-Encoding", "gzip"}, hit: true, calls: 1, check: both(header("Content-Encoding", ""), header("Etag", `"z"`))}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runStandardsCase(t, tc)
		})
	}
}

// TestStandardsNoTransformEncoded checks that a client which does not
// accept the coding of an origin-encoded no-transform body goes to the
// origin rather than getting it decoded (RFC 9110 section 7.7).
func TestStandardsNoTransformEncoded(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("hello "), 100))
	zw.Close()
	runStandardsCase(t, stdCase{rfc: "9110 §7.7", origin: func(n int64, w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			answer(w, 200, "plain", "Cache-Control", "no-store")
			return
		}
		answer(w, 200, gz.String(), "Date", date(time.Now()), "Cache-Control", "max-age=60, no-transform", "Content-Encoding", "gzip", "Vary", "Accept-Encoding")
	}, steps: []stdStep{
		{headers: []string{"Accept-Encoding", "gzip"}, calls: 1},
		{headers: []string{"Accept-Encoding", "gzip"}, calls: 1, hit: true},
		{calls: 2, check: func(t *testing.T, res stdResult) {
			if res.body != "plain" {
				t.Errorf("body = %q, want the origin's own answer", res.body)
			}
		}},
	}})
}

func TestStandardsPolicyErrors(t *testing.T) {
	t.Parallel()
	c := newTestCache(t, newMemStore(t))
	for _, p := range []policy.Policy{
		{Standards: true, TTL: time.Minute},
		{Standards: true, Statuses: []int{200}},
		{Standards: true, StaleWhileRevalidate: time.Second},
		{Standards: true, StaleIfError: time.Second},
	} {
		_, err := c.Route("/s/{id}", p)
		var fe *policy.FieldError
		if !errors.As(err, &fe) || fe.Route != "/s/{id}" || !strings.Contains(err.Error(), "Standards") {
			t.Errorf("Route(%+v) = %v, want a FieldError naming the route and Standards", p, err)
		}
	}
	if _, err := c.Route("/ok/{id}", policy.Policy{Standards: true, MaxTTL: time.Hour}); err != nil {
		t.Errorf("Route with Standards and MaxTTL: %v", err)
	}
}

// TestStandardsRanges checks single ranges answered from a stored 200
// (RFC 9110 section 14), on a miss and on a hit.
func TestStandardsRanges(t *testing.T) {
	t.Parallel()
	const text = "0123456789"
	lm := date(time.Now().Add(-time.Hour))
	origin := func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" || r.Header.Get("If-Range") != "" {
			t.Errorf("origin asked for %q / %q, want the whole representation", r.Header.Get("Range"), r.Header.Get("If-Range"))
		}
		answer(w, 200, text, "Date", date(time.Now()), "Cache-Control", "max-age=60", "ETag", `"r1"`, "Last-Modified", lm)
	}
	want := func(status int, body, contentRange string) func(*testing.T, stdResult) {
		return func(t *testing.T, res stdResult) {
			t.Helper()
			if res.status != status || res.body != body || res.header.Get("Content-Range") != contentRange {
				t.Errorf("got %d %q Content-Range %q, want %d %q %q", res.status, res.body, res.header.Get("Content-Range"), status, body, contentRange)
			}
		}
	}
	runStandardsCase(t, stdCase{rfc: "9110 §14", origin: origin, steps: []stdStep{
		{headers: []string{"Range", "bytes=2-4"}, status: 206, calls: 1, check: want(206, "234", "bytes 2-4/10")},
		{headers: []string{"Range", "bytes=-3"}, status: 206, calls: 1, hit: true, check: want(206, "789", "bytes 7-9/10")},
		{headers: []string{"Range", "bytes=8-"}, status: 206, calls: 1, hit: true, check: want(206, "89", "bytes 8-9/10")},
		{headers: []string{"Range", "bytes=20-"}, status: 416, calls: 1, hit: true, check: want(416, "", "bytes */10")},
		{headers: []string{"Range", "bytes=0-1,4-5"}, calls: 1, hit: true, check: want(200, text, "")},
		{headers: []string{"Range", "bytes=0-1", "If-Range", `"r1"`}, status: 206, calls: 1, hit: true, check: want(206, "01", "bytes 0-1/10")},
		{headers: []string{"Range", "bytes=0-1", "If-Range", `"old"`}, calls: 1, hit: true, check: want(200, text, "")},
		{headers: []string{"Range", "bytes=0-1", "If-Range", `W/"r1"`}, calls: 1, hit: true, check: want(200, text, "")},
		{headers: []string{"Range", "bytes=0-1", "If-Range", lm}, status: 206, calls: 1, hit: true, check: want(206, "01", "bytes 0-1/10")},
		{method: http.MethodHead, headers: []string{"Range", "bytes=0-1"}, calls: 1, hit: true},
	}})
}
