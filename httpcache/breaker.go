package httpcache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
)

// breaker is the circuit breaker around the store. After threshold
// consecutive failures it opens: requests skip the store entirely, so an
// outage costs them no timeout. After cooldown it lets one probe through
// (half-open); the probe's success closes it, its failure opens it again.
type breaker struct {
	threshold int
	cooldown  time.Duration

	// closed mirrors state == breakerClosed && failures == 0, so the hit
	// path checks and records with one atomic load and no lock.
	healthy atomic.Bool

	mu       sync.Mutex
	state    breakerState
	failures int
	openedAt time.Time
	probing  bool
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	b := &breaker{threshold: threshold, cooldown: cooldown}
	b.healthy.Store(true)
	return b
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

// allow reports whether a request may use the store now. In the half-open
// state only one request at a time probes.
func (b *breaker) allow(now time.Time) bool {
	if b.threshold <= 0 || b.healthy.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return true
	case breakerOpen:
		if now.Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state = breakerHalfOpen
		b.probing = true
		return true
	default: // half-open
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

// record notes the outcome of a store call made after allow. It returns
// true when this call changed the breaker's state (for logging).
func (b *breaker) record(err error, now time.Time) (opened, closed bool) {
	if b.threshold <= 0 {
		return false, false
	}
	failed := storeFailure(err)
	if !failed && b.healthy.Load() {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !failed {
		b.failures = 0
		b.healthy.Store(true)
		if b.state != breakerClosed {
			b.state, b.probing = breakerClosed, false
			return false, true
		}
		return false, false
	}
	b.healthy.Store(false)
	b.failures++
	if b.state == breakerHalfOpen || (b.state == breakerClosed && b.failures >= b.threshold) {
		b.state, b.openedAt, b.probing = breakerOpen, now, false
		return true, false
	}
	return false, false
}

// storeFailure tells errors that say the store is unwell from answers.
func storeFailure(err error) bool {
	switch {
	case err == nil, errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrLockHeld),
		errors.Is(err, storage.ErrLockLost), errors.Is(err, storage.ErrPurged), errors.Is(err, storage.ErrRefused), errors.Is(err, storage.ErrBucketFull),
		errors.Is(err, envelope.ErrCorrupt), errors.Is(err, envelope.ErrVersion),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}
