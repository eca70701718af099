package keying

import (
	"net/http"
	"testing"

	"github.com/readthrough/readthrough/policy"
)

// keyBenchCases are the requests the Key benchmarks use, from a bare route
// to one with a field parameter, a busy query string and two Vary headers.
var keyBenchCases = []struct {
	name    string
	pattern string
	policy  policy.Policy
	give    reqSpec
}{
	{
		name: "bare", pattern: "GET /users/{id}",
		give: reqSpec{target: "/users/15"},
	},
	{
		name: "query", pattern: "GET /users/{id}",
		give: reqSpec{target: "/users/15?sort=name&page=2&q=go+cache&filter=a&filter=b"},
	},
	{
		name: "allowlist", pattern: "GET /users/{id}",
		policy: policy.Policy{QueryParams: []string{"page", "q"}},
		give:   reqSpec{target: "/users/15?utm_source=mail&utm_medium=x&page=2&q=go%20cache"},
	},
	{
		name: "full", pattern: "GET /users/{id}/posts/{post}",
		policy: policy.Policy{BucketParams: []string{"id"}, Vary: []string{"Accept-Encoding", "Accept-Language"}},
		give: reqSpec{target: "/users/15/posts/7?sort=name&page=2&q=go+cache", header: http.Header{
			"Accept-Encoding": {"gzip, deflate, br"},
			"Accept-Language": {"en-GB,en;q=0.9"},
		}},
	},
}

// BenchmarkKey measures Route.Key on one request already routed by
// http.ServeMux: the per-hit cost of computing the bucket and the field
// digest (bucket string, canonical encoding, SHA-256, field string).
func BenchmarkKey(b *testing.B) {
	for _, bc := range keyBenchCases {
		b.Run(bc.name, func(b *testing.B) {
			rt := mustCompile(b, bc.pattern, bc.policy)
			r := serve(b, stdlib, rt, bc.give).req
			b.ReportAllocs()
			for b.Loop() {
				_, _ = rt.Key(r)
			}
		})
	}
}

// BenchmarkKeyParallel measures Route.Key from all Ps at once, as on a busy
// hit path, where the scratch-buffer pool is shared.
func BenchmarkKeyParallel(b *testing.B) {
	bc := keyBenchCases[len(keyBenchCases)-1]
	rt := mustCompile(b, bc.pattern, bc.policy)
	r := serve(b, stdlib, rt, bc.give).req
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = rt.Key(r)
		}
	})
}
