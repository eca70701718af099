package integration

// Attacks on the cache whose path goes through Redis, on a real
// redis-server: what a request can make Redis hold, what an entry planted
// in Redis can make the cache send, and how the instances that wait on a
// fill are kept from a slow client. The unit tests of each path are in
// httpcache/security_test.go.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// Path 8: whatever the request, every key and fill notification the cache
// writes to Redis stays small, and one response cannot create any number
// of tag keys.
func TestSecurityRedisKeysBounded(t *testing.T) {
	p := prefix(t)
	origin := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tags") != "" {
			var tags []string
			for i := range 100_000 {
				tags = append(tags, fmt.Sprintf("t%d", i))
			}
			w.Header().Set("Surrogate-Key", strings.Join(tags, " "))
		}
		io.WriteString(w, "posts")
	}}
	a := startApp(t, appConfig{prefix: p, routes: []route{{
		pattern: "GET /users/{id}/posts",
		policy: policy.Policy{TTL: time.Minute, Tags: func(r *http.Request) []string {
			return []string{"user-" + r.PathValue("id")[:min(len(r.PathValue("id")), 300)]}
		}},
		handler: origin,
	}}})

	sub := a.Client.Subscribe(t.Context(), p+":fill")
	defer sub.Close()
	if _, err := sub.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("x", 900_000)
	for _, target := range []string{"/users/" + long + "/posts", "/users/" + long + "/posts", "/users/7/posts?tags=1"} {
		if got := get(a.URL+target, "Host", serviceHost); got.err != nil || got.body != "posts" {
			t.Fatalf("GET %.30s...: %v %q", target, got.err, got.body)
		}
	}
	for _, k := range scanKeys(t, a.Client, p+":*") {
		if len(k) > 512 {
			t.Errorf("a key of %d bytes: %.60q...", len(k), k)
		}
		if strings.HasPrefix(k, p+":t:") {
			t.Errorf("tag key %.60q...: the long tag and the 100,000 Surrogate-Keys must create none", k)
		}
	}
	// The notifications of the three fills above, read from Redis.
	deadline := time.After(2 * time.Second)
	for n := 0; n < 3; {
		select {
		case m := <-sub.Channel():
			if len(m.Payload) > 512 {
				t.Errorf("a fill notification of %d bytes", len(m.Payload))
			}
			n++
		case <-deadline:
			t.Fatalf("%d fill notifications seen, want 3", n)
		}
	}
	if s := a.Cache.Stats(); s.TagsRefused != 3 || s.LongKeys != 2 || s.Hits != 0 {
		t.Errorf("TagsRefused %d LongKeys %d Hits %d, want 3, 2, 0", s.TagsRefused, s.LongKeys, s.Hits)
	}
}

