package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/readthrough/readthrough/storage"
)

// invalidateChannel is the channel on which Redis sends the invalidation
// messages of a RESP2 connection in tracking mode.
const invalidateChannel = "__redis__:invalidate"

// Bounds of the tracking connections' timing.
const (
	// trackMinBackoff and trackMaxBackoff bound the pause between two
	// attempts to reconnect a node that keeps failing.
	trackMinBackoff = 20 * time.Millisecond
	trackMaxBackoff = time.Second
	// trackMinDeadAfter is the shortest a node may leave a PING
	// unanswered, or take to confirm a new subscription, before its
	// connection is dropped and made again; it is four intervals when
	// that is longer.
	trackMinDeadAfter = 2 * time.Second
	// trackMinRelist is the shortest period at which a cluster's masters
	// (a ring's shards) are listed again, and at which a Sentinel
	// client's tracking connection is checked to be on the master.
	trackMinRelist = time.Second
)

// Track implements [storage.Tracker] with Redis server-assisted client-side
// caching in broadcast mode: on each node that holds buckets (the server,
// every master of a cluster, every live shard of a ring) a connection of
// its own, speaking RESP2 and named "<prefix>:tracker:<8 hex digits>",
// runs CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX
// "<prefix>:b:{" and SUBSCRIBE __redis__:invalidate. The package
// documentation, "Local copies and tracking", says how the reports and
// Through are made, and what it costs Redis.
//
// Every interval each node is sent a PING; a node that leaves one
// unanswered for four intervals (at least two seconds) is reconnected. A
// connection that fails is made again at once, then with a backoff of up
// to one second. A cluster's masters (a ring's shards) are listed again
// every interval, at least every second. ctx bounds only the start; Track
// returns an error matching ctx's, wrapping the last error of a node,
// when a node is not tracking by the time ctx ends.
//
// Reports are delivered by one goroutine. While fn runs, the changes that
// arrive are merged into the next report (each bucket once, All, the
// latest Through), so none is lost. stop waits for a call of fn in
// progress: fn must call neither stop nor [Store.Close], which stops
// every tracker of the store.
//
// Track returns an error matching [storage.ErrNoTracking] when a node
// answers CLIENT ID or CLIENT TRACKING with an ERR or NOPERM error
// (miniredis, a Redis before 6, a user without the permission), and for
// a client that is none of *redis.Client, *redis.ClusterClient and
// *redis.Ring, or one that reads from replicas (a cluster client with
// ReadOnly, RouteByLatency or RouteRandomly, a client connected to a
// replica): a lagging replica may be read after the report of a change it
// has not applied yet. It refuses a client with go-redis's own
// client-side cache (ClientSideCacheConfig or ClientSideCache), whose
// cached reads the reports would not cover, and an interval that is not
// positive.
func (s *Store) Track(ctx context.Context, interval time.Duration, fn func(storage.Changes)) (stop func(), err error) {
	if interval <= 0 {
		return nil, fmt.Errorf("redisstore: track: interval %v is not positive", interval)
	}
	if fn == nil {
		return nil, errors.New("redisstore: track: nil func")
	}
	t, err := s.newTracker(interval, fn)
	if err != nil {
		return nil, err
	}
	if c, ok := s.rdb.(*redis.Client); ok {
		if err := checkMasterRole(ctx, c); err != nil {
			return nil, err
		}
	}
	if !s.trackers.add(t) {
		return nil, errors.New("redisstore: track: store closed")
	}
	stop = func() {
		t.stop()
		s.trackers.remove(t)
	}
	if err := t.start(ctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// trackers are the trackers of a Store that are running, stopped by
// [Store.Close]. The zero value is ready to use.
type trackers struct {
	mu     sync.Mutex
	closed bool
	set    map[*tracker]struct{}
}

func (ts *trackers) add(t *tracker) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return false
	}
	if ts.set == nil {
		ts.set = make(map[*tracker]struct{})
	}
	ts.set[t] = struct{}{}
	return true
}

func (ts *trackers) remove(t *tracker) {
	ts.mu.Lock()
	delete(ts.set, t)
	ts.mu.Unlock()
}

// closeAll stops every tracker and refuses new ones.
func (ts *trackers) closeAll() {
	ts.mu.Lock()
	ts.closed = true
	set := ts.set
	ts.set = nil
	ts.mu.Unlock()
	for t := range set {
		t.stop()
	}
}

