package integration

// Writes that invalidate reads, and revalidation with 304, across
// instances on real Redis (the cluster suite runs them too).

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
)

// itemService is the origin of the write tests: GET /items/{id} reads an
// item (with an ETag, and 304 to a matching If-None-Match), PUT changes
// it. read, when set, is called after a GET read the value and before it
// answers.
type itemService struct {
	mu      sync.Mutex
	vals    map[string]string
	read    func()
	full    atomic.Int64
	notMod  atomic.Int64
	version atomic.Int64
}

func newItemService() *itemService {
	return &itemService{vals: map[string]string{"1": "one"}}
}

func (s *itemService) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v, read := s.vals[r.PathValue("id")], s.read
	s.mu.Unlock()
	if read != nil {
		read()
	}
	etag := fmt.Sprintf("%q", v)
	w.Header().Set("Etag", etag)
	w.Header().Set("X-Version", fmt.Sprint(s.version.Add(1)))
	if r.Header.Get("If-None-Match") == etag {
		s.notMod.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full.Add(1)
	io.WriteString(w, v)
}

func (s *itemService) put(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.vals[r.PathValue("id")] = string(b)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// itemApps starts n instances of the item service on one prefix.
func itemApps(t *testing.T, n int, svc *itemService, pol policy.Policy) []*app {
	cfg := appConfig{prefix: prefix(t), opts: []httpcache.Option{patient()},
		routes: []route{{pattern: "GET /items/{id}", policy: pol, handler: http.HandlerFunc(svc.get)}},
		writes: []writeRoute{{pattern: "PUT /items/{id}", purges: []httpcache.Purge{httpcache.PurgeRoute("GET /items/{id}")},
			handler: http.HandlerFunc(svc.put)}},
	}
	return startApps(t, n, cfg, nil)
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	req.Host = serviceHost
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s: %d", url, res.StatusCode)
	}
}

// A write through one instance makes the next read on every other
// instance a miss with the new body.
func TestWriteInvalidatesAcrossInstances(t *testing.T) {
	svc := newItemService()
	apps := itemApps(t, 4, svc, policy.Policy{TTL: time.Hour})
	for _, a := range apps[1:] {
		get(a.URL+"/items/1", "Host", serviceHost)
		if got := get(a.URL+"/items/1", "Host", serviceHost); !got.hit() || got.body != "one" {
			t.Fatalf("before the write: %q %q", got.cacheStatus(), got.body)
		}
	}
	put(t, apps[0].URL+"/items/1", "uno")
	for i, a := range apps[1:] {
		got := get(a.URL+"/items/1", "Host", serviceHost)
		if got.body != "uno" || (i == 0 && got.hit()) {
			t.Errorf("instance %d after the write: %q %q", i+1, got.cacheStatus(), got.body)
		}
	}
	if s := apps[0].Cache.RouteStats()["PUT /items/{id}"]; s.Invalidations != 1 || s.Invalidated != 1 {
		t.Errorf("write route stats: %d invalidations, %d buckets", s.Invalidations, s.Invalidated)
	}
}

// A fill on one instance that read the old value before a write through
// another, and stores after the write's purge, is refused by the fence:
// the next read anywhere gets the new value.
func TestWriteRacingFillAcrossInstances(t *testing.T) {
	svc := newItemService()
	apps := itemApps(t, 3, svc, policy.Policy{TTL: time.Hour})
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	svc.mu.Lock()
	svc.read = func() {
		once.Do(func() {
			close(read)
			<-release
		})
	}
	svc.mu.Unlock()
	done := make(chan resp)
	go func() { done <- get(apps[1].URL+"/items/1", "Host", serviceHost) }()
	<-read // the fill read "one"
	put(t, apps[0].URL+"/items/1", "uno")
	close(release)
	if old := <-done; old.body != "one" {
		t.Fatalf("the racing fill answered %q", old.body)
	}
	if got := get(apps[2].URL+"/items/1", "Host", serviceHost); got.hit() || got.body != "uno" {
		t.Errorf("after the write: %q %q, want a miss with the new body", got.cacheStatus(), got.body)
	}
	if n := apps[1].Cache.Stats().PurgeRaces; n != 1 {
		t.Errorf("purge races %d, want the racing fill refused", n)
	}
}

// An entry with validators that went stale is revalidated by the next
// request on any instance: the origin answers 304, the body stays, the
// headers and freshness are updated, and the other instances hit it.
func TestRevalidationAcrossInstances(t *testing.T) {
	svc := newItemService()
	apps := itemApps(t, 3, svc, policy.Policy{TTL: time.Second})
	first := get(apps[0].URL+"/items/1", "Host", serviceHost)
	deadline := time.Now().Add(1100 * time.Millisecond)
	time.Sleep(time.Until(deadline))
	got := get(apps[1].URL+"/items/1", "Host", serviceHost)
	if got.status != 200 || got.body != "one" || !strings.Contains(got.cacheStatus(), "fwd-status=304; stored") {
		t.Fatalf("revalidating instance: %d %q %q", got.status, got.body, got.cacheStatus())
	}
	hit := get(apps[2].URL+"/items/1", "Host", serviceHost)
	if !hit.hit() || hit.body != "one" || hit.header.Get("X-Version") == first.header.Get("X-Version") {
		t.Errorf("third instance: %q %q, X-Version %q (first %q)", hit.cacheStatus(), hit.body, hit.header.Get("X-Version"), first.header.Get("X-Version"))
	}
	if svc.full.Load() != 1 || svc.notMod.Load() != 1 {
		t.Errorf("origin: %d full answers, %d 304s; want 1 and 1", svc.full.Load(), svc.notMod.Load())
	}
}
