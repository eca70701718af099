// Package testbody makes the response bodies tests and benchmarks store:
// JSON documents of a given size that compress like real API answers.
package testbody

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// Entry is a 200 response with the three headers most JSON APIs send,
// stored on 2025-10-21, fresh for five minutes, with body.
func Entry(body []byte) *storage.Entry {
	return &storage.Entry{
		Status: http.StatusOK,
		Header: http.Header{
			"Content-Type":  {"application/json; charset=utf-8"},
			"Etag":          {`"33a64df551425fcc55e4d42a148795d9f25f89d4"`},
			"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"},
		},
		Stored:               time.UnixMilli(1761031680123).UTC(),
		Fresh:                5 * time.Minute,
		StaleWhileRevalidate: time.Minute,
		StaleIfError:         time.Hour,
		OriginTime:           12345 * time.Microsecond,
		Body:                 body,
	}
}

// JSON returns a JSON document of n bytes (at least 24) that looks
// like a typical API listing, the same for the same seed.
func JSON(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	names := []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Rob", "Dennis", "Margaret", "Linus"}
	tags := []string{"admin", "beta", "staff", "trial", "vip", "eu", "us"}
	words := []string{"builds", "compilers", "and", "systems", "for", "the", "web", "with", "care", "since", "forever"}
	b := []byte(`{"items":[`)
	var o []byte
	for {
		o = o[:0]
		if len(b) > len(`{"items":[`) {
			o = append(o, ',')
		}
		name := names[rng.IntN(len(names))]
		o = fmt.Appendf(o, `{"id":%d,"name":"%s","email":"%s%d@example.com",`, rng.IntN(1000000), name, strings.ToLower(name), rng.IntN(1000))
		o = fmt.Appendf(o, `"created":"2025-%02d-%02dT%02d:%02d:%02dZ","active":%t,"tags":["%s"]}`,
			1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(2) == 0, tags[rng.IntN(len(tags))])
		if len(b)+len(o)+2 > n {
			break
		}
		b = append(b, o...)
	}
	// Fill up to n bytes exactly with a last item holding a short bio.
	sep := ","
	if len(b) == len(`{"items":[`) {
		sep = ""
	}
	bio := []byte{}
	for room := n - len(b) - len(sep) - len(`{"bio":""}]}`); len(bio) < room; {
		bio = append(bio, words[rng.IntN(len(words))]...)
		bio = append(bio, ' ')
	}
	bio = bio[:max(0, n-len(b)-len(sep)-len(`{"bio":""}]}`))]
	b = fmt.Appendf(b, `%s{"bio":"%s"}]}`, sep, bio)
	return b
}

// Realistic is a small API answer: one product, 224 bytes.
var Realistic = []byte(`{"id":48213,"sku":"TSH-0042-M","name":"Organic Cotton T-Shirt","category":"apparel",` +
	`"price":{"amount":2499,"currency":"EUR"},"compare_at_price":{"amount":2999,"currency":"EUR"},` +
	`"stock":17,"updated_at":"2025-10-21T07:28:00Z"}`)
