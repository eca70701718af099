package httpcache

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// flights collapses concurrent misses for one key inside the process: the
// first request leads, the others wait for its result. Unlike
// golang.org/x/sync/singleflight, waiters bound their own wait and learn
// whether the result may be shared or the leader failed.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	res  flightResult
	// waiters counts the requests waiting for the flight now.
	waiters atomic.Int32
	// abandoned, when set, is called when the last waiter stops waiting
	// (see runOrigin): the origin may then be working for nobody.
	abandoned atomic.Pointer[func()]
}

type flightResult struct {
	outcome outcome
	entry   *storage.Entry // with outcomeShared; read-only
	// status is the Cache-Status waiters serve entry with; empty means
	// collapsed onto a fill.
	status string
	// header is the leading request's header: in standards mode a waiter
	// is served entry only if it matches on the headers entry varies on.
	header http.Header
}

// join returns the flight for key and whether the caller leads it.
func (fs *flights) join(key string) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		return f, false
	}
	if fs.m == nil {
		fs.m = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// finish ends the leader's flight with res and wakes its waiters.
func (fs *flights) finish(key string, f *flight, res flightResult) {
	fs.mu.Lock()
	if fs.m[key] == f {
		delete(fs.m, key)
	}
	fs.mu.Unlock()
	f.res = res
	close(f.done)
}

// forget makes the flights whose keys start with prefix (every flight,
// when prefix is empty) unjoinable: a purge calls it, so that a request
// that comes after the purge never collapses onto a fill that began
// before it, whose response may be older than the purge (the store
// refuses to keep it; see fence). Their leaders still finish them, for
// the requests already waiting.
func (fs *flights) forget(prefix string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for key := range fs.m {
		if strings.HasPrefix(key, prefix) {
			delete(fs.m, key)
		}
	}
}

// wait waits for the flight's result up to d or until ctx ends; ok is false
// when it did not finish in time.
func (f *flight) wait(ctx context.Context, d time.Duration) (flightResult, bool) {
	f.waiters.Add(1)
	defer func() {
		if f.waiters.Add(-1) == 0 {
			if fn := f.abandoned.Load(); fn != nil {
				(*fn)()
			}
		}
	}()
	select {
	case <-f.done:
		return f.res, true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
		return f.res, true
	case <-t.C:
	case <-ctx.Done():
	}
	return flightResult{}, false
}