// nodeSpec names a node to track and the options of the client that
// reaches it.
type nodeSpec struct {
	addr string
	opt  *redis.Options
}

// tracker is one [Store.Track]: a connection per node, a goroutine that
// delivers the reports, and one that lists the nodes again.
type tracker struct {
	keyPrefix string // "<prefix>:b:{"
	name      string // client name of the tracking connections
	interval  time.Duration
	deadAfter time.Duration
	relist    time.Duration
	fn        func(storage.Changes)

	// list returns the nodes of a deployment of several (cluster, ring);
	// nil for a single server, whose one node is single.
	list   func(ctx context.Context) ([]nodeSpec, error)
	single nodeSpec
	// attached, for a Sentinel client, runs CLIENT LIST ID through the
	// user's client.
	attached func(ctx context.Context, id int64) (string, error)

	stopOnce sync.Once
	cancel   context.CancelFunc // ends the goroutines' context
	done     chan struct{}      // closed by stop
	wake     chan struct{}      // one token: pending holds a report
	first    chan struct{}      // closed once the first report was delivered
	wg       sync.WaitGroup     // delivery and supervision

	mu      sync.Mutex
	stopped bool
	nodes   map[string]*trackNode
	pending pendingChanges
	seen    map[string]struct{} // buckets in pending
	through time.Time           // the latest Through reported
	changed chan struct{}       // closed and replaced when a node's state changes
}

// pendingChanges is the next report, merged from what arrived since the
// last one.
type pendingChanges struct {
	buckets []string
	all     bool
	through time.Time
}

func (p *pendingChanges) empty() bool {
	return len(p.buckets) == 0 && !p.all && p.through.IsZero()
}

// trackNode is one node's tracking connection: a PubSub of a client of
// its own, read by one goroutine and pinged by another. Its fields are
// guarded by the tracker's mu.
type trackNode struct {
	t      *tracker
	addr   string
	client *redis.Client
	cancel context.CancelFunc
	quit   chan struct{} // closed when the node is closed
	// absent counts the listings in a row that missed the node.
	absent int
	// kick asks the pinger for a PING now: a connection was confirmed,
	// and its first proof of delivery should not wait for an interval.
	kick chan struct{}
	wg   sync.WaitGroup

	ps     *redis.PubSub // nil between two sessions
	closed bool
	up     bool      // Redis confirmed the subscription of the current connection
	since  time.Time // when up or ps last changed, or the last error
	err    error     // the last error, until the next confirmation
	// dialedID is the id of the last connection OnConnect set up; id that
	// of the connection up, and gen counts the confirmations.
	dialedID, id int64
	gen          uint64
	// The PING in flight: its sequence number and the time it was sent.
	seq     uint64
	sentAt  time.Time
	pinging bool
	// acked is the send time of the last answered PING.
	acked time.Time
	// attachedAt, on a Sentinel client, is the send time of the last
	// check that found the current connection on the client's master.
	attachedAt time.Time
}

// newTracker reads the client's options and prepares the tracker, without
// any I/O.
func (s *Store) newTracker(interval time.Duration, fn func(storage.Changes)) (*tracker, error) {
	t := &tracker{
		keyPrefix: s.prefix + ":b:{",
		name:      fmt.Sprintf("%s:tracker:%08x", s.prefix, rand.Uint32()),
		interval:  interval,
		deadAfter: max(4*interval, trackMinDeadAfter),
		relist:    max(interval, trackMinRelist),
		fn:        fn,
		done:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
		first:     make(chan struct{}),
		nodes:     make(map[string]*trackNode),
		seen:      make(map[string]struct{}),
		changed:   make(chan struct{}),
	}
	switch c := s.rdb.(type) {
	case *redis.Client:
		o := c.Options()
		if o.ClientSideCacheConfig != nil || o.ClientSideCache != nil {
			return nil, errors.New("redisstore: track: the go-redis client has its own client-side cache (Options.ClientSideCacheConfig or ClientSideCache): the store's reads through it may be staler than the tracker's reports say; give the store a client without it")
		}
		t.single = nodeSpec{addr: o.Addr, opt: o}
		if o.Addr == "FailoverClient" { // set by redis.NewFailoverClient
			t.attached = func(ctx context.Context, id int64) (string, error) {
				return c.Do(ctx, "client", "list", "id", id).Text()
			}
		}
	case *redis.ClusterClient:
		if o := c.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, fmt.Errorf("redisstore: track: the cluster client reads from replicas (ReadOnly, RouteByLatency or RouteRandomly), which tracking on the masters cannot follow: a replica that lags would be read after the report of a change it has not applied yet: %w", storage.ErrNoTracking)
		}
		t.list = func(ctx context.Context) ([]nodeSpec, error) {
			return collectNodes(ctx, c.ForEachMaster)
		}
	case *redis.Ring:
		t.list = func(ctx context.Context) ([]nodeSpec, error) {
			return collectNodes(ctx, c.ForEachShard)
		}
	default:
		return nil, fmt.Errorf("redisstore: track: a %T client cannot be tracked: %w", s.rdb, storage.ErrNoTracking)
	}
	return t, nil
}

