package storage

import (
	"context"
	"errors"
	"time"
)

// Tracker reports changes to buckets, made by anyone through any client
// of the backend, so that a cache can keep copies of entries in process
// memory (its local tier) and drop a copy as soon as the bucket it came
// from changes: a Set, a Delete, a purge, an expiry or an eviction in the
// backend, a flush of the whole backend.
//
// Tracker is optional. A cache asked for a coherent local tier refuses to
// start over a store without it (or over one whose Track fails), unless
// its user accepted copies that are only bounded in time.
//
// The Redis store implements it with server-assisted client-side caching:
// CLIENT TRACKING in broadcast mode on the prefix of its bucket keys,
// redirected to a pub/sub connection per node.
type Tracker interface {
	// Track starts reporting changes to fn, and returns once reports are
	// flowing: after the backend confirmed the tracking (on every node of
	// a deployment of several), and after the first report, which has
	// All set, was delivered. It returns an error matching
	// [ErrNoTracking] when the backend cannot track changes (a Redis
	// before 6, a server that refuses CLIENT TRACKING), and the
	// backend's error, or ctx's, when it could not tell by the time ctx
	// ended; ctx bounds only the start.
	//
	// fn is called from one goroutine at a time, in order, and must not
	// block for long: reports queue behind it. Every interval, the store
	// asks each node for a proof of delivery (a PING on the connection
	// the changes arrive on), and reports its answer as
	// [Changes.Through]. When tracking breaks (a connection drops, a
	// node goes away or fails over, a node is added), the store
	// reconnects on its own, and reports All once it is tracking again;
	// while it is broken, Through stops advancing.
	//
	// stop ends the reports: once it returned, fn is not called again.
	// It may be called any number of times, but not from fn (it waits
	// for a call of fn in progress).
	//
	// An interval that is not positive and a nil fn are errors.
	Track(ctx context.Context, interval time.Duration, fn func(Changes)) (stop func(), err error)
}

// Changes is one report of a [Tracker].
type Changes struct {
	// Buckets lists buckets that changed: each had a field written or
	// deleted, was purged, expired or was evicted, since the report
	// that last listed it. A bucket may be listed when nothing changed
	// (the tracking may be coarser than fields), never missed when
	// something did. A copy of an entry of a listed bucket read from
	// the backend before this report (by a read that started before it
	// was delivered, even if the copy was kept after) must not be
	// served again.
	Buckets []string

	// All says that any bucket may have changed: the backend was
	// flushed, or the store (re)started tracking and may have missed
	// changes before. A copy of any entry read from the backend before
	// this report (by a read that started before it was delivered, even
	// if the copy was kept after) must not be served again.
	All bool

	// Through, when not zero, is a proof of delivery: every change the
	// backend made before Through (on every node), on this process's
	// clock, is in this report or an earlier one. An expiry or eviction
	// counts as made when the backend drops the key, which for expiry
	// may be later than the key's deadline (Redis and memstore notice
	// it lazily); a cache bounds a copy by its entry's own lifetime
	// anyway. It only grows. A cache serves a local copy only
	// while Through is recent: when reports stop (the connection is
	// down, the node is partitioned away), nothing proves that a copy
	// is still current.
	Through time.Time
}

// ErrNoTracking is returned by [Tracker.Track] when the backend cannot
// report changes.
var ErrNoTracking = errors.New("storage: backend cannot track changes")
