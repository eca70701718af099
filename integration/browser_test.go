package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// The admin page in a real headless Chromium, driven through the DevTools
// protocol: an operator signs in (a wrong token first), watches the stats
// table refresh after traffic, inspects an entry, purges it through the
// form and its confirmation, and the next request to the app misses. The
// page runs under its own Content-Security-Policy (no eval: the test
// evaluates its checks through DevTools, never in the page's script).
//
// Screenshots go to $ARTIFACTS (default: <temp>/readthrough-artifacts);
// with UPDATE_SCREENSHOT=1 the last one also replaces docs/admin-page.png.

const browserToken = "browser-test-token-0123456789"

// chromium returns the path of a Chromium to drive; without one the test
// skips, unless CI is set, where it fails (as without redis-server).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	// Never skipped: a page nobody drove is a page nobody tested.
	t.Fatal("the admin page's test needs Chromium: apt-get install chromium (.ci/run does), or set CHROMIUM to its path")
	return ""
}

// artifacts returns the directory screenshots are written to.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "readthrough-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one tab of a headless Chromium.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // Chromium refuses to run as root with its sandbox
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1366, 900), // a laptop screen
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return &browser{t: t, ctx: ctx, dir: artifacts(t)}
}

// do runs steps, bounded, and fails the test (with a screenshot) on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression through DevTools.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// text returns the text of the element with the given id, "" if none.
func (b *browser) text(id string) string {
	b.t.Helper()
	s, err := eval[string](b, `(function () { var e = document.getElementById(`+strconv.Quote(id)+`); return e ? e.textContent : ''; })()`)
	if err != nil {
		b.t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// waitFor polls a JavaScript condition until it holds. chromedp.Poll would
// run it in the page through new Function, which the page's CSP forbids.
func (b *browser) waitFor(what, cond string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := eval[bool](b, cond)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.shot("failed")
			b.t.Fatalf("waiting for %s: %v (condition %s)", what, err, cond)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shot writes a full-page screenshot to the artefacts directory.
func (b *browser) shot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.dir, strings.ReplaceAll(b.t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// cell is the JavaScript text of a column of a route's row in the stats
// table.
func cell(route, col string) string {
	return `(function () { var r = Array.prototype.find.call(document.querySelectorAll('#stats-body tr'), function (tr) { return tr.dataset.route === ` +
		strconv.Quote(route) + `; }); var c = r && r.querySelector('td[data-col=` + col + `]'); return c ? c.firstChild.textContent : null; })()`
}

func TestAdminPageInBrowser(t *testing.T) {
	b := newBrowser(t)
	const users, items, docs = "GET /users/{id}", "GET /items/{id}", "GET /docs/{id}"
	app := startApp(t, appConfig{
		prefix: prefix(t),
		opts:   []httpcache.Option{patient()},
		routes: []route{
			{pattern: users, policy: policy.Policy{TTL: time.Hour}, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(20 * time.Millisecond) // an origin worth caching
				fmt.Fprintf(w, `{"user": %q}`, r.PathValue("id"))
			})},
			{pattern: items, policy: policy.Policy{TTL: time.Hour}, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, strings.Repeat("item ", 200))
			})},
			// Standards mode, a response per tenant: inspect names the header.
			{pattern: docs, policy: policy.Policy{Standards: true}, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=3600")
				w.Header().Set("Vary", "X-Tenant")
				fmt.Fprintf(w, "doc for %s", r.Header.Get("X-Tenant"))
			})},
		},
	})
	adminHandler, err := app.Cache.AdminHandler(httpcache.WithAdminToken("ops", browserToken), httpcache.WithAdminLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	// Under a prefix of its own: the page calls its endpoints by relative URLs.
	mux := http.NewServeMux()
	mux.Handle("/ops/admin/", http.StripPrefix("/ops/admin", adminHandler))
	adminSrv := httptest.NewServer(mux)
	t.Cleanup(adminSrv.Close)

	// The page needs no token; a wrong one is refused and asked again.
	b.do("open the page", chromedp.Navigate(adminSrv.URL+"/ops/admin/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.waitFor("the page's own style (CSP style hash)", `getComputedStyle(document.body).backgroundColor === 'rgb(246, 247, 249)'`, 5*time.Second)
	b.do("type a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-0123456789\r"))
	b.waitFor("the refusal", `document.getElementById('login-error').textContent.indexOf('refused') >= 0`, 5*time.Second)
	b.do("sign in with the keyboard", chromedp.SendKeys(chromedp.CSS("#token"), browserToken+"\r"))
	b.waitFor("the app", `!document.getElementById('app').hidden && document.querySelectorAll('#stats-body tr[data-route]').length === 3`, 5*time.Second)
	if ok, err := eval[bool](b, `sessionStorage.getItem('readthrough-admin-token:/ops/admin/') === `+strconv.Quote(browserToken)+` && sessionStorage.length === 1 && localStorage.length === 0`); err != nil || !ok {
		t.Errorf("the token is not kept in the tab's session storage only, under the mount path (%v)", err)
	}

	// Traffic: the table refreshes by itself.
	for _, path := range []string{"/users/15", "/users/15", "/users/15", "/users/16", "/items/1", "/items/1"} {
		if r := get(app.URL + path); r.err != nil || r.status != 200 {
			t.Fatalf("GET %s: %d %v", path, r.status, r.err)
		}
	}
	get(app.URL+"/users/15", "Authorization", "Bearer someone") // a bypass
	b.waitFor("the stats to refresh by themselves", cell(users, "hits")+` === '2' && `+cell(items, "hits")+` === '1'`, 12*time.Second)
	if got, _ := eval[string](b, cell(users, "misses")); got != "2" {
		t.Errorf("users misses cell %q, want 2", got)
	}
	if got, _ := eval[string](b, cell(users, "hit_ratio")); got != "50.0 %" {
		t.Errorf("users recent hit ratio %q, want 50.0 %%", got)
	}
	if got, _ := eval[string](b, cell(users, "origin_time_saved")); got == "0 s" {
		t.Errorf("users origin time saved %q, want some", got)
	}
	// Without a local tier, neither its column nor its panel.
	if ok, err := eval[bool](b, noLocalTier); err != nil || !ok {
		t.Errorf("a cache without a local tier shows its column or panel (%v)", err)
	}
	b.shot("stats")

	// Inspect: attacker-influenced text is shown as text, never parsed.
	b.do("inspect a hostile URL",
		chromedp.SetValue(chromedp.CSS("#inspect-url"), `http://svc/<img src=x id=pwned>`),
		chromedp.Click(chromedp.CSS("#inspect-submit")))
	b.waitFor("the inspect error", `document.getElementById('inspect-error').textContent.indexOf('HTTP 400') === 0`, 5*time.Second)
	if n, _ := eval[int](b, `document.querySelectorAll('#pwned, img').length`); n != 0 {
		t.Errorf("server text became %d elements", n)
	}
	b.do("inspect the entry",
		chromedp.SetValue(chromedp.CSS("#inspect-url"), app.URL+"/users/15"),
		chromedp.Click(chromedp.CSS("#inspect-submit")))
	b.waitFor("the entry's state", `(document.querySelector('#inspect-result dd[data-key=state]') || {}).textContent === 'fresh'`, 5*time.Second)
	if got, _ := eval[string](b, `document.querySelector('#inspect-result dd[data-key=route]').textContent`); got != users {
		t.Errorf("inspect route %q, want %q", got, users)
	}
	get(app.URL+"/docs/1", "X-Tenant", "a")
	b.do("inspect a variant",
		chromedp.SetValue(chromedp.CSS("#inspect-url"), app.URL+"/docs/1"),
		chromedp.SetValue(chromedp.CSS("#inspect-headers"), "X-Tenant: a"),
		chromedp.Click(chromedp.CSS("#inspect-submit")))
	b.waitFor("the variant's headers", `(document.querySelector('#inspect-result dd[data-key=varies-on]') || {}).textContent === 'X-Tenant'`, 5*time.Second)
	if got, _ := eval[string](b, `document.querySelector('#inspect-result dd[data-key=state]').textContent`); got != "fresh" {
		t.Errorf("inspect of the tenant's variant: state %q, want fresh", got)
	}
	if _, err := eval[string](b, `document.getElementById('inspect-headers').value = ''`); err != nil {
		t.Fatal(err)
	}
	b.do("back to the users entry",
		chromedp.SetValue(chromedp.CSS("#inspect-url"), app.URL+"/users/15"),
		chromedp.Click(chromedp.CSS("#inspect-submit")))
	b.waitFor("the users entry again", `(document.querySelector('#inspect-result dd[data-key=route]') || {}).textContent === '`+users+`'`, 5*time.Second)

	// Purge: the first click only asks.
	b.do("ask for the purge",
		chromedp.SetValue(chromedp.CSS("#purge-url"), app.URL+"/users/15"),
		chromedp.Click(chromedp.CSS("#purge-submit")))
	b.waitFor("the confirmation", `!document.getElementById('purge-confirm').hidden && document.activeElement.id === 'purge-confirm-button'`, 5*time.Second)
	if r := get(app.URL + "/users/15"); !r.hit() {
		t.Fatalf("purged before the confirmation: %q", r.cacheStatus())
	}
	b.do("confirm the purge", chromedp.Click(chromedp.CSS("#purge-confirm-button")))
	b.waitFor("the purge's result", `document.getElementById('purge-result').textContent.indexOf('1 bucket removed') >= 0`, 5*time.Second)
	if r := get(app.URL + "/users/15"); r.hit() || !strings.Contains(r.cacheStatus(), "fwd=uri-miss") {
		t.Errorf("after the purge, the next request: %q, want a miss", r.cacheStatus())
	}
	b.do("inspect the entry again", chromedp.Click(chromedp.CSS("#inspect-submit")))
	b.waitFor("the refilled entry", `(document.querySelector('#inspect-result dd[data-key=age]') || {}).textContent === '0 s'`, 5*time.Second)

	// The health check: a table of findings, or the endpoint's error as
	// text (without one, the handler answers 404).
	b.waitFor("the health check's answer", `!document.getElementById('doctor-table').hidden || document.getElementById('doctor-error').textContent !== ''`, 10*time.Second)
	b.do("refresh the stats", chromedp.Click(chromedp.CSS("#refresh")))
	b.waitFor("the stats after the purge", cell(users, "misses")+` === '3'`, 5*time.Second)
	t.Logf("health check: %q %q", b.text("doctor-summary"), b.text("doctor-error"))
	last := b.shot("purged")

	if os.Getenv("UPDATE_SCREENSHOT") != "" && last != "" {
		png, err := os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "admin-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("updated docs/admin-page.png")
	}
}

// noLocalTier is the JavaScript test that the page shows no local tier.
const noLocalTier = `document.getElementById('local-col').hidden && document.getElementById('local').hidden && document.querySelectorAll('td[data-col=local_hits]').length === 0`

// localItem is the JavaScript text of an item of the local tier's panel.
func localItem(key string) string {
	return `(document.querySelector('#local-stats dd[data-key=` + key + `]') || {}).textContent`
}

// The admin page of a cache with a local tier: a column of the hits it
// served (since start, and recent under it) and a panel of its state.
// Then, on a mount whose stats the test makes up, the panel's flag on a
// tier Redis has not heard from, and the page going back to no tier.
func TestAdminPageLocalTierInBrowser(t *testing.T) {
	b := newBrowser(t)
	const users, items = "GET /users/{id}", "GET /items/{id}"
	app := startApp(t, appConfig{
		prefix: prefix(t),
		opts:   []httpcache.Option{patient(), httpcache.WithLocalTier(1 << 20)},
		routes: []route{
			{pattern: users, policy: policy.Policy{TTL: time.Hour}, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"user": %q}`, r.PathValue("id"))
			})},
			{pattern: items, policy: policy.Policy{TTL: time.Hour, Local: true}, handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, strings.Repeat("item ", 200))
			})},
		},
	})
	adminHandler, err := app.Cache.AdminHandler(httpcache.WithAdminToken("ops", browserToken), httpcache.WithAdminLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	// made is the stats answer of the /made/admin/ mount.
	var made atomic.Pointer[string]
	mux := http.NewServeMux()
	mux.Handle("/ops/admin/", http.StripPrefix("/ops/admin", adminHandler))
	mux.Handle("/made/admin/", http.StripPrefix("/made/admin", adminHandler))
	mux.HandleFunc("GET /made/admin/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, *made.Load())
	})
	adminSrv := httptest.NewServer(mux)
	t.Cleanup(adminSrv.Close)

	// Traffic: a miss, then hits until the tier serves one (the copy made
	// by a read before Redis reported the fill is not served), then two
	// more from the tier.
	get(app.URL + "/items/1")
	for i := 0; ; i++ {
		r := get(app.URL + "/items/1")
		if strings.Contains(r.cacheStatus(), "detail=local") {
			break
		}
		if i == 50 {
			t.Fatalf("no local hit: %q", r.cacheStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 2 {
		if r := get(app.URL + "/items/1"); !strings.Contains(r.cacheStatus(), "detail=local") {
			t.Fatalf("not a local hit: %q", r.cacheStatus())
		}
	}
	get(app.URL + "/users/1")
	get(app.URL + "/users/1")
	localHits := app.Cache.RouteStats()[items].LocalHits

	b.do("open the page", chromedp.Navigate(adminSrv.URL+"/ops/admin/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), browserToken+"\r"))
	b.waitFor("the local column", `!document.getElementById('local-col').hidden && `+cell(items, "local_hits")+` === '`+strconv.FormatInt(localHits, 10)+`'`, 5*time.Second)
	if got, _ := eval[string](b, cell(users, "local_hits")); got != "0" {
		t.Errorf("users local hits %q, want 0", got)
	}
	if got, _ := eval[string](b, `document.querySelector('#stats-foot td[data-col=local_hits]').firstChild.textContent`); got != strconv.FormatInt(localHits, 10) {
		t.Errorf("all routes' local hits %q, want %d", got, localHits)
	}
	if got, _ := eval[string](b, `(Array.prototype.find.call(document.querySelectorAll('#stats-body tr'), function (tr) { return tr.dataset.route === `+strconv.Quote(items)+`; }).querySelector('td[data-col=local_hits] .sub') || {}).textContent`); got != "recent "+strconv.FormatInt(localHits, 10) {
		t.Errorf("items recent local hits %q, want recent %d", got, localHits)
	}
	if n, _ := eval[int](b, `document.querySelectorAll('#stats thead th').length`); n != 9 {
		t.Errorf("%d column headers, want 9", n)
	}
	b.waitFor("the local tier's panel", `!document.getElementById('local').hidden && `+localItem("entries")+` === '1'`, 5*time.Second)
	ls := app.Cache.LocalStats()
	for key, want := range map[string]*regexp.Regexp{
		"bytes":         regexp.MustCompile(`^[0-9.,]+ (B|KiB) / 1\.0 MiB$`),
		"hit-ratio":     regexp.MustCompile(`^[0-9.]+ %$`),
		"evictions":     regexp.MustCompile(`^0$`),
		"invalidations": regexp.MustCompile(`^[0-9,]+$`),
		"resets":        regexp.MustCompile(`^[1-9][0-9,]*$`),
		"silent":        regexp.MustCompile(`^[0-9.]+ m?s$`),
	} {
		if got, err := eval[string](b, localItem(key)); err != nil || !want.MatchString(got) {
			t.Errorf("local tier %s %q, want %s (server: %+v, %v)", key, got, want, ls, err)
		}
	}
	if flagged, _ := eval[bool](b, `document.querySelector('#local-stats dd[data-key=silent]').classList.contains('flag')`); flagged {
		t.Error("a live tier's silence is flagged")
	}
	b.shot("local")

	// Made-up answers: a tier silent for 3 s, one never heard from, an
	// untracked one, and a server without a tier.
	answer := func(local string) {
		s := `{"total": {"hits": 9, "local_hits": 7, "misses": 1}, "routes": {"GET /items/{id}": {"hits": 9, "local_hits": 7, "misses": 1}},
			"recent": {"window_seconds": 60, "total": {"hits": 3, "local_hits": 2, "misses": 1, "hit_ratio": 0.75}, "routes": {"GET /items/{id}": {"hits": 3, "local_hits": 2, "misses": 1, "hit_ratio": 0.75}}}`
		if local != "" {
			s += `, "local": ` + local
		}
		s += "}"
		made.Store(&s)
	}
	tier := func(tracked bool, silentNs int64) string {
		return fmt.Sprintf(`{"enabled": true, "tracked": %t, "entries": 1200, "bytes": 1536000, "max_bytes": 67108864, "hit_ratio": 0.875, "evictions": 3, "invalidations": 41, "resets": 2, "silent_ns": %d}`, tracked, silentNs)
	}
	answer(tier(true, 3_200_000_000))
	b.do("open the made-up mount", chromedp.Navigate(adminSrv.URL+"/made/admin/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("sign in there", chromedp.SendKeys(chromedp.CSS("#token"), browserToken+"\r"))
	b.waitFor("the flagged silence", `document.querySelector('#local-stats dd[data-key=silent].flag') !== null`, 5*time.Second)
	for key, want := range map[string]string{
		"entries": "1,200", "bytes": "1.5 MiB / 64.0 MiB", "hit-ratio": "87.5 %", "evictions": "3", "invalidations": "41", "resets": "2",
		"silent": "3.2 s, over the bound (1.0 s): no copy is served",
	} {
		if got, _ := eval[string](b, localItem(key)); got != want {
			t.Errorf("made-up tier %s %q, want %q", key, got, want)
		}
	}
	b.shot("local-silent")
	answer(tier(true, -1))
	b.do("refresh", chromedp.Click(chromedp.CSS("#refresh")))
	b.waitFor("a tier never heard from", localItem("silent")+`.indexOf('never') === 0 && document.querySelector('#local-stats dd[data-key=silent]').classList.contains('flag')`, 5*time.Second)
	answer(tier(false, 0))
	b.do("refresh", chromedp.Click(chromedp.CSS("#refresh")))
	b.waitFor("an untracked tier", localItem("silent")+`.indexOf('untracked') === 0 && !document.querySelector('#local-stats dd[data-key=silent]').classList.contains('flag')`, 5*time.Second)
	answer("")
	b.do("refresh", chromedp.Click(chromedp.CSS("#refresh")))
	b.waitFor("no tier", noLocalTier+` && `+cell(items, "hits")+` === '9'`, 5*time.Second)
}
