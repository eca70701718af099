// Command readthrough is the operators' tool for a service that runs the
// readthrough cache: it purges entries, inspects what a URL maps to,
// shows per-route statistics (once or live) and runs the store's health
// check. It talks to the service's admin API only (see
// [github.com/readthrough/readthrough/httpcache.Cache.AdminHandler]),
// never to Redis.
//
// Install it with
//
//	go install github.com/readthrough/readthrough/cmd/readthrough@latest
//
// Usage:
//
//	readthrough [global flags] <command> [flags] [arguments]
//
//	readthrough purge --route 'GET /users/{id}' --param id=15   one bucket
//	readthrough purge --url https://svc/users/15               the URL's bucket
//	readthrough purge --route 'GET /users/{id}' [--yes]        every bucket of a route
//	readthrough purge --tag user-15                            every bucket with a tag
//	readthrough purge --all [--yes]                            everything
//	readthrough inspect URL [--header Name:value ...]
//	readthrough stats [--route PATTERN] [--since-start] [--watch [--interval 2s]]
//	readthrough doctor
//
// Global flags, accepted before or after the command:
//
//	--addr URL         the admin API's base URL, e.g. http://127.0.0.1:9090/admin/
//	                   (default: $READTHROUGH_ADMIN)
//	--token TOKEN      the bearer token (default: $READTHROUGH_TOKEN); prefer
//	--token-file FILE  which reads it from a file (surrounding space trimmed)
//	--timeout D        bound on each call to the admin API (default 10s)
//	--json             machine output: one JSON object per answer, on one line
//
// Purging every bucket of a route, or everything, asks for confirmation
// on the terminal (type "yes"). Without a terminal on stdin it refuses
// unless --yes is given; it never waits on a stdin that is not a terminal.
//
// # Exit codes
//
// Scripts can rely on these:
//
//	0  success (for doctor: no finding is a warning or an error)
//	1  the admin API answered an error (4xx or 5xx, including a wrong
//	   token and doctor on a store without a health check); its reason is
//	   printed
//	2  usage error: unknown command or flag, bad flag value, no --addr
//	3  the admin API could not be reached (network error, timeout), or
//	   it answered success with something that is not its JSON (--addr
//	   points elsewhere)
//	4  doctor found a problem: at least one finding is "warn" or "error"
//	5  a purge that needs confirmation was refused or not confirmed
//	130 interrupted (SIGINT) before the answer came; stats --watch
//	   exits 0 on SIGINT instead, since that is how it ends
//
// Errors go to stderr, prefixed "readthrough: "; results go to stdout.
// With --json, stdout holds only JSON, one object per line: purge prints
// the admin's answer ({"scope","target","removed"}), inspect the admin's
// answer, doctor the health report (and still exits 4 on a problem), and
// stats one object per table (per interval with --watch); errors still go
// to stderr as text. A stats object is
//
//	{"time": "2026-12-05T22:53:55Z",
//	 "window": "recent",          // or "since_start"
//	 "window_seconds": 300,       // recent only
//	 "routes": [{"route": "GET /users/{id}", "hits": 2, "misses": 1,
//	             "stale_served": 0, "collapsed": 0, "hit_ratio": 0.667,
//	             "origin_time_saved_ns": 375000}],
//	 "total": {...the same fields but "route"}}
//
// where hit_ratio is (hits+stale_served)/(hits+stale_served+misses) (a
// collapsed request is a miss too),
// the server's own for the recent window, and null when there was no
// request; origin_time_saved_ns is null when the server does not count
// it.
//
// When the server has a local tier (httpcache.WithLocalTier), each row
// also has "local_hits": the hits and stale entries in its window that
// the tier served from process memory, counted in hits or stale_served
// too (absent from a window of a server that does not count them), and
// the object has "local", the tier's state since the cache started:
//
//	"local": {"tracked": true,          // false: copies bounded by age only
//	          "entries": 1200,          // copies held
//	          "bytes": 1310720,         // the heap they take (estimated)
//	          "max_bytes": 67108864,    // its bound
//	          "hit_ratio": 0.91,        // local hits / hits of Local routes
//	          "evictions": 0,           // copies dropped to stay within max_bytes
//	          "invalidations": 35,      // buckets Redis reported changed
//	          "resets": 1,              // reports of every bucket (flush, reconnection)
//	          "silent_ns": 120000000,   // since Redis last proved delivery (-1: never; 0: untracked)
//	          "bound_ns": 1000000000,   // the tier's bound (WithLocalBound)
//	          "silent_flagged": false}  // tracked and silent over the bound, or never
//
// The table then has a LOCAL column after HITS and, under it, a line with
// the same state; its "silent" carries "(!)" when silent_flagged is set:
// past its bound (bound_ns; 1s by default, and for servers that do not
// say it) the tier serves no copy. Without a local
// tier, neither "local_hits" nor "local" appears.
//
// # Windows
//
// stats shows the server's recent window (the last few minutes, the same
// numbers as the admin page) when the server keeps one, and the counters
// since the cache started otherwise or with --since-start; the table's
// header says which.
package main
