package httpcache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// Entries as the cache reads them from the store: decoded, held to the
// rules entries are stored by, opened by the route's codec, and judged
// fresh, stale or dead.

// entryPool recycles the entries fresh and stale hits decode into: their
// header map is reused by the next decode.
var entryPool = sync.Pool{New: func() any { return new(storage.Entry) }}

func putEntry(e *storage.Entry) {
	h := e.Header
	*e = storage.Entry{Header: h}
	entryPool.Put(e)
}

// load reads and decodes the entry of k for a request with header hdr
// (which resolves a vary marker, see resolveVary; nil: a marker is a
// miss). Undecodable entries are misses: they are deleted and reported,
// never served.
func (rt *route) load(ctx context.Context, k keying.Key, hdr http.Header) (*storage.Entry, error) {
	sctx, cancel := rt.cache.storeCtx(ctx)
	raw, err := rt.cache.store.Get(sctx, k.Bucket, k.Field)
	cancel()
	rt.cache.observe(err)
	k, raw, err = rt.resolveVary(ctx, k, raw, err, hdr)
	e := new(storage.Entry)
	switch err := rt.decodeInto(ctx, k, raw, err, e, time.Now()); {
	case errors.Is(err, errExpired):
		return e, err
	case err != nil:
		return nil, err
	}
	return e, nil
}

// loadForFill is load plus the bucket's purge generation, read in the same
// round trip when the store supports fencing. The miss path uses it right
// before running the origin.
func (rt *route) loadForFill(ctx context.Context, k keying.Key, hdr http.Header) (*storage.Entry, fence, error) {
	fr, ok := rt.cache.store.(storage.Fencer)
	if !ok {
		e, err := rt.load(ctx, k, hdr)
		return e, fence{}, err
	}
	sctx, cancel := rt.cache.storeCtx(ctx)
	raw, gen, err := fr.GetForFill(sctx, k.Bucket, k.Field)
	cancel()
	rt.cache.observe(err)
	var fc fence
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		fc = fence{generation: gen, ok: true}
	}
	k, raw, err = rt.resolveVary(ctx, k, raw, err, hdr)
	e := new(storage.Entry)
	switch err := rt.decodeInto(ctx, k, raw, err, e, time.Now()); {
	case errors.Is(err, errExpired):
		return e, fc, err
	case err != nil:
		return nil, fc, err
	}
	return e, fc, nil
}

// readFence reads only the bucket's purge generation, for a fill that did
// not read the store after its miss; stores that cannot fence cost nothing.
func (rt *route) readFence(ctx context.Context, k keying.Key) fence {
	if _, ok := rt.cache.store.(storage.Fencer); !ok {
		return fence{}
	}
	_, fc, _ := rt.loadForFill(ctx, k, nil)
	return fc
}

// decodeInto decodes a store read into e. A read error other than a miss
// is reported (unless the client went away); an undecodable entry is
// reported and deleted; a dead one is deleted: all three are misses. An
// entry of an envelope version this release does not know, or in a
// content coding it cannot decode, is a quiet miss and stays: a newer
// release wrote it and can still read it, and the fill replaces it.
func (rt *route) decodeInto(ctx context.Context, k keying.Key, raw []byte, err error, e *storage.Entry, now time.Time) error {
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) && ctx.Err() == nil {
			rt.reportError(ctx, "store get", err)
		}
		return err
	}
	switch err := envelope.Decode(raw, e); {
	case errors.Is(err, envelope.ErrVersion):
		return err
	case err != nil:
		rt.stats.add(cEntriesRejected, 1)
		rt.reportError(ctx, "decode entry", err)
		rt.dropField(ctx, k)
		return err
	}
	if err := rt.clampTimes(e, now); err != nil {
		rt.stats.add(cEntriesRejected, 1)
		rt.reportError(ctx, "decode entry", err)
		rt.dropField(ctx, k)
		return err
	}
	dead := freshness(e, now) == stateDead
	if dead && !revalidatable(e) {
		rt.dropField(ctx, k) // dead fields in a live bucket are removed when read
		return storage.ErrNotFound
	}
	switch err := rt.codec.Open(ctx, e); {
	case err == nil && dead:
		// Never served, but its validators let the fill ask the origin
		// whether it changed (RFC 9111 section 4.3).
		return errExpired
	case err == nil:
		return nil
	case errors.Is(err, codec.ErrUnknownDictionary):
		rt.stats.add(cDictMisses, 1)
		return err
	case errors.Is(err, codec.ErrUnavailable):
		// Written by another writer (a newer release, say) in a form this
		// one cannot open: a miss, never sent as it is. It is left for
		// the fill to replace, since its writer can still read it.
		return err
	default:
		rt.reportError(ctx, "decode entry", err)
		rt.dropField(ctx, k)
		return err
	}
}

