package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage"
)

// Fill notification payload, published on "<prefix>:fill":
//
//	byte 0       version, 1
//	byte 1       flags: bit 0 set when the fill stored an entry, bit 1 set
//	             when the filler failed (waiters should take over)
//	uvarint      length of the bucket in bytes
//	bucket       the bucket
//	field        the field: every remaining byte
//
// The length prefix keeps (bucket, field) pairs unambiguous although fields
// are arbitrary bytes.
const (
	fillVersion = 1
	fillStored  = 1 << 0
	fillFailed  = 1 << 1
)

func encodeFill(bucket, field string, f storage.Fill) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(bucket)+len(field))
	var flags byte
	if f.Stored {
		flags |= fillStored
	}
	if f.Failed {
		flags |= fillFailed
	}
	b = append(b, fillVersion, flags)
	b = binary.AppendUvarint(b, uint64(len(bucket)))
	b = append(b, bucket...)
	return append(b, field...)
}

func decodeFill(p string) (bucket, field string, f storage.Fill, ok bool) {
	if len(p) < 3 || p[0] != fillVersion {
		return "", "", f, false
	}
	f.Stored = p[1]&fillStored != 0
	f.Failed = p[1]&fillFailed != 0
	n, w := binary.Uvarint([]byte(p[2:min(len(p), 2+binary.MaxVarintLen64)]))
	if w <= 0 || n > uint64(len(p)-2-w) {
		return "", "", f, false
	}
	rest := p[2+w:]
	return rest[:n], rest[n:], f, true
}

// Publish implements [storage.Locker.Publish] with one PUBLISH (SPUBLISH
// on a cluster) on the store's fill channel, "<prefix>:fill". A
// notification published while a process's subscription is down or being
// reopened is lost for that process's watchers.
func (s *Store) Publish(ctx context.Context, bucket, field string, f storage.Fill) error {
	payload := encodeFill(bucket, field, f)
	var err error
	if s.sub.sharded {
		err = s.rdb.SPublish(ctx, s.sub.channel, payload).Err()
	} else {
		err = s.rdb.Publish(ctx, s.sub.channel, payload).Err()
	}
	if err != nil {
		return fmt.Errorf("redisstore: publish fill: %w", err)
	}
	return nil
}

// Watch implements [storage.Locker.Watch] on the store's one pub/sub
// subscription, which the first Watch opens. Watch returns at once, with
// a nil error, while Redis has confirmed the subscription. While it is
// being opened or reopened, Watch waits for the confirmation up to the
// bound set by [WithWatchBound] or until ctx ends, whichever comes first;
// while it is down (Redis unreachable, the store backing off before the
// next attempt) and after [Store.Close], Watch does not wait. In those
// cases the error matches [storage.ErrWatchUnconfirmed], and the watcher
// stays registered: a notification published once the subscription is
// confirmed is delivered.
func (s *Store) Watch(ctx context.Context, bucket, field string) (<-chan storage.Fill, func(), error) {
	return s.sub.watch(ctx, bucket, field)
}

type fillKey struct{ bucket, field string }

type waiter struct{ ch chan storage.Fill }

type subState int

const (
	stateConnecting subState = iota // subscribing, confirmation pending
	stateUp                         // confirmed by Redis
	stateDown                       // the last attempt failed; backing off
)

// subscriber is the store's one pub/sub subscription and the goroutine that
// dispatches its messages to the registered waiters.
type subscriber struct {
	client  rediser
	channel string
	// sharded uses sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7): on a
	// cluster the channel lives on the master that owns its slot, so
	// notifications neither cross the cluster bus to every node nor arrive
	// out of order through different nodes.
	sharded     bool
	watchBound  time.Duration
	healthEvery time.Duration

	mu      sync.Mutex
	waiters map[fillKey]map[*waiter]struct{}
	started bool
	closed  bool
	ps      *redis.PubSub
	state   subState
	// changed is closed and replaced on every change of state.
	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

func newSubscriber(client rediser, channel string, watchBound, healthEvery time.Duration) *subscriber {
	return &subscriber{
		client:      client,
		channel:     channel,
		watchBound:  watchBound,
		healthEvery: healthEvery,
		waiters:     make(map[fillKey]map[*waiter]struct{}),
		changed:     make(chan struct{}),
		done:        make(chan struct{}),
	}
}

func (s *subscriber) watch(ctx context.Context, bucket, field string) (<-chan storage.Fill, func(), error) {
	w := &waiter{ch: make(chan storage.Fill, 1)}
	k := fillKey{bucket, field}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return w.ch, func() {}, errWatchClosed
	}
	set := s.waiters[k]
	if set == nil {
		set = make(map[*waiter]struct{})
		s.waiters[k] = set
	}
	set[w] = struct{}{}
	if !s.started {
		s.started = true
		s.wg.Add(1)
		go s.run()
	}
	s.mu.Unlock()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if set := s.waiters[k]; set != nil {
				delete(set, w)
				if len(set) == 0 {
					delete(s.waiters, k)
				}
			}
		})
	}
	return w.ch, stop, s.awaitConfirmation(ctx)
}

