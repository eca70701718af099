package main

import (
	"context"
	"encoding/json"
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