func (rt *route) dropField(ctx context.Context, k keying.Key) {
	sctx, cancel := rt.cache.storeCtx(ctx)
	err := rt.cache.store.Delete(sctx, k.Bucket, k.Field)
	cancel()
	if rt.local != nil {
		rt.local.changed([]string{k.Bucket}, false)
	}
	rt.cache.observe(err)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		rt.reportError(ctx, "store delete", err)
	}
}

// clampTimes holds a decoded entry's times to the route's rules: the store
// is not trusted with time either. No window outlasts the route's MaxTTL,
// no origin time its FillTimeout, and a stored time in the future is now
// when it is within the clock skew between instances, and an error
// matching [envelope.ErrCorrupt] past it (clamped at every read, such an
// entry would never age).
func (rt *route) clampTimes(e *storage.Entry, now time.Time) error {
	if e.Stored.After(now) {
		if ahead := e.Stored.Sub(now); ahead > maxClockSkew {
			return fmt.Errorf("%w: stored %v in the future", envelope.ErrCorrupt, ahead)
		}
		e.Stored = now
	}
	e.Fresh = min(e.Fresh, rt.policy.MaxTTL)
	e.StaleWhileRevalidate = min(e.StaleWhileRevalidate, rt.policy.MaxTTL)
	e.StaleIfError = min(e.StaleIfError, rt.policy.MaxTTL)
	// XFetch refreshes earlier the longer the origin took: no origin call
	// of this route outlasts its fill timeout.
	e.OriginTime = min(max(e.OriginTime, 0), rt.policy.FillTimeout)
	return nil
}

// drainInterval is the shortest time between two samplings of a route's
// full buckets (see drain).
const drainInterval = 100 * time.Millisecond

// drainSample is how many fields one sampling of a full bucket reads.
const drainSample = 16

// drain deletes dead fields of bucket, which refused a new variant
// because it is full: fields are only deleted when read, and junk
// variants nobody reads again would keep the bucket full for as long as
// its live variants keep it alive. It samples drainSample fields at
// random, as Redis samples keys to expire them, at most once per
// drainInterval per route, and reports whether it deleted any.
func (rt *route) drain(ctx context.Context, bucket string) bool {
	sm, ok := rt.cache.store.(storage.Sampler)
	if !ok {
		return false
	}
	now := time.Now()
	last := rt.lastDrain.Load()
	if now.UnixNano()-last < int64(drainInterval) || !rt.lastDrain.CompareAndSwap(last, now.UnixNano()) {
		return false
	}
	sctx, cancel := rt.cache.storeCtx(ctx)
	fields, err := sm.SampleFields(sctx, bucket, drainSample)
	cancel()
	rt.cache.observe(err)
	if err != nil {
		rt.reportError(ctx, "sample full bucket", err)
		return false
	}
	deleted := false
	var e storage.Entry
	for field, raw := range fields {
		err := envelope.Decode(raw, &e)
		if errors.Is(err, envelope.ErrVersion) {
			continue // a newer release's: it judges it
		}
		if err == nil {
			err = rt.clampTimes(&e, now)
		}
		if err == nil && freshness(&e, now) != stateDead {
			continue
		}
		rt.dropField(ctx, keying.Key{Bucket: bucket, Field: field})
		deleted = true
	}
	return deleted
}

// errExpired is an entry past every window of its lifetime that is kept
// for its validators: a miss, whose fill revalidates it.
var errExpired = fmt.Errorf("%w: expired, kept for its validators", storage.ErrNotFound)

// revalidatable reports whether the origin can be asked whether e changed
// (RFC 9111 section 4.3.1): a 200 with an ETag or a Last-Modified.
func revalidatable(e *storage.Entry) bool {
	return e != nil && e.Status == http.StatusOK && (headerValue(e.Header, "Etag") != "" || headerValue(e.Header, "Last-Modified") != "")
}

// maxClockSkew is how far in the future an entry's stored time may be:
// the clocks of the instances sharing a store differ by that much at most.
const maxClockSkew = time.Minute

type entryState int

const (
	stateFresh     entryState = iota
	stateStale                // past fresh, inside stale-while-revalidate
	stateErrorOnly            // past stale-while-revalidate, inside stale-if-error
	stateDead
)

func freshness(e *storage.Entry, now time.Time) entryState {
	age := now.Sub(e.Stored)
	switch {
	case age < e.Fresh:
		return stateFresh
	case age < e.Fresh+e.StaleWhileRevalidate:
		return stateStale
	case age < e.Fresh+e.StaleIfError:
		return stateErrorOnly
	}
	return stateDead
}

// usableOnError reports whether e may be served because the origin failed.
func usableOnError(e *storage.Entry, now time.Time) bool {
	return e != nil && now.Sub(e.Stored) < e.Fresh+e.StaleIfError
}
