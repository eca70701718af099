package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// statsAnswer is the admin's answer to stats. Recent and the origin_*
// counters are absent from servers that predate them, Local from servers
// without a local tier.
type statsAnswer struct {
	Total  counts            `json:"total"`
	Routes map[string]counts `json:"routes"`
	Recent *struct {
		WindowSeconds int64             `json:"window_seconds"`
		Total         counts            `json:"total"`
		Routes        map[string]counts `json:"routes"`
	} `json:"recent"`
	Local *localTier `json:"local"`
}

// hasLocal reports whether the server has a local tier.
func (a *statsAnswer) hasLocal() bool {
	return a.Local != nil && (a.Local.Enabled == nil || *a.Local.Enabled)
}

// localTier is the server's httpcache.LocalStats (the answer's "local"),
// and the "local" object of stats --json. Its counters run since the
// cache started, whatever the window.
type localTier struct {
	Enabled *bool `json:"enabled,omitempty"` // read, not shown
	// Tracked says the store reports its changes to the tier; false when
	// copies are bounded by their age only.
	Tracked bool `json:"tracked"`
	// Entries and Bytes are the copies held and the heap they take (the
	// server's estimate); MaxBytes is its bound.
	Entries  int64 `json:"entries"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// HitRatio is the share of the hits of Local routes that the tier
	// served, since the cache started.
	HitRatio      float64 `json:"hit_ratio"`
	Evictions     int64   `json:"evictions"`
	Invalidations int64   `json:"invalidations"`
	Resets        int64   `json:"resets"`
	// SilentNs is how long ago the store last proved it had reported
	// every change: -1 before the first proof, 0 when untracked.
	SilentNs int64 `json:"silent_ns"`
	// BoundNs is the tier's bound, past which silence stops it serving
	// copies; absent (0) from servers that predate it.
	BoundNs int64 `json:"bound_ns,omitempty"`
	// SilentFlagged is set here, not by the server: a tracked tier
	// silent for over its bound, or never proved.
	SilentFlagged bool `json:"silent_flagged"`
}

// defaultSilentLimit is the silence the summary flags when the server
// does not say its bound: the local tier's default bound.
const defaultSilentLimit = time.Second

// silentLimit is the tier's bound, past which it serves no copy.
func (l *localTier) silentLimit() time.Duration {
	if l.BoundNs > 0 {
		return time.Duration(l.BoundNs)
	}
	return defaultSilentLimit
}

// counts are the fields of httpcache.Stats (since the cache started) and
// of a recent window's deltas that the table shows.
type counts struct {
	Hits              int64    `json:"hits"`
	LocalHits         *int64   `json:"local_hits"`
	Misses            int64    `json:"misses"`
	StaleServed       int64    `json:"stale_served"`
	Collapsed         int64    `json:"collapsed"`
	Revalidations     int64    `json:"revalidations"`
	NotModified       int64    `json:"not_modified"`
	OriginTimeSavedNs *int64   `json:"origin_time_saved_ns"`
	HitRatio          *float64 `json:"hit_ratio"` // in a recent window only
}

// statsRow is one line of the table, and of stats --json.
type statsRow struct {
	Route string `json:"route,omitempty"`
	Hits  int64  `json:"hits"`
	// LocalHits are the hits and stale entries the local tier served;
	// absent when the server has no local tier (or does not count them).
	LocalHits   *int64 `json:"local_hits,omitempty"`
	Misses      int64  `json:"misses"`
	StaleServed int64  `json:"stale_served"`
	Collapsed   int64  `json:"collapsed"`
	// Revalidations are the origin calls made with the stored entry's
	// validators; NotModified those answered 304 (the body kept).
	Revalidations int64 `json:"revalidations"`
	NotModified   int64 `json:"not_modified"`
	// HitRatio is (hits+stale_served)/(hits+stale_served+misses), the
	// server's for a recent window (collapsed requests are misses too);
	// nil when there was no request.
	HitRatio *float64 `json:"hit_ratio"`
	// OriginTimeSavedNs is nil when the server does not count it.
	OriginTimeSavedNs *int64 `json:"origin_time_saved_ns"`
}

// statsTable is what stats shows once: the JSON object of stats --json.
type statsTable struct {
	Time time.Time `json:"time"`
	// Window is "recent" (the server's ring of the last WindowSeconds) or
	// "since_start" (counters since the cache started).
	Window string `json:"window"`
	// WindowSeconds is the time the recent window covers; absent since
	// start.
	WindowSeconds *int64     `json:"window_seconds,omitempty"`
	Routes        []statsRow `json:"routes"`
	Total         statsRow   `json:"total"`
	// Local is the server's local tier; absent without one.
	Local *localTier `json:"local,omitempty"`
}

// usageErr is a bad flag value found once the server answered (an
// unknown --route): exit code 2.
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

func runStats(ctx context.Context, e *env, g *globals, args []string) int {
	fs := newFlagSet("stats")
	var (
		route      string
		sinceStart bool
		watch      bool
		interval   time.Duration
	)
	fs.StringVar(&route, "route", "", "show only this route pattern")
	fs.BoolVar(&sinceStart, "since-start", false, "counters since the cache started rather than the recent window")
	fs.BoolVar(&watch, "watch", false, "redraw every --interval until interrupted")
	fs.DurationVar(&interval, "interval", 2*time.Second, "time between redraws with --watch")
	positional, code := parse(e, g, fs, args)
	if code >= 0 {
		return code
	}
	if len(positional) > 0 {
		return e.errorf(exitUsage, "stats takes no arguments, got %q (for one route: --route PATTERN)", positional)
	}
	if interval <= 0 {
		return e.errorf(exitUsage, "--interval must be positive, got %v", interval)
	}
	c, code := connect(e, g)
	if code >= 0 {
		return code
	}
	fetch := func() (*statsTable, error) {
		var answer statsAnswer
		if _, err := c.get(ctx, "stats", nil, &answer); err != nil {
			return nil, err
		}
		return buildTable(&answer, route, sinceStart)
	}
	if !watch {
		t, err := fetch()
		if err != nil {
			return statsFail(ctx, e, err)
		}
		return printTable(e, g, t)
	}
	return watchStats(ctx, e, g, interval, fetch)
}

func statsFail(ctx context.Context, e *env, err error) int {
	if ue, ok := err.(*usageErr); ok {
		return e.errorf(exitUsage, "%v", ue)
	}
	return fail(ctx, e, err)
}

// watchStats shows a table every interval until ctx ends (SIGINT), which
// is a success. On a terminal each table replaces the last; elsewhere
// tables follow each other, separated by a blank line. A first call that
// fails ends it with its exit code; later failures are reported and the
// watch goes on.
func watchStats(ctx context.Context, e *env, g *globals, interval time.Duration, fetch func() (*statsTable, error)) int {
	tty := !g.json && isTerminal(e.stdout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		if ctx.Err() != nil {
			return exitOK
		}
		t, err := fetch()
		switch {
		case ctx.Err() != nil:
			return exitOK
		case err != nil && n == 0:
			return statsFail(ctx, e, err)
		case err != nil:
			fmt.Fprint(e.stderr, clean(fmt.Sprintf("readthrough: %s: %v", time.Now().Format(time.TimeOnly), err))+"\n")
		default:
			if tty {
				io.WriteString(e.stdout, "\x1b[H\x1b[2J") //nolint:errcheck // nothing to do about a closed stdout
			} else if n > 0 && !g.json {
				fmt.Fprintln(e.stdout)
			}
			printTable(e, g, t)
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// buildTable picks the window (recent unless sinceStart or the server
// has none) and makes its rows, sorted by route.
func buildTable(a *statsAnswer, route string, sinceStart bool) (*statsTable, error) {
	t := &statsTable{Time: time.Now().UTC(), Window: "since_start", Routes: []statsRow{}}
	total, routes := a.Total, a.Routes
	if a.Recent != nil && !sinceStart {
		t.Window, t.WindowSeconds = "recent", &a.Recent.WindowSeconds
		total, routes = a.Recent.Total, a.Recent.Routes
	}
	patterns := make([]string, 0, len(routes))
	for p := range routes {
		patterns = append(patterns, p)
	}
	sort.Strings(patterns)
	if route != "" {
		if _, ok := routes[route]; !ok {
			return nil, &usageErr{fmt.Sprintf("--route: no route %q; the routes are %q", route, patterns)}
		}
		patterns = []string{route}
		total = routes[route]
	}
	local := a.hasLocal()
	for _, p := range patterns {
		t.Routes = append(t.Routes, row(p, routes[p], local))
	}
	t.Total = row("", total, local)
	if local {
		l := *a.Local
		l.Enabled = nil
		l.SilentFlagged = l.Tracked && (l.SilentNs < 0 || l.SilentNs > int64(l.silentLimit()))
		t.Local = &l
	}
	return t, nil
}

// row makes the row of c; with local, it has the local hits.
func row(pattern string, c counts, local bool) statsRow {
	r := statsRow{Route: pattern, Hits: c.Hits, Misses: c.Misses, StaleServed: c.StaleServed,
		Collapsed: c.Collapsed, Revalidations: c.Revalidations, NotModified: c.NotModified,
		OriginTimeSavedNs: c.OriginTimeSavedNs}
	if local {
		r.LocalHits = c.LocalHits
	}
	if served := c.Hits + c.StaleServed; served+c.Misses > 0 {
		ratio := float64(served) / float64(served+c.Misses) // as the server computes it
		if c.HitRatio != nil {
			ratio = *c.HitRatio // the server's, so the CLI and the admin page agree
		}
		r.HitRatio = &ratio
	}
	return r
}

// printTable prints t as a JSON line or a text table.
func printTable(e *env, g *globals, t *statsTable) int {
	if g.json {
		b, err := json.Marshal(t)
		if err != nil {
			return e.errorf(exitUnreachable, "encode: %v", err)
		}
		fmt.Fprintf(e.stdout, "%s\n", clean(string(b)))
		return exitOK
	}
	window := "since the cache started"
	if t.Window == "recent" {
		span := "<1s"
		if *t.WindowSeconds > 0 {
			span = (time.Duration(*t.WindowSeconds) * time.Second).String()
		}
		window = "last " + span + " (the server's recent window, as on the admin page)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "readthrough stats at %s, window: %s\n", t.Time.Format("2006-01-02 15:04:05 MST"), window)
	local := t.Local != nil
	header := []string{"ROUTE", "HITS", "MISSES", "HIT RATIO", "STALE", "COLLAPSED", "REVALIDATED", "ORIGIN SAVED"}
	if local {
		header = slices.Insert(header, 2, "LOCAL")
	}
	cells := [][]string{header}
	for _, r := range t.Routes {
		cells = append(cells, r.cells(r.Route, local))
	}
	cells = append(cells, t.Total.cells("TOTAL", local))
	writeTable(&b, cells)
	if local {
		b.WriteString(t.Local.summary() + "\n")
	}
	io.WriteString(e.stdout, b.String()) //nolint:errcheck // nothing to do about a closed stdout
	return exitOK
}

// cells are the table's cells of r; with local, the local hits follow
// the hits.
func (r statsRow) cells(name string, local bool) []string {
	ratio, saved := "-", "-"
	if r.HitRatio != nil {
		ratio = fmt.Sprintf("%.1f%%", *r.HitRatio*100)
	}
	if r.OriginTimeSavedNs != nil {
		saved = roundDuration(time.Duration(*r.OriginTimeSavedNs)).String()
	}
	c := []string{clean(name), fmt.Sprint(r.Hits), fmt.Sprint(r.Misses), ratio,
		fmt.Sprint(r.StaleServed), fmt.Sprint(r.Collapsed), fmt.Sprintf("%d/%d", r.NotModified, r.Revalidations), saved}
	if local {
		n := "-"
		if r.LocalHits != nil {
			n = fmt.Sprint(*r.LocalHits)
		}
		c = slices.Insert(c, 2, n)
	}
	return c
}

// summary is the line under the table about the local tier.
func (l *localTier) summary() string {
	silent := roundDuration(time.Duration(l.SilentNs)).String()
	switch {
	case !l.Tracked:
		silent = "- (untracked: each copy is served up to the bound after its read)"
	case l.SilentNs < 0:
		silent = "never (!) Redis has not proved delivery yet: no copy is served"
	case l.SilentFlagged:
		silent += fmt.Sprintf(" (!) over %v: no copy is served past the bound", l.silentLimit())
	}
	return fmt.Sprintf("local tier: entries %d, bytes %s / %s, hit ratio %.1f%% (since start), evictions %d, invalidations %d, resets %d, silent %s",
		l.Entries, fmtBytes(l.Bytes), fmtBytes(l.MaxBytes), l.HitRatio*100, l.Evictions, l.Invalidations, l.Resets, silent)
}

// fmtBytes writes n bytes in B, KiB, MiB or GiB.
func fmtBytes(n int64) string {
	const unit = 1 << 10
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 2 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, [...]string{"KiB", "MiB", "GiB"}[i])
}

// roundDuration keeps about three significant digits.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// writeTable prints cells as columns: the first left-aligned, the others
// right-aligned; the last row (the total) under a rule.
func writeTable(b *strings.Builder, cells [][]string) {
	widths := make([]int, len(cells[0]))
	for _, r := range cells {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) {
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == 0:
				b.WriteString(c + pad)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteByte('\n')
	}
	for i, r := range cells {
		if i == len(cells)-1 {
			total := 0
			for _, wd := range widths {
				total += wd + 2
			}
			b.WriteString(strings.Repeat("-", total-2) + "\n")
		}
		line(r)
	}
}
