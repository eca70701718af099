package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

const itemsRoute = "GET /items/{id}"

// startMemService is a cached service over an in-process store (memstore,
// which reports its changes, as a local tier needs) with its admin API
// on a server of its own. With local, the cache has a local tier of 1
// MiB and itemsRoute is Local; postsRoute never is.
func startMemService(t *testing.T, local bool) (*service, *httpcache.Cache) {
	t.Helper()
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	opts := []httpcache.Option{httpcache.WithLogger(quiet)}
	if local {
		opts = append(opts, httpcache.WithLocalTier(1<<20))
	}
	cache, err := httpcache.New(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		policy  policy.Policy
	}{
		{itemsRoute, policy.Policy{TTL: time.Hour, Local: local}},
		{postsRoute, policy.Policy{TTL: time.Hour}},
	} {
		mw, err := cache.Route(rt.pattern, rt.policy)
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle(rt.pattern, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", rt.pattern, r.PathValue("id"))
		})))
	}
	if err := cache.VerifyRoutes(); err != nil {
		t.Fatal(err)
	}
	svc := httptest.NewServer(mux)
	// Made before any traffic: the recent window holds all of it.
	adminHandler, err := cache.AdminHandler(httpcache.WithAdminToken("operator", testToken), httpcache.WithAdminLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	adminMux := http.NewServeMux()
	adminMux.Handle("/admin/", adminHandler)
	adm := httptest.NewServer(adminMux)
	t.Cleanup(func() {
		svc.Close()
		adm.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cache.Close(ctx)
		store.Close()
	})
	return &service{t: t, url: svc.URL, admin: adm.URL + "/admin/"}, cache
}

// localTraffic sends one miss, one store hit and three local hits to
// itemsRoute, and a miss and a hit to postsRoute.
func localTraffic(t *testing.T, s *service, cache *httpcache.Cache) {
	t.Helper()
	s.get("/items/1") // a miss: the fill's store write is reported
	// The report of the fill comes asynchronously: a copy read before it
	// lands would be invalidated by it.
	deadline := time.Now().Add(5 * time.Second)
	for cache.LocalStats().Invalidations < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the store never reported the fill: %+v", cache.LocalStats())
		}
		time.Sleep(time.Millisecond)
	}
	if status := s.get("/items/1"); !strings.Contains(status, "; hit") || strings.Contains(status, "local") {
		t.Fatalf("second request: %q, want a hit from the store", status)
	}
	for i := range 3 {
		if status := s.get("/items/1"); !strings.Contains(status, "detail=local") {
			t.Fatalf("local request %d: %q, want a local hit", i, status)
		}
	}
	s.get("/posts/1")
	if status := s.get("/posts/1"); !strings.Contains(status, "; hit") {
		t.Fatalf("posts: %q, want a hit", status)
	}
	// Wait for the store to prove delivery of every change made so far:
	// the reports of the fills have then landed, and the tier's counters
	// hold still.
	end := time.Now()
	for {
		since := time.Since(end)
		if ls := cache.LocalStats(); ls.SilentNs >= 0 && ls.SilentNs < int64(since) {
			return
		}
		if since > 5*time.Second {
			t.Fatalf("no proof of delivery since the traffic: %+v", cache.LocalStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// summaryLine matches the line under the table of a live tracked tier.
var summaryLine = regexp.MustCompile(`(?m)^local tier: entries 1, bytes \d+(\.\d)? (B|KiB) / 1\.0 MiB, hit ratio 75\.0% \(since start\), evictions 0, invalidations (\d+), resets 1, silent [0-9.]+[µm]?s$`)

func TestStatsLocalTier(t *testing.T) {
	s, cache := startMemService(t, true)
	localTraffic(t, s, cache)
	ls := cache.LocalStats()

	out := s.cli("stats").want(t, exitOK).stdout
	sq := squeeze(out)
	if !strings.Contains(sq, "ROUTE HITS LOCAL MISSES HIT RATIO STALE COLLAPSED REVALIDATED ORIGIN SAVED\n") {
		t.Errorf("no LOCAL column after HITS:\n%s", out)
	}
	// ROUTE HITS LOCAL MISSES HIT-RATIO ...: the recent window.
	for route, want := range map[string]string{
		itemsRoute: "4 3 1 80.0%",
		postsRoute: "1 0 1 50.0%",
		"TOTAL":    "5 3 2 71.4%",
	} {
		if got := strings.Join(tableRow(t, sq, route)[:4], " "); got != want {
			t.Errorf("row %s starts with %q, want %q", route, got, want)
		}
	}
	m := summaryLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no local tier line, or not %s:\n%s", summaryLine, out)
	}
	if m[3] != fmt.Sprint(ls.Invalidations) {
		t.Errorf("invalidations %s, want the server's %d", m[3], ls.Invalidations)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), m[0]) {
		t.Errorf("the local tier line is not under the table:\n%s", out)
	}

	// Since start: the same here, since the window holds all the traffic.
	if got := strings.Join(tableRow(t, squeeze(s.cli("stats", "--since-start").want(t, exitOK).stdout), itemsRoute)[:2], " "); got != "4 3" {
		t.Errorf("since start: items hits and local hits %q, want 4 3", got)
	}
	// One route: its local hits, and the tier's line all the same.
	one := s.cli("stats", "--route", postsRoute).want(t, exitOK).stdout
	if got := strings.Join(tableRow(t, squeeze(one), "TOTAL")[:2], " "); got != "1 0" || !summaryLine.MatchString(one) {
		t.Errorf("stats --route %s: total starts %q, want 1 0, and the tier's line:\n%s", postsRoute, got, one)
	}

	js := s.cli("stats", "--json").want(t, exitOK).stdout
	var table statsTable
	if err := json.Unmarshal([]byte(js), &table); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, js)
	}
	var localHits []string
	for _, r := range append(table.Routes, table.Total) {
		n := "absent"
		if r.LocalHits != nil {
			n = fmt.Sprint(*r.LocalHits)
		}
		localHits = append(localHits, r.Route+"="+n)
	}
	if got, want := strings.Join(localHits, " "), "GET /items/{id}=3 GET /posts/{id}=0 =3"; got != want {
		t.Errorf("local_hits %s, want %s", got, want)
	}
	l := table.Local
	if l == nil {
		t.Fatalf("stats --json: no local:\n%s", js)
	}
	if !l.Tracked || l.Entries != 1 || l.Bytes <= 0 || l.MaxBytes != 1<<20 || l.HitRatio != 0.75 ||
		l.Evictions != 0 || l.Invalidations != ls.Invalidations || l.Resets != 1 ||
		l.SilentNs < 0 || l.SilentNs > int64(time.Second) || l.SilentFlagged || l.Enabled != nil {
		t.Errorf("stats --json local %+v, want the server's %+v, not flagged", *l, ls)
	}
	var raw map[string]map[string]any
	json.Unmarshal([]byte(js), &raw) //nolint:errcheck // decoded above
	for _, key := range []string{"tracked", "entries", "bytes", "max_bytes", "hit_ratio", "evictions", "invalidations", "resets", "silent_ns", "silent_flagged"} {
		if _, ok := raw["local"][key]; !ok {
			t.Errorf("stats --json: local has no %q", key)
		}
	}
}