// errWatchClosed is the error of a Watch on a closed store.
var errWatchClosed = fmt.Errorf("redisstore: watch: store closed: %w", storage.ErrWatchUnconfirmed)

// awaitConfirmation waits while the subscription is being opened: until
// Redis confirms it, the attempt fails, the watch bound passes, ctx ends or
// the subscriber is closed. It returns nil when the subscription is
// confirmed, and an error matching storage.ErrWatchUnconfirmed otherwise
// (and ctx.Err() when ctx ended).
func (s *subscriber) awaitConfirmation(ctx context.Context) error {
	var t *time.Timer
	for {
		s.mu.Lock()
		state, changed, closed := s.state, s.changed, s.closed
		s.mu.Unlock()
		switch {
		case closed:
			return errWatchClosed
		case state == stateUp:
			return nil
		case state == stateDown:
			return fmt.Errorf("redisstore: watch: subscription down: %w", storage.ErrWatchUnconfirmed)
		}
		if t == nil {
			t = time.NewTimer(s.watchBound)
			defer t.Stop()
		}
		select {
		case <-changed:
		case <-t.C:
			return fmt.Errorf("redisstore: watch: subscription not confirmed within %v: %w", s.watchBound, storage.ErrWatchUnconfirmed)
		case <-ctx.Done():
			return fmt.Errorf("redisstore: watch: subscription not confirmed: %w: %w", storage.ErrWatchUnconfirmed, ctx.Err())
		case <-s.done:
			return errWatchClosed
		}
	}
}

// setState records the subscription's state and wakes those waiting for a
// change. The caller holds s.mu.
func (s *subscriber) setState(st subState) {
	if st == s.state {
		return
	}
	s.state = st
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *subscriber) setStateLocked(st subState) {
	s.mu.Lock()
	s.setState(st)
	s.mu.Unlock()
}

// subscribe opens a new PubSub and makes it current, or returns nil when
// the subscriber is closed. go-redis sends SUBSCRIBE here; the confirmation
// arrives through Receive.
func (s *subscriber) subscribe(ctx context.Context) *redis.PubSub {
	var ps *redis.PubSub
	if s.sharded {
		ps = s.client.SSubscribe(ctx, s.channel)
	} else {
		ps = s.client.Subscribe(ctx, s.channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ps.Close()
		return nil
	}
	s.ps = ps
	s.setState(stateConnecting)
	return ps
}

// run reads the subscription until the subscriber is closed.
func (s *subscriber) run() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.done
		cancel()
	}()

	ps := s.subscribe(ctx)
	if ps == nil {
		return
	}
	const (
		minBackoff = 50 * time.Millisecond
		maxBackoff = 2 * time.Second
	)
	backoff := minBackoff
	failures := 0 // attempts since the last confirmation
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.healthEvery)
		if s.isClosed() {
			return
		}
		if err == nil {
			pinged = false
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Channel != s.channel {
					continue
				}
				if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
					failures = 0
					backoff = minBackoff
					s.setStateLocked(stateUp)
					continue
				}
				// Unsubscribed by the server: on a cluster, Redis sends
				// sunsubscribe when the channel's slot moves to another
				// master, and go-redis does not resubscribe. Start over
				// on a new subscription, which goes to the new owner.
				_ = ps.Close()
				s.setStateLocked(stateConnecting)
				if ps = s.subscribe(ctx); ps == nil {
					return
				}
			case *redis.Message:
				s.dispatch(m.Payload)
			}
			continue
		}
		if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() && !pinged {
			// Quiet for a while: check that the connection is alive.
			pinged = true
			if ps.Ping(ctx) == nil {
				continue
			}
		}
		// The connection failed, or did not answer a ping. Start over
		// on a new one; after a failed retry, back off so that a dead
		// server does not make this loop spin.
		pinged = false
		_ = ps.Close()
		failures++
		if failures > 1 {
			s.setStateLocked(stateDown)
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
		if ps = s.subscribe(ctx); ps == nil {
			return
		}
	}
}

func (s *subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// dispatch hands a notification to every waiter of its key and unregisters
// them, so that each waiter receives exactly one.
func (s *subscriber) dispatch(payload string) {
	bucket, field, f, ok := decodeFill(payload)
	if !ok {
		return
	}
	k := fillKey{bucket, field}
	s.mu.Lock()
	set := s.waiters[k]
	delete(s.waiters, k)
	s.mu.Unlock()
	for w := range set {
		// Removed from the map under the lock, so this is the only
		// send on a one-slot buffer: it never blocks.
		w.ch <- f
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	ps := s.ps
	s.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	s.wg.Wait()
}