// checkMasterRole refuses a client connected to a replica (a Sentinel
// client with ReplicaOnly, or a replica's address): the tracking
// connection's reports would come from the node the reads go to, but a
// replica applies changes after its master acknowledged them, and a
// store that reads one cannot fence its fills either.
func checkMasterRole(ctx context.Context, c *redis.Client) error {
	var role []any
	for {
		var err error
		role, err = c.Do(ctx, "role").Slice()
		if _, refused := errors.AsType[redis.Error](err); refused {
			return nil // a server without ROLE (miniredis) has no replicas either
		}
		if err == nil {
			break
		}
		// Unreachable: tried again until ctx ends, as the nodes are.
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisstore: track: ROLE: %w: %w", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(role) > 0 {
		if r, _ := role[0].(string); r == "slave" || r == "replica" {
			return fmt.Errorf("redisstore: track: the client is connected to a replica, whose reads may lag behind the changes tracking reports: give the store a client of the master: %w", storage.ErrNoTracking)
		}
	}
	return nil
}

// collectNodes lists the nodes that forEach visits.
func collectNodes(ctx context.Context, forEach func(context.Context, func(context.Context, *redis.Client) error) error) ([]nodeSpec, error) {
	var (
		mu    sync.Mutex
		specs []nodeSpec
	)
	err := forEach(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		specs = append(specs, nodeSpec{addr: c.Options().Addr, opt: c.Options()})
		mu.Unlock()
		return nil
	})
	return specs, err
}

// start opens a connection to every node, and returns once each is
// tracking and the first report was delivered, or ctx ended, or a node
// cannot track.
func (t *tracker) start(ctx context.Context) error {
	specs := []nodeSpec{t.single}
	if t.list != nil {
		var err error
		if specs, err = t.list(ctx); err != nil {
			return fmt.Errorf("redisstore: track: list the nodes: %w", err)
		}
		if len(specs) == 0 {
			return errors.New("redisstore: track: the client lists no node")
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		cancel()
		return errTrackStopped
	}
	t.cancel = cancel
	for _, spec := range specs {
		t.addNodeLocked(runCtx, spec)
	}
	t.mu.Unlock()

	if err := t.awaitNodes(ctx); err != nil {
		return err
	}
	if !t.spawn(func() { t.deliver() }) {
		return errTrackStopped
	}
	select {
	case <-t.first:
	case <-t.done:
		return errTrackStopped
	case <-ctx.Done():
		return fmt.Errorf("redisstore: track: first report not delivered: %w", ctx.Err())
	}
	if !t.spawn(func() { t.supervise(runCtx) }) {
		return errTrackStopped
	}
	return nil
}

// errTrackStopped is the error of a Track whose tracker was stopped while
// it started: by [Store.Close].
var errTrackStopped = errors.New("redisstore: track: store closed")

// spawn runs f on a goroutine of the tracker unless it was stopped.
func (t *tracker) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// awaitNodes waits until every node is tracking. It gives up on the
// first node that cannot track, and when ctx ends.
func (t *tracker) awaitNodes(ctx context.Context) error {
	for {
		t.mu.Lock()
		var (
			up      = true
			lastErr error
			changed = t.changed
		)
		for _, n := range t.nodes {
			if n.up {
				continue
			}
			up = false
			if n.err != nil {
				lastErr = n.err
				if errors.Is(n.err, storage.ErrNoTracking) {
					err := n.err
					t.mu.Unlock()
					return err
				}
			}
		}
		t.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-changed:
		case <-t.done:
			return errTrackStopped
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("redisstore: track: not tracking yet: %w: %w", lastErr, ctx.Err())
			}
			return fmt.Errorf("redisstore: track: not tracking yet: %w", ctx.Err())
		}
	}
}

