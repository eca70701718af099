package httpcache

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// The decoded cache never serves a body the store no longer holds: a
// refill with a new body, for a client that does not accept gzip, sends
// the new body.
func TestDecodedBodyFollowsTheStore(t *testing.T) {
	for _, comp := range []policy.Compression{policy.CompressGzip, policy.CompressDictionary} {
		t.Run(string(comp), func(t *testing.T) {
			store := newMemStore(t)
			c := newTestCache(t, store)
			var mu sync.Mutex
			version := "one"
			items := itemOrigin()
			o := &origin{fn: func(w http.ResponseWriter, r *http.Request) {
				if r.PathValue("id") != "7" {
					items.ServeHTTP(w, r)
					return
				}
				mu.Lock()
				v := version
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"version":%q,"doc":%s}`, v, itemDoc(7))
			}}
			p := policy.Policy{TTL: time.Hour, Compression: comp}
			h := mux(t, c, "GET /items/{id}", p, o)
			if comp == policy.CompressDictionary {
				train(t, c, h, 100)
			}
			do(h, "GET", "/items/7")
			for range 3 {
				if r := do(h, "GET", "/items/7"); !r.isHit() || !strings.Contains(r.body, `"version":"one"`) {
					t.Fatalf("hit: %q, %.30q", r.cacheStatus(), r.body)
				}
			}
			if c.decoded.Len() == 0 {
				t.Fatal("the hits did not go through the decoded-body cache: the test tests nothing")
			}
			mu.Lock()
			version = "two"
			mu.Unlock()
			if _, err := c.PurgeURL(t.Context(), "http://example.com/items/7"); err != nil {
				t.Fatal(err)
			}
			do(h, "GET", "/items/7")
			r := do(h, "GET", "/items/7")
			if !r.isHit() || !strings.Contains(r.body, `"version":"two"`) {
				t.Fatalf("after the refill: %q, %.30q; want a hit on the new body", r.cacheStatus(), r.body)
			}
		})
	}
}
