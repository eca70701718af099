package httpcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// ErrCannotCheck is returned by [Cache.CheckHealth] when the cache's store
// does not implement [storage.HealthChecker].
var ErrCannotCheck = errors.New("httpcache: the store has no health check")

// DefaultHealthCheckTimeout bounds the health check that [New] starts in
// the background, and each one the admin API's doctor endpoint runs.
const DefaultHealthCheckTimeout = 10 * time.Second

// CheckHealth runs the store's health check ([storage.HealthChecker]):
// how its backend is set up for the cache (for Redis: version, mode,
// memory limit and policy, hash encoding limits against the cache's entry
// sizes, persistence, round trip, the key prefix's size, optional
// capabilities), each finding with what to do about it. It is what the
// admin API's doctor endpoint answers. It returns an error matching
// [ErrCannotCheck] when the store has no health check, and the store's
// error when the check learnt nothing (the backend is unreachable). The
// check makes tens of round trips: never call it on a request's path.
func (c *Cache) CheckHealth(ctx context.Context) (storage.HealthReport, error) {
	hc, ok := c.store.(storage.HealthChecker)
	if !ok {
		return storage.HealthReport{}, fmt.Errorf("%w (%T)", ErrCannotCheck, c.store)
	}
	rep, err := hc.CheckHealth(ctx)
	if err != nil {
		return rep, fmt.Errorf("httpcache: check health: %w", err)
	}
	return rep, nil
}

// healthRun is the health check New started in the background.
type healthRun struct {
	cancel context.CancelFunc
}

// startHealthCheck runs the store's health check once in the background,
// bounded by DefaultHealthCheckTimeout, and logs its findings; Close
// stops it. It does nothing when the store has no health check or
// WithoutStartupHealthCheck was given.
func (c *Cache) startHealthCheck() {
	if c.healthOff {
		return
	}
	if _, ok := c.store.(storage.HealthChecker); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultHealthCheckTimeout)
	run := &healthRun{cancel: cancel}
	c.health = run
	go func() {
		defer cancel()
		defer c.recoverTask("start-up health check")
		rep, err := c.CheckHealth(ctx)
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return // stopped by Close
			}
			c.log.Warn("readthrough: store health check failed", "err", err)
			return
		}
		c.logHealth(ctx, rep)
	}()
}

// stopHealthCheck cancels the start-up health check without waiting for
// it: a Redis command of it already sent notices the cancellation only at
// its own deadline (up to a second; go-redis does not interrupt a read),
// after which the check returns, logging nothing. It only reads, so
// nothing is left half done.
func (c *Cache) stopHealthCheck() {
	if c.health != nil {
		c.health.cancel()
	}
}

// logHealth logs a report: one summary line at the level of its worst
// finding, then one line per finding, warnings and errors at their
// level, the others at Info, the finding's own level in "severity" (the
// log's "level" is taken).
func (c *Cache) logHealth(ctx context.Context, rep storage.HealthReport) {
	worst := rep.Worst()
	c.log.LogAttrs(ctx, slogLevel(worst), "readthrough: store health check",
		slog.String("store", rep.Store), slog.String("version", rep.Version), slog.String("mode", rep.Mode),
		slog.Duration("round_trip", rep.RoundTrip), slog.String("worst", worst), slog.Int("findings", len(rep.Findings)))
	for _, f := range rep.Findings {
		attrs := []slog.Attr{slog.String("check", f.Check), slog.String("severity", f.Level), slog.String("message", f.Message)}
		if f.Fix != "" {
			attrs = append(attrs, slog.String("fix", f.Fix))
		}
		c.log.LogAttrs(ctx, slogLevel(f.Level), "readthrough: store health: "+f.Check, attrs...)
	}
}

// slogLevel maps a finding's level to a log level.
func slogLevel(level string) slog.Level {
	switch level {
	case storage.LevelWarn:
		return slog.LevelWarn
	case storage.LevelError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// doctor answers GET .../doctor of the admin API: the store's health
// report, 501 when the store has no health check, 502 when it failed.
// Concurrent calls share one check, and a report is reused for
// doctorReuse after it finished: a check runs tens of Redis commands, and
// operators press "Run the check" when Redis is already slow. HEAD says
// whether there is a check without running one.
func (a *admin) doctor(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		if _, ok := a.cache.store.(storage.HealthChecker); !ok {
			writeJSON(w, http.StatusNotImplemented, map[string]string{"error": ErrCannotCheck.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		return
	}
	rep, err := a.checks.get(r.Context(), a.cache)
	switch {
	case errors.Is(err, ErrCannotCheck):
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

// doctorReuse is how long the admin API answers with the last report
// rather than run the check again.
const doctorReuse = 2 * time.Second

// sharedChecks runs one health check at a time for every caller of the
// admin API's doctor endpoint.
type sharedChecks struct {
	mu  sync.Mutex
	run *checkRun
}

// checkRun is one health check; rep, err and at are set before done is
// closed.
type checkRun struct {
	done chan struct{}
	rep  storage.HealthReport
	err  error
	at   time.Time // when it finished
}

// get returns the report of the check in flight, of one that finished
// less than doctorReuse ago, or of a new one. The check is bounded by
// DefaultHealthCheckTimeout and not by ctx, which only bounds this
// caller's wait: another caller may be waiting for the same check.
func (sc *sharedChecks) get(ctx context.Context, c *Cache) (storage.HealthReport, error) {
	sc.mu.Lock()
	run := sc.run
	if run == nil || run.stale(time.Now()) {
		run = &checkRun{done: make(chan struct{})}
		sc.run = run
		go func() {
			cctx, cancel := context.WithTimeout(context.Background(), DefaultHealthCheckTimeout)
			defer cancel()
			run.rep, run.err = c.CheckHealth(cctx)
			run.at = time.Now()
			close(run.done)
		}()
	}
	sc.mu.Unlock()
	select {
	case <-run.done:
		return run.rep, run.err
	case <-ctx.Done():
		return storage.HealthReport{}, ctx.Err()
	}
}

// stale reports whether the run finished more than doctorReuse before
// now; a run in flight is never stale.
func (run *checkRun) stale(now time.Time) bool {
	select {
	case <-run.done:
		return now.Sub(run.at) > doctorReuse
	default:
		return false
	}
}