// TestStatsLocalWatch checks that stats --watch shows the column and the
// tier's line in every table.
func TestStatsLocalWatch(t *testing.T) {
	s, cache := startMemService(t, true)
	localTraffic(t, s, cache)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{marker: "TOTAL", each: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	var stderr bytes.Buffer
	env := s.env()
	code := run(ctx, []string{"stats", "--watch", "--interval", "50ms"}, strings.NewReader(""), out, &stderr, func(k string) string { return env[k] })
	got := out.buf.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", got, stderr.String())
	if code != exitOK {
		t.Fatalf("exit code %d, want 0 on interrupt", code)
	}
	tables := strings.Split(got, "\n\n")
	if len(tables) != 2 {
		t.Fatalf("want two tables, got %d parts", len(tables))
	}
	for i, table := range tables {
		if !strings.Contains(table, " LOCAL ") || !summaryLine.MatchString(table) {
			t.Errorf("table %d lacks the LOCAL column or the tier's line:\n%s", i, table)
		}
	}
}

// TestStatsNoLocalTier checks that a server without a local tier gets the
// table and the JSON it always had: no LOCAL column, no tier line, no
// local_hits or local in the JSON (although the server's answer counts
// local_hits, as zeros).
func TestStatsNoLocalTier(t *testing.T) {
	s, _ := startMemService(t, false)
	s.get("/items/1")
	s.get("/items/1")
	out := s.cli("stats").want(t, exitOK).stdout
	if strings.Contains(out, "LOCAL") || strings.Contains(out, "local tier") {
		t.Errorf("a server without a local tier shows it:\n%s", out)
	}
	if got := strings.Join(tableRow(t, squeeze(out), itemsRoute)[:3], " "); got != "1 1 50.0%" {
		t.Errorf("items row starts %q, want 1 1 50.0%%", got)
	}
	js := s.cli("stats", "--json").want(t, exitOK).stdout
	if strings.Contains(js, "local") {
		t.Errorf("stats --json of a server without a local tier mentions it: %s", js)
	}
	if !json.Valid([]byte(js)) {
		t.Errorf("stats --json: not JSON: %s", js)
	}
}
