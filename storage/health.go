package storage

import (
	"context"
	"time"
)

// HealthChecker checks how the backend of a store is set up for a cache
// and says what to change: the "doctor" that operators run at start-up
// and on demand (the admin API's GET .../doctor, the command-line tool).
//
// HealthChecker is optional. A cache that finds it runs it once in the
// background at start-up and logs the findings; without it the cache
// answers that its store cannot be checked.
//
// CheckHealth returns an error only when it learnt nothing about the
// backend (it could not reach it at all, or ctx ended before the first
// answer). A check that could not run while others did (a command the
// backend refuses, a node of several that did not answer) is a [Finding]
// of its own, not an error. CheckHealth must be bounded: it returns by
// the time ctx ends, never walks everything the backend holds (sizes are
// sampled), leaves the backend as it found it (no setting changed, no
// client mode left on) and is safe to call concurrently with the store's
// other methods. It may be slow by a cache's standards (tens of
// round trips), so a cache never calls it on a request's path.
type HealthChecker interface {
	CheckHealth(ctx context.Context) (HealthReport, error)
}

// HealthReport is what [HealthChecker.CheckHealth] found. Its JSON form is
// the admin API's answer to GET .../doctor:
//
//	{"store": "redis", "version": "7.0.15", "mode": "single",
//	 "round_trip_ns": 210000,
//	 "findings": [{"check": "maxmemory-policy", "level": "warn",
//	               "message": "...", "fix": "..."}]}
type HealthReport struct {
	// Store names the kind of store: "redis", "memory".
	Store string `json:"store"`
	// Version is the backend's version ("7.0.15"), "" when it has none
	// or it could not be read.
	Version string `json:"version"`
	// Mode is how the backend is deployed: for Redis "single",
	// "sentinel" or "cluster"; for the in-process store "process".
	Mode string `json:"mode"`
	// RoundTrip is the median time of a few round trips to the backend
	// (0 for a store without one): about what a cache hit pays for the
	// store.
	RoundTrip time.Duration `json:"round_trip_ns"`
	// Findings are the results of the checks, in a stable order, never
	// nil (an empty list in JSON).
	Findings []Finding `json:"findings"`
}

// Finding is the result of one check of a [HealthReport].
type Finding struct {
	// Check is the check's stable id, such as "maxmemory-policy", for
	// scripts and alerts to match on.
	Check string `json:"check"`
	// Level is one of [LevelOK], [LevelInfo], [LevelWarn] and
	// [LevelError].
	Level string `json:"level"`
	// Message says what was found, naming the value found.
	Message string `json:"message"`
	// Fix says what to do about it; "" when nothing needs doing.
	Fix string `json:"fix"`
}

// Levels of a [Finding], from the least to the most severe.
const (
	// LevelOK: the setting suits the cache.
	LevelOK = "ok"
	// LevelInfo: worth knowing, nothing is wrong (a cost, an optional
	// capability, a check that could not be made).
	LevelInfo = "info"
	// LevelWarn: the cache works, but worse than it could (memory wasted,
	// latency added) or fails in some conditions (writes refused when
	// the backend is full).
	LevelWarn = "warn"
	// LevelError: the cache is failing or about to (writes refused now,
	// requests timing out, a node down).
	LevelError = "error"
)

// levelRank orders the levels; unknown ones rank as [LevelInfo].
func levelRank(level string) int {
	switch level {
	case LevelOK:
		return 0
	case LevelWarn:
		return 2
	case LevelError:
		return 3
	}
	return 1
}

// Worst returns the most severe level of r's findings, [LevelOK] when it
// has none: what a script or a start-up log summarizes the report by.
func (r HealthReport) Worst() string {
	worst := LevelOK
	for _, f := range r.Findings {
		if levelRank(f.Level) > levelRank(worst) {
			worst = f.Level
		}
	}
	return worst
}