// stop ends the tracker and waits for its goroutines. It may be called
// any number of times, concurrently too.
func (t *tracker) stop() {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		t.stopped = true
		close(t.done)
		cancel := t.cancel
		nodes := make([]*trackNode, 0, len(t.nodes))
		for _, n := range t.nodes {
			nodes = append(nodes, n)
		}
		t.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		for _, n := range nodes {
			n.close()
		}
		t.wg.Wait()
	})
}

// addNodeLocked starts tracking one node. The caller holds t.mu and has
// checked that the tracker is not stopped.
func (t *tracker) addNodeLocked(ctx context.Context, spec nodeSpec) {
	ctx, cancel := context.WithCancel(ctx)
	n := &trackNode{t: t, addr: spec.addr, cancel: cancel, quit: make(chan struct{}), kick: make(chan struct{}, 1), since: time.Now()}
	n.client = redis.NewClient(t.clientOptions(n, spec.opt))
	t.nodes[spec.addr] = n
	n.wg.Add(2)
	go n.read(ctx)
	go n.ping(ctx)
}

// clientOptions derives the options of a node's tracking client from the
// options of the user's client for that node, as Options.init left them.
func (t *tracker) clientOptions(n *trackNode, o *redis.Options) *redis.Options {
	userOnConnect := o.OnConnect
	return &redis.Options{
		Network:    o.Network,
		Addr:       o.Addr,
		Dialer:     o.Dialer,
		ClientName: t.name,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			if userOnConnect != nil {
				if err := userOnConnect(ctx, cn); err != nil {
					return err
				}
			}
			return n.onConnect(ctx, cn)
		},
		// Under RESP3 Redis would push invalidations that go-redis's
		// PubSub does not return; under RESP2 they are pub/sub messages.
		Protocol:                     2,
		Username:                     o.Username,
		Password:                     o.Password,
		CredentialsProvider:          o.CredentialsProvider,
		CredentialsProviderContext:   o.CredentialsProviderContext,
		StreamingCredentialsProvider: o.StreamingCredentialsProvider,
		DB:                           o.DB,
		MaxRetries:                   -1,
		DialTimeout:                  o.DialTimeout,
		DialerRetries:                o.DialerRetries,
		DialerRetryTimeout:           o.DialerRetryTimeout,
		DialerRetryBackoff:           o.DialerRetryBackoff,
		ReadTimeout:                  unresolveTimeout(o.ReadTimeout),
		WriteTimeout:                 unresolveTimeout(o.WriteTimeout),
		ContextTimeoutEnabled:        true,
		PoolSize:                     1,
		PipelinePoolSize:             -1,
		TLSConfig:                    o.TLSConfig,
		DisableIdentity:              o.DisableIdentity,
		IdentitySuffix:               o.IdentitySuffix,
		MaintNotificationsConfig:     &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// unresolveTimeout turns a read or write timeout that Options.init
// resolved back into the value that init resolves to it again: init maps
// 0 to 5s, -1 to 0 (no timeout) and -2 to -1 (no deadline at all).
func unresolveTimeout(d time.Duration) time.Duration {
	switch d {
	case 0:
		return -1
	case -1:
		return -2
	}
	return d
}

// connectError is an error of a tracking connection's setup: the
// connection was closed.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// onConnect turns tracking on for a new connection, redirected to the
// connection itself, before go-redis subscribes it.
func (n *trackNode) onConnect(ctx context.Context, cn *redis.Conn) error {
	id, err := cn.ClientID(ctx).Result()
	if err != nil {
		return n.setupError("CLIENT ID", err)
	}
	err = cn.Do(ctx, "client", "tracking", "on", "redirect", id, "bcast", "prefix", n.t.keyPrefix).Err()
	if err != nil {
		return n.setupError("CLIENT TRACKING", err)
	}
	n.t.mu.Lock()
	n.dialedID = id
	n.t.mu.Unlock()
	return nil
}

// setupError wraps an error of onConnect. An ERR or NOPERM reply (an
// unknown command or subcommand, a user without the permission) matches
// storage.ErrNoTracking; other replies (BUSY, LOADING) may pass, and so
// does the ERR of a server at its maxclients, which refuses every
// command of a connection it could not admit.
func (n *trackNode) setupError(cmd string, err error) error {
	re, ok := errors.AsType[redis.Error](err)
	if ok && (strings.HasPrefix(re.Error(), "ERR ") || strings.HasPrefix(re.Error(), "NOPERM ")) &&
		!strings.Contains(re.Error(), "max number of clients") {
		err = fmt.Errorf("redisstore: track: %s on %s answered %w: %w", cmd, n.addr, err, storage.ErrNoTracking)
	} else {
		err = fmt.Errorf("redisstore: track: %s on %s: %w", cmd, n.addr, err)
	}
	return &connectError{err}
}

// connectionLost reports an error after which the connection is gone (and
// a new one, if go-redis made it, is confirmed by a new subscription):
// everything else, an unreadable message included, is reported as All.
func connectionLost(err error) bool {
	if _, ok := errors.AsType[*connectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrClosed)
}

// read reads the node's messages until the node is closed, making a new
// PubSub whenever the last one was dropped.
func (n *trackNode) read(ctx context.Context) {
	defer n.wg.Done()
	t := n.t
	var backoff time.Duration
	for {
		ps, err := n.session(ctx)
		if ps == nil {
			return
		}
		var msg any
		if err == nil {
			msg, err = ps.Receive(ctx)
		}
		if n.isClosed() {
			return
		}
		if err == nil {
			backoff = 0
			n.handle(msg)
			continue
		}
		lost := connectionLost(err)
		t.mu.Lock()
		n.err = err
		n.since = time.Now()
		if lost {
			n.up = false
		} else {
			// FLUSHALL and FLUSHDB send a null message, which go-redis
			// returns as an error; so does any message it cannot read.
			t.addAllLocked()
		}
		t.signalLocked()
		t.mu.Unlock()
		if backoff > 0 {
			tm := time.NewTimer(backoff)
			select {
			case <-tm.C:
			case <-n.quit:
				tm.Stop()
				return
			}
		}
		backoff = min(max(2*backoff, trackMinBackoff), trackMaxBackoff)
	}
}

// session returns the node's PubSub, or makes and subscribes a new one,
// returning the error of its subscription; nil once the node is closed.
func (n *trackNode) session(ctx context.Context) (*redis.PubSub, error) {
	t := n.t
	t.mu.Lock()
	if n.closed {
		t.mu.Unlock()
		return nil, nil
	}
	if ps := n.ps; ps != nil {
		t.mu.Unlock()
		return ps, nil
	}
	// Without channels, Subscribe makes the PubSub without dialing.
	ps := n.client.Subscribe(ctx)
	n.ps = ps
	n.up = false
	n.since = time.Now()
	t.mu.Unlock()
	// Dials, runs onConnect, sends SUBSCRIBE; the confirmation arrives
	// through Receive.
	return ps, ps.Subscribe(ctx, invalidateChannel)
}

// handle processes one message of the node's connection.
func (n *trackNode) handle(msg any) {
	t := n.t
	switch m := msg.(type) {
	case *redis.Message:
		if m.Channel != invalidateChannel {
			return
		}
		t.mu.Lock()
		switch {
		case m.PayloadSlice != nil:
			t.addKeysLocked(m.PayloadSlice)
		case m.Payload != "":
			t.addKeyLocked(m.Payload)
		default:
			t.addAllLocked()
		}
		t.mu.Unlock()
	case *redis.Pong:
		seq, err := strconv.ParseUint(m.Payload, 10, 64)
		t.mu.Lock()
		if err == nil && n.pinging && seq == n.seq {
			n.pinging = false
			n.acked = n.sentAt
			t.advanceLocked()
		}
		t.mu.Unlock()
	case *redis.Subscription:
		if m.Channel != invalidateChannel {
			return
		}
		if m.Kind != "subscribe" {
			n.drop(nil)
			return
		}
		// A new connection, tracking since onConnect: what changed
		// before may not have been reported.
		t.mu.Lock()
		n.up = true
		n.id = n.dialedID
		n.gen++
		n.err = nil
		n.since = time.Now()
		n.pinging = false
		t.addAllLocked()
		t.signalLocked()
		t.mu.Unlock()
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// ping sends a PING every interval on the node's connection once it is
// tracking, one at a time, and drops a connection that leaves one
// unanswered, or takes too long to confirm its subscription.
func (n *trackNode) ping(ctx context.Context) {
	defer n.wg.Done()
	t := n.t
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-n.quit:
			return
		case <-tick.C:
		case <-n.kick:
		}
		t.mu.Lock()
		if n.closed || n.ps == nil {
			t.mu.Unlock()
			continue
		}
		now := time.Now()
		switch {
		case n.up && n.pinging:
			if now.Sub(n.sentAt) <= t.deadAfter {
				t.mu.Unlock()
				continue
			}
			t.mu.Unlock()
			n.drop(fmt.Errorf("redisstore: track: %s left PING unanswered for %v", n.addr, t.deadAfter))
		case !n.up:
			if now.Sub(n.since) <= t.deadAfter {
				t.mu.Unlock()
				continue
			}
			t.mu.Unlock()
			n.drop(fmt.Errorf("redisstore: track: %s not tracking for %v", n.addr, t.deadAfter))
		default:
			n.seq++
			n.sentAt = now
			n.pinging = true
			ps, seq := n.ps, n.seq
			t.mu.Unlock()
			// An error shows in Receive as well; the pong never comes.
			_ = ps.Ping(ctx, strconv.FormatUint(seq, 10))
		}
	}
}

// drop closes the node's current connection; the reader makes a new one.
func (n *trackNode) drop(cause error) {
	t := n.t
	t.mu.Lock()
	ps := n.ps
	n.ps = nil
	n.up = false
	n.since = time.Now()
	if cause != nil {
		n.err = cause
	}
	t.signalLocked()
	t.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// close closes the node for good and waits for its goroutines.
func (n *trackNode) close() {
	t := n.t
	t.mu.Lock()
	if n.closed {
		t.mu.Unlock()
		return
	}
	n.closed = true
	close(n.quit)
	ps := n.ps
	n.ps = nil
	t.mu.Unlock()
	n.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	n.wg.Wait()
	_ = n.client.Close()
}

func (n *trackNode) isClosed() bool {
	n.t.mu.Lock()
	defer n.t.mu.Unlock()
	return n.closed
}

// bucketOf returns the bucket of a bucket key of the store's prefix, a
// substring of key.
func (t *tracker) bucketOf(key string) (string, bool) {
	if len(key) <= len(t.keyPrefix) || !strings.HasPrefix(key, t.keyPrefix) || key[len(key)-1] != '}' {
		return "", false
	}
	b := key[len(t.keyPrefix) : len(key)-1]
	if strings.ContainsAny(b, "{}") {
		return "", false
	}
	return b, true
}

func (t *tracker) addKeysLocked(keys []string) {
	for _, k := range keys {
		t.addKeyLocked(k)
	}
}

func (t *tracker) addKeyLocked(key string) {
	if t.pending.all {
		return // All covers it
	}
	b, ok := t.bucketOf(key)
	if !ok {
		return
	}
	if _, dup := t.seen[b]; dup {
		return
	}
	t.seen[b] = struct{}{}
	t.pending.buckets = append(t.pending.buckets, b)
	t.wakeLocked()
}

func (t *tracker) addAllLocked() {
	t.pending.all = true
	t.pending.buckets = nil
	t.resetSeenLocked()
	t.wakeLocked()
}

// resetSeenLocked empties seen, dropping the map when a burst of changes
// (a purge of many buckets) made it large.
func (t *tracker) resetSeenLocked() {
	if len(t.seen) > 1024 {
		t.seen = make(map[string]struct{})
		return
	}
	clear(t.seen)
}

// advanceLocked raises Through to the oldest last answered PING over the
// nodes, once every node has one answered.
func (t *tracker) advanceLocked() {
	var low time.Time
	for _, n := range t.nodes {
		proof := n.acked
		if t.attached != nil {
			// A pong proves delivery only from the server the client
			// writes to: on a Sentinel client, only as far as the last
			// check that the connection is on the client's master.
			if n.attachedAt.Before(proof) {
				proof = n.attachedAt
			}
		}
		if proof.IsZero() {
			return
		}
		if low.IsZero() || proof.Before(low) {
			low = proof
		}
	}
	if low.After(t.through) {
		t.through = low
		t.pending.through = low
		t.wakeLocked()
	}
}

func (t *tracker) wakeLocked() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// signalLocked wakes those waiting for a change of a node's state.
func (t *tracker) signalLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// deliver calls fn with each report, until the tracker stops.
func (t *tracker) deliver() {
	var once sync.Once
	for {
		select {
		case <-t.done:
			return
		case <-t.wake:
		}
		t.mu.Lock()
		p := t.pending
		t.pending = pendingChanges{}
		t.resetSeenLocked()
		t.mu.Unlock()
		if p.empty() {
			continue
		}
		select {
		case <-t.done:
			return
		default:
		}
		t.fn(storage.Changes{Buckets: p.buckets, All: p.all, Through: p.through})
		once.Do(func() { close(t.first) })
	}
}

// supervise lists a deployment's nodes again, or checks that a Sentinel
// client's connection is on the master, every relist period.
func (t *tracker) supervise(ctx context.Context) {
	if t.list == nil && t.attached == nil {
		return
	}
	every := t.relist
	if t.list == nil {
		// A Sentinel client: its connection's pongs prove nothing past
		// the last check (see advanceLocked), so the check runs as
		// often as the pings, and once at the start.
		every = t.interval
		cctx, cancel := context.WithTimeout(ctx, max(every, trackMinRelist))
		t.checkAttached(cctx)
		cancel()
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(every, trackMinRelist))
		if t.list != nil {
			t.relistNodes(cctx, ctx)
		} else {
			t.checkAttached(cctx)
		}
		cancel()
	}
}

// relistNodes opens a connection to each new node and closes those of the
// nodes that are gone. It keeps the nodes it has when the listing fails or
// is empty. ctx bounds the listing; the new nodes run with runCtx.
func (t *tracker) relistNodes(ctx, runCtx context.Context) {
	specs, err := t.list(ctx)
	if err != nil || len(specs) == 0 {
		return
	}
	want := make(map[string]nodeSpec, len(specs))
	for _, s := range specs {
		want[s.addr] = s
	}
	var gone []*trackNode
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	for addr, n := range t.nodes {
		if _, ok := want[addr]; ok {
			n.absent = 0
			continue
		}
		// A node missing from one listing may be a listing taken while
		// the client reloaded its view of the cluster: it goes only
		// when two in a row miss it. Until then its connection, if it
		// is down, holds Through back as any node's does.
		if n.absent++; n.absent >= 2 {
			delete(t.nodes, addr)
			gone = append(gone, n)
		}
	}
	for addr, s := range want {
		if _, ok := t.nodes[addr]; !ok {
			t.addNodeLocked(runCtx, s)
		}
	}
	t.mu.Unlock()
	for _, n := range gone {
		n.close()
	}
	if len(gone) > 0 {
		// The keys of a node that is gone are served by others (a ring
		// shard's, by the shards its keys hash to now), which may hold
		// other values for them.
		t.mu.Lock()
		t.addAllLocked()
		t.advanceLocked()
		t.mu.Unlock()
	}
}

// checkAttached drops the tracking connection of a Sentinel client when
// the server the client now writes to does not know it: after a failover,
// or while the old master is cut off from the Sentinels but not from this
// process.
func (t *tracker) checkAttached(ctx context.Context) {
	t.mu.Lock()
	var n *trackNode
	for _, m := range t.nodes {
		n = m
	}
	if n == nil || !n.up {
		t.mu.Unlock()
		return
	}
	id, gen := n.id, n.gen
	t.mu.Unlock()
	sent := time.Now()
	list, err := t.attached(ctx, id)
	if err != nil {
		return // cannot tell: the proof of delivery stays where it was
	}
	if strings.HasPrefix(list, "id="+strconv.FormatInt(id, 10)+" ") && strings.Contains(list, " name="+t.name+" ") {
		t.mu.Lock()
		if n.gen == gen && n.up && sent.After(n.attachedAt) {
			n.attachedAt = sent
			t.advanceLocked()
		}
		t.mu.Unlock()
		return
	}
	t.mu.Lock()
	same := n.gen == gen && n.up
	t.mu.Unlock()
	if same {
		n.drop(fmt.Errorf("redisstore: track: the tracking connection is not on the master the client uses"))
	}
}
