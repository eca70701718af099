package redisstore_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/internal/redistest"
)

// The tests of this file come from the outside review of the operators'
// tools (2026-12-05): each comment tells what the reviewer found, and the
// test guards the fix.

// TestReviewDoctorUnboundedConcurrency: every GET .../doctor (and every
// HEAD, whose answer has no body) runs the whole health check against
// Redis: INFO, CONFIG GET *, DBSIZE, up to 4 SCAN COUNT 1000 per master,
// 64 RANDOMKEYs, a Lua script, OBJECT ENCODING and MEMORY USAGE on 16
// buckets, 5 PINGs per node, CLIENT TRACKINGINFO, SPUBLISH, for up to
// 10 s each. Nothing bounds how many run at once, and concurrent calls
// share nothing: N callers (a script looping on `readthrough doctor`,
// tabs of the admin page, each of which runs it on every load) cost N
// full checks on the production Redis. Concurrent calls should share one
// run (singleflight, or a report reused for a few seconds) or be refused
// (429) while one runs.
func TestReviewDoctorUnboundedConcurrency(t *testing.T) {
	srv := redistest.StartT(t)
	client := srv.Client()
	s := newStore(t, client)
	fillEntries(t, s, 20, 4, 300)
	cache, err := httpcache.New(s, httpcache.WithLogger(slog.New(slog.DiscardHandler)), httpcache.WithoutStartupHealthCheck())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close(context.Background()) })
	const token = "0123456789abcdef-review"
	admin, err := cache.AdminHandler(httpcache.WithAdminToken("ops", token))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.StripPrefix("/admin", admin))
	defer hs.Close()
	if err := client.ConfigResetStat(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}

	const callers = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			method := "GET"
			if i%2 == 1 {
				method = "HEAD" // runs the whole check too, for no body
			}
			req, _ := http.NewRequest(method, hs.URL+"/admin/doctor", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	close(start)
	wg.Wait()

	stats, err := client.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := func(cmd string) int {
		for line := range strings.Lines(stats) {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	total := 0
	for line := range strings.Lines(stats) {
		if _, rest, ok := strings.Cut(line, ":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			total += n
		}
	}
	t.Logf("%d concurrent doctor calls: %d Redis commands (CONFIG %d, SCAN %d, PING %d, MEMORY %d, EVAL %d)",
		callers, total, calls("config|get"), calls("scan"), calls("ping"), calls("memory|usage"), calls("eval"))
	if n := calls("config|get"); n > 2 {
		t.Errorf("%d concurrent doctor calls ran %d full health checks (CONFIG GET *), %d Redis commands in all; want them to share one run or be refused", callers, n, total)
	}
}