// Path 6: an entry planted in Redis by anything else is served only
// within the rules entries are stored by.
func TestSecurityPlantedEntries(t *testing.T) {
	p := prefix(t)
	pol := policy.Policy{TTL: time.Minute}
	a := startApp(t, appConfig{prefix: p, routes: []route{{
		pattern: "GET /p/{id}", policy: pol,
		handler: &counter{fn: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }},
	}}})
	kr, err := keying.Compile("GET /p/{id}", pol)
	if err != nil {
		t.Fatal(err)
	}
	plant := func(id string, e *storage.Entry) {
		req := httptest.NewRequest("GET", "/p/"+id, nil) // origin-form, as a client sends it
		req.Host = serviceHost
		req.SetPathValue("id", id)
		k, err := kr.Key(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Client.HSet(context.Background(), a.Store.BucketKey(k.Bucket), k.Field, envelope.Encode(nil, e)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(status int, header http.Header) *storage.Entry {
		header.Set("Content-Type", "text/plain")
		return &storage.Entry{Status: status, Header: header, Stored: time.Now(), Fresh: time.Hour, Body: []byte("planted")}
	}
	plant("cookie", entry(200, http.Header{"Set-Cookie": {"session=attacker"}, "X-Ok": {"1"}}))
	plant("hop", entry(200, http.Header{"Transfer-Encoding": {"chunked"}, "Connection": {"X-Secret"}, "X-Secret": {"1"}}))
	plant("101", entry(101, http.Header{"Upgrade": {"websocket"}}))
	plant("999", entry(999, http.Header{}))
	plant("future", &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Now().Add(30 * 24 * time.Hour), Fresh: time.Hour, Body: []byte("planted")})

	got := get(a.URL+"/p/cookie", "Host", serviceHost)
	if got.body != "planted" || got.header.Get("Set-Cookie") != "" || got.header.Get("X-Ok") != "1" {
		t.Errorf("cookie entry: %q Set-Cookie %q X-Ok %q", got.body, got.header.Get("Set-Cookie"), got.header.Get("X-Ok"))
	}
	got = get(a.URL+"/p/hop", "Host", serviceHost)
	if got.body != "planted" || got.header.Get("X-Secret") != "" || len(got.header["Transfer-Encoding"]) > 0 {
		t.Errorf("hop-by-hop entry: %q %v", got.body, got.header)
	}
	for _, id := range []string{"101", "999", "future"} {
		if got := get(a.URL+"/p/"+id, "Host", serviceHost); got.status != 200 || got.body != "origin" {
			t.Errorf("entry %s: %d %q (%s), want the origin's answer", id, got.status, got.body, got.cacheStatus())
		}
	}
	if s := a.Cache.Stats(); s.EntriesRejected != 3 {
		t.Errorf("EntriesRejected = %d, want 3", s.EntriesRejected)
	}
}

// Path 9: junk variants cannot push the variant real clients use out of
// a bucket in Redis.
func TestSecurityJunkVariants(t *testing.T) {
	p := prefix(t)
	a := startApp(t, appConfig{prefix: p, routes: []route{{
		pattern: "GET /items/{id}", policy: policy.Policy{TTL: time.Minute, MaxFields: 5},
		handler: &counter{fn: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "item") }},
	}}})
	get(a.URL+"/items/1?page=1", "Host", serviceHost)
	for i := range 20 {
		get(a.URL+fmt.Sprintf("/items/1?junk=%d", i), "Host", serviceHost)
	}
	if got := get(a.URL+"/items/1?page=1", "Host", serviceHost); !got.hit() {
		t.Fatalf("the real variant was pushed out: %q", got.cacheStatus())
	}
	if s := a.Cache.Stats(); s.VariantsRefused != 16 {
		t.Errorf("VariantsRefused = %d, want 16", s.VariantsRefused)
	}
}

// smallSendBuffers makes every accepted connection's send buffer small, so
// that a client that does not read stalls the server's writes to it.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// Path 10: the instances waiting on a fill get the response as soon as
// the handler produced it, however slowly the filling client reads.
func TestSecuritySlowLeaderClient(t *testing.T) {
	p := prefix(t)
	body := strings.Repeat("x", 4<<20)
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	origin := &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, body)
	}}
	cfg := appConfig{prefix: p, opts: nil, routes: []route{{
		pattern: "GET /big", policy: policy.Policy{TTL: time.Minute, MaxBodyBytes: 8 << 20, LockWait: time.Minute},
		handler: origin,
	}}}
	cfgA := cfg
	cfgA.listener = func(l net.Listener) net.Listener { return smallSendBuffers{l} }
	a := startApp(t, cfgA)
	b := startApp(t, cfg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(a.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: %s\r\n\r\n", serviceHost)
	<-started // the stalled client's request fills

	done := make(chan resp, 1)
	go func() { done <- get(b.URL+"/big", "Host", serviceHost) }()
	time.Sleep(200 * time.Millisecond) // b's request waits on a's fill
	close(release)
	select {
	case got := <-done:
		if got.err != nil || got.body != body || !strings.Contains(got.cacheStatus(), "collapsed") {
			t.Fatalf("waiter on another instance: %v, %d bytes, %q", got.err, len(got.body), got.cacheStatus())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other instance's request is still held by the stalled client after 10s")
	}
	if n := origin.calls.Load(); n != 1 {
		t.Errorf("origin calls = %d, want 1", n)
	}
}
