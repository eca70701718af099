package keying

import (
	"net/http/httptest"
	"testing"

	"github.com/readthrough/readthrough/policy"
)

// The tests of this file come from the third outside review
// (2026-12-06), of the request path as changed that day: each comment
// tells what the reviewer tried or found, and the test guards it.

// The allow-list query is appended from the pooled scratch without a copy:
// keys must not depend on what an earlier request left in the scratch, and
// "no kept parameter" must equal "no query".
func TestReviewCKeptQueryScratch(t *testing.T) {
	rt, err := Compile("GET /p", policy.Policy{TTL: 60e9, QueryParams: []string{"page"}})
	if err != nil {
		t.Fatal(err)
	}
	key := func(target string) string {
		k, err := rt.Key(httptest.NewRequest("GET", target, nil))
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		return k.Field
	}
	bare := key("/p")
	for range 50 {
		key("/p?page=" + string(make([]byte, 0)) + "2&page=3&x=1")
		if got := key("/p?x=1"); got != bare {
			t.Fatal("a query with no kept parameter keys differently from none after a reuse")
		}
		if got := key("/p?"); got != bare {
			t.Fatal("an empty query keys differently")
		}
	}
	a, b := key("/p?page=1&x=2"), key("/p?page=1")
	if a != b {
		t.Error("an unkept parameter changed the key")
	}
	if key("/p?page=1") == key("/p?page=2") || key("/p?page=1&page=2") == key("/p?page=2&page=1") {
		t.Error("distinct kept queries share a key")
	}
}
