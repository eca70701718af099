package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStatsWindow checks which counters the table shows against answers
// of the admin API's two shapes: with "recent" and the origin counters
// (the table shows the window, with the server's hit ratio, so that the
// command and the admin page agree: here the server's 0.25, not the 0.5
// its counts give), and without them (the counters
// since start, with "-" for what the server does not count).
func TestStatsWindow(t *testing.T) {
	const (
		withRecent = `{
			"total":  {"hits": 100, "misses": 10, "stale_served": 0, "collapsed": 0, "origin_time_saved_ns": 5000000000},
			"routes": {"GET /a/{id}": {"hits": 100, "misses": 10, "stale_served": 0, "collapsed": 0, "origin_time_saved_ns": 5000000000}},
			"recent": {"window_seconds": 300,
				"total":  {"hits": 3, "misses": 1, "stale_served": 1, "collapsed": 3, "bypassed": 2, "revalidations": 4, "not_modified": 2, "origin_time_saved_ns": 1500000, "hit_ratio": 0.25},
				"routes": {"GET /a/{id}": {"hits": 3, "misses": 1, "stale_served": 1, "collapsed": 3, "bypassed": 2, "revalidations": 4, "not_modified": 2, "origin_time_saved_ns": 1500000, "hit_ratio": 0.25}}}}`
		without = `{
			"total":  {"hits": 3, "misses": 1, "stale_served": 0, "collapsed": 0},
			"routes": {"GET /a/{id}": {"hits": 3, "misses": 1, "stale_served": 0, "collapsed": 0},
			           "GET /b": {"hits": 0, "misses": 0, "stale_served": 0, "collapsed": 0}}}`
	)
	tests := []struct {
		name   string
		answer string
		args   []string
		header string
		rows   map[string]string // route -> its row, squeezed
		json   string            // stats --json without its time
	}{
		{
			name: "recent", answer: withRecent, header: "window: last 5m0s (the server's recent window",
			rows: map[string]string{"GET /a/{id}": "3 1 25.0% 1 3 2/4 1.5ms", "TOTAL": "3 1 25.0% 1 3 2/4 1.5ms"},
			json: `{"window":"recent","window_seconds":300,"routes":[{"route":"GET /a/{id}","hits":3,"misses":1,"stale_served":1,"collapsed":3,"revalidations":4,"not_modified":2,"hit_ratio":0.25,"origin_time_saved_ns":1500000}],"total":{"hits":3,"misses":1,"stale_served":1,"collapsed":3,"revalidations":4,"not_modified":2,"hit_ratio":0.25,"origin_time_saved_ns":1500000}}`,
		},
		{
			name: "since start asked", answer: withRecent, args: []string{"--since-start"}, header: "window: since the cache started",
			rows: map[string]string{"GET /a/{id}": "100 10 90.9% 0 0 0/0 5s", "TOTAL": "100 10 90.9% 0 0 0/0 5s"},
		},
		{
			name: "older server", answer: without, header: "window: since the cache started",
			rows: map[string]string{"GET /a/{id}": "3 1 75.0% 0 0 0/0 -", "GET /b": "0 0 - 0 0 0/0 -", "TOTAL": "3 1 75.0% 0 0 0/0 -"},
			json: `{"window":"since_start","routes":[{"route":"GET /a/{id}","hits":3,"misses":1,"stale_served":0,"collapsed":0,"revalidations":0,"not_modified":0,"hit_ratio":0.75,"origin_time_saved_ns":null},{"route":"GET /b","hits":0,"misses":0,"stale_served":0,"collapsed":0,"revalidations":0,"not_modified":0,"hit_ratio":null,"origin_time_saved_ns":null}],"total":{"hits":3,"misses":1,"stale_served":0,"collapsed":0,"revalidations":0,"not_modified":0,"hit_ratio":0.75,"origin_time_saved_ns":null}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/admin/stats" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.answer))
			}))
			defer srv.Close()
			env := map[string]string{"READTHROUGH_ADMIN": srv.URL + "/admin/", "READTHROUGH_TOKEN": testToken}
			out := runCLI(t, context.Background(), strings.NewReader(""), env, append([]string{"stats"}, tt.args...)...).want(t, exitOK).stdout
			if !strings.Contains(out, tt.header) {
				t.Errorf("header lacks %q", tt.header)
			}
			for route, want := range tt.rows {
				if got := strings.Join(tableRow(t, squeeze(out), route), " "); got != want {
					t.Errorf("row %s: %q, want %q", route, got, want)
				}
			}
			if tt.json == "" {
				return
			}
			js := runCLI(t, context.Background(), strings.NewReader(""), env, append([]string{"stats", "--json"}, tt.args...)...).want(t, exitOK).stdout
			var m map[string]any
			if err := json.Unmarshal([]byte(js), &m); err != nil {
				t.Fatal(err)
			}
			if _, ok := m["time"]; !ok {
				t.Error("no time")
			}
			delete(m, "time")
			got, _ := json.Marshal(m)
			var want map[string]any
			json.Unmarshal([]byte(tt.json), &want)
			wantJS, _ := json.Marshal(want)
			if string(got) != string(wantJS) {
				t.Errorf("stats --json\n got %s\nwant %s", got, wantJS)
			}
		})
	}
}

// TestStatsLocalSilent checks how the tier's line shows the time since
// Redis last proved delivery: flagged over a second and before the first
// proof, and not at all for a tier that is not tracked.
func TestStatsLocalSilent(t *testing.T) {
	tests := []struct {
		name        string
		tracked     bool
		silentNs    int64
		wantSilent  string // the end of the tier's line
		wantFlagged bool
		boundNs     int64 // the server's bound; 0: not said (the default, 1s)
	}{
		{"recent", true, 250_000_000, "silent 250ms", false, 0},
		{"at the limit", true, 1_000_000_000, "silent 1s", false, 0},
		{"over the limit", true, 3_217_000_000, "silent 3.22s (!) over 1s: no copy is served past the bound", true, 0},
		{"never", true, -1, "silent never (!) Redis has not proved delivery yet: no copy is served", true, 0},
		{"untracked", false, 0, "silent - (untracked: each copy is served up to the bound after its read)", false, 0},
		{"within a longer bound", true, 3_217_000_000, "silent 3.22s", false, 5_000_000_000},
		{"over a shorter bound", true, 250_000_000, "silent 250ms (!) over 100ms: no copy is served past the bound", true, 100_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := fmt.Sprintf(`{
				"total":  {"hits": 10, "local_hits": 9, "misses": 2},
				"routes": {"GET /a/{id}": {"hits": 10, "local_hits": 9, "misses": 2}},
				"recent": {"window_seconds": 60,
					"total":  {"hits": 4, "local_hits": 3, "misses": 1, "hit_ratio": 0.8},
					"routes": {"GET /a/{id}": {"hits": 4, "local_hits": 3, "misses": 1, "hit_ratio": 0.8}}},
				"local": {"enabled": true, "tracked": %t, "entries": 12, "bytes": 1536000, "max_bytes": 67108864,
					"hit_ratio": 0.9, "evictions": 5, "invalidations": 40, "resets": 2, "silent_ns": %d, "bound_ns": %d}}`, tt.tracked, tt.silentNs, tt.boundNs)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, answer)
			}))
			defer srv.Close()
			env := map[string]string{"READTHROUGH_ADMIN": srv.URL + "/admin/", "READTHROUGH_TOKEN": testToken}
			out := runCLI(t, context.Background(), strings.NewReader(""), env, "stats").want(t, exitOK).stdout
			if got := strings.Join(tableRow(t, squeeze(out), "GET /a/{id}")[:4], " "); got != "4 3 1 80.0%" {
				t.Errorf("row starts %q, want 4 3 1 80.0%%", got)
			}
			want := "local tier: entries 12, bytes 1.5 MiB / 64.0 MiB, hit ratio 90.0% (since start), evictions 5, invalidations 40, resets 2, " + tt.wantSilent + "\n"
			if !strings.HasSuffix(out, want) {
				t.Errorf("the table does not end with\n%s", want)
			}
			var table statsTable
			js := runCLI(t, context.Background(), strings.NewReader(""), env, "stats", "--json").want(t, exitOK).stdout
			if err := json.Unmarshal([]byte(js), &table); err != nil {
				t.Fatal(err)
			}
			if table.Local == nil || table.Local.SilentNs != tt.silentNs || table.Local.SilentFlagged != tt.wantFlagged {
				t.Errorf("stats --json local %+v, want silent_ns %d, flagged %v", table.Local, tt.silentNs, tt.wantFlagged)
			}
		})
	}
}
