package httpcache

import (
	"context"
	"sync/atomic"
	"time"
)

// coarseDeadline hands out contexts whose deadline is between 0.9 and 1
// times timeout away, sharing one context among all the calls made within a
// tenth of timeout. The hit path uses it: a context.WithTimeout per hit
// costs a timer and several allocations, which at one Redis round trip per
// hit is a measurable share of the work.
//
// The shared context is not derived from the request's, so a client that
// goes away does not cancel the (bounded) read, and context values such as
// trace spans do not reach the store on the hit path.
type coarseDeadline struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // unused: the context ends at its deadline
	made   time.Time
}

func (d *coarseDeadline) context(_ context.Context, now time.Time) context.Context {
	if c := d.cur.Load(); c != nil && now.Sub(c.made) < d.timeout/10 && !now.Before(c.made) {
		return c.ctx
	}
	// The context cancels itself at its deadline, releasing its timer; it
	// must not be cancelled earlier, since calls may still be using it
	// after it is replaced.
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, made: now})
	return ctx
}
