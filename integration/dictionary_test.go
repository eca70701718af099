package integration

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/codec"
	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage"
)

// productDoc is a JSON product of about 2 KB: the keys and vocabulary of
// every product, values of its own.
func productDoc(id int) string {
	r := rand.New(rand.NewPCG(uint64(id), 11))
	colors := []string{"black", "white", "slate", "sand", "navy", "forest green", "terracotta"}
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":%d,"name":"Product %d","price":{"amount":%d,"currency":"EUR"},"active":true,"variants":[`,
		id, id, r.IntN(90000))
	for i := range 18 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"P%d-%02d","color":%q,"stock":%d,"price":{"amount":%d,"currency":"EUR"},"ean":"%013d"}`,
			id, i, colors[r.IntN(len(colors))], r.IntN(400), r.IntN(90000), r.Int64N(1e13))
	}
	b.WriteString(`]}`)
	return b.String()
}

func productOrigin() *counter {
	return &counter{fn: func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", `"p`+strconv.Itoa(id)+`"`)
		fmt.Fprint(w, productDoc(id))
	}}
}

// Three instances on one real Redis with dictionary compression: the
// first trains the route's dictionary, the others load it from Redis and
// read and write entries with it; every response is the origin's, byte
// for byte, whatever the client accepts; a FLUSHALL turns hits into misses
// and nothing else.
func TestDictionaryCompressionOverTheWire(t *testing.T) {
	srv := startServer(t)
	p := prefix(t)
	pol := policy.Policy{TTL: time.Hour, Compression: policy.CompressDictionary}
	origins := make([]*counter, 3)
	apps := make([]*app, 3)
	for i := range apps {
		origins[i] = productOrigin()
		apps[i] = startApp(t, appConfig{
			client: srv.Client(), prefix: p, opts: []httpcache.Option{patient()},
			routes: []route{{"GET /products/{id}", pol, origins[i]}},
		})
	}
	url := func(a *app, id int) string { return a.URL + "/products/" + strconv.Itoa(id) }

	// The first instance trains the dictionary from its first fills.
	deadline := time.Now().Add(20 * time.Second)
	id := 1
	for ; apps[0].Cache.Stats().DictionariesTrained == 0; id++ {
		if time.Now().After(deadline) {
			t.Fatalf("no dictionary after %d fills", id)
		}
		if r := get(url(apps[0], id), "Host", serviceHost); r.err != nil || r.status != http.StatusOK || r.body != productDoc(id) {
			t.Fatalf("training fill %d: %d %v", id, r.status, r.err)
		}
	}
	t.Logf("dictionary trained after %d fills", id-1)
	rc := srv.Client()
	defer rc.Close()
	dictKeys := scanKeys(t, rc, p+":d:*")
	if len(dictKeys) != 1 {
		t.Fatalf("dictionary keys %q, want one", dictKeys)
	}

	// Every instance misses and hits products in turn, from clients that
	// accept gzip and clients that do not.
	check := func(round string, wantHit bool) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		hits, total := 0, 0
		for n := range 60 {
			wg.Go(func() {
				pid := 1000 + n
				a := apps[n%3]
				ae := []string{"gzip", "", "gzip, br, zstd"}[n%3]
				r := get(url(a, pid), "Host", serviceHost, "Accept-Encoding", ae)
				body := r.body
				if r.header.Get("Content-Encoding") == "gzip" {
					// An entry stored before its instance had the
					// dictionary, to a client that takes gzip.
					body = gunzip(t, body)
				}
				mu.Lock()
				defer mu.Unlock()
				total++
				if r.err != nil || r.status != http.StatusOK || body != productDoc(pid) {
					t.Errorf("%s: product %d from instance %d: %d %v, body equal %v", round, pid, n%3, r.status, r.err, body == productDoc(pid))
					return
				}
				if r.hit() {
					hits++
				} else if wantHit {
					t.Logf("%s: product %d from instance %d: %q", round, pid, n%3, r.cacheStatus())
				}
			})
		}
		wg.Wait()
		if wantHit && hits != total {
			t.Errorf("%s: %d hits of %d, want all", round, hits, total)
		}
	}
	check("fill", false)
	// Each product is now read from another instance than the one that
	// stored it.
	apps[0], apps[1], apps[2] = apps[1], apps[2], apps[0]
	check("hit", true)
	for i, a := range apps {
		if st := a.Cache.Stats(); st.DictionaryMisses != 0 || st.DictionariesLoaded == 0 {
			t.Errorf("instance %d: %+v, want its dictionary loaded and no dictionary misses", i, st)
		}
	}
	// Only one dictionary was trained: the others adopted it.
	trained := 0
	for _, a := range apps {
		trained += int(a.Cache.Stats().DictionariesTrained)
	}
	if trained != 1 {
		t.Errorf("%d dictionaries trained, want 1", trained)
	}
	coding, value, version := storedCoding(t, rc, p, 1005)
	if coding != envelope.DictionaryCoding || version != envelope.VersionDictionary {
		t.Errorf("stored coding %q in envelope version %d, want %s in version %d", coding, version, envelope.DictionaryCoding, envelope.VersionDictionary)
	}
	gz := storage.Entry{Body: []byte(productDoc(1005)), Header: http.Header{"Content-Type": {"application/json"}}}
	codec.Compress(&gz)
	t.Logf("product of %d bytes: stored value %d bytes (gzip alone: %d)", len(productDoc(1005)), value, len(gz.Body))

	// FLUSHALL: misses, then hits again; the instances still hold the
	// dictionary and write with it.
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	check("after flush", false)
	check("hit after flush", true)
}

// storedCoding returns the content coding, value size and envelope
// version of product id's stored entry.
func storedCoding(t *testing.T, rc redis.UniversalClient, p string, id int) (string, int, byte) {
	t.Helper()
	for _, k := range scanKeys(t, rc, p+":b:*") {
		if !strings.HasSuffix(k, "|"+strconv.Itoa(id)+"}") {
			continue
		}
		vals, err := rc.HVals(context.Background(), k).Result()
		if err != nil || len(vals) != 1 {
			t.Fatalf("bucket %s: %d values, %v", k, len(vals), err)
		}
		var e storage.Entry
		if err := envelope.Decode([]byte(vals[0]), &e); err != nil {
			t.Fatal(err)
		}
		return e.Coding, len(vals[0]), vals[0][0]
	}
	t.Fatalf("no bucket for product %d", id)
	return "", 0, 0
}

// A rolling change of a route's compression, on one real Redis: an
// instance whose route stores gzip (a policy file that turned dictionaries
// off on some instances) meets entries written with a dictionary, which it
// cannot read. They are misses it refills, never an error; the dictionary
// instances read its gzip entries as hits. (Instances of a release before
// dictionaries never read them at all: version 2, see
// TestEnvelopeVersionDictionary and TestUnknownVersionIsAQuietMiss.)
func TestDictionaryMixedDeploy(t *testing.T) {
	srv := startServer(t)
	p := prefix(t)
	dictPol := policy.Policy{TTL: time.Hour, Compression: policy.CompressDictionary}
	newApp := func(pol policy.Policy) (*app, *counter) {
		o := productOrigin()
		return startApp(t, appConfig{
			client: srv.Client(), prefix: p, opts: []httpcache.Option{patient()},
			routes: []route{{"GET /products/{id}", pol, o}},
		}), o
	}
	dict, _ := newApp(dictPol)
	plain, plainOrigin := newApp(policy.Policy{TTL: time.Hour})
	url := func(a *app, id int) string { return a.URL + "/products/" + strconv.Itoa(id) }
	deadline := time.Now().Add(20 * time.Second)
	for id := 1; dict.Cache.Stats().DictionariesTrained == 0; id++ {
		if time.Now().After(deadline) {
			t.Fatalf("no dictionary after %d fills", id)
		}
		get(url(dict, id), "Host", serviceHost)
	}
	rc := srv.Client()
	defer rc.Close()

	const first, n = 5000, 20
	for id := first; id < first+n; id++ {
		if r := get(url(dict, id), "Host", serviceHost); r.status != http.StatusOK || r.body != productDoc(id) {
			t.Fatalf("dictionary fill of %d: %d %v", id, r.status, r.err)
		}
		if coding, _, _ := storedCoding(t, rc, p, id); coding != envelope.DictionaryCoding {
			t.Fatalf("product %d stored as %q, want %s", id, coding, envelope.DictionaryCoding)
		}
	}
	for _, ae := range []string{"", "gzip", "*"} {
		for id := first; id < first+n; id++ {
			r := get(url(plain, id), "Host", serviceHost, "Accept-Encoding", ae)
			body := r.body
			if r.header.Get("Content-Encoding") == "gzip" {
				body = gunzip(t, body)
			}
			if r.err != nil || r.status != http.StatusOK || body != productDoc(id) || strings.Contains(r.header.Get("Content-Encoding"), "zstd") {
				t.Fatalf("gzip instance, product %d, Accept-Encoding %q: %d %q %v", id, ae, r.status, r.header.Get("Content-Encoding"), r.err)
			}
		}
	}
	if calls := plainOrigin.calls.Load(); calls != n {
		t.Errorf("gzip instance called its origin %d times for %d dictionary entries, want %d (each a miss once)", calls, n, n)
	}
	for id := first; id < first+n; id++ {
		if coding, _, version := storedCoding(t, rc, p, id); coding != "gzip" || version != envelope.Version {
			t.Fatalf("product %d refilled as %q in version %d, want gzip in version %d", id, coding, version, envelope.Version)
		}
		r := get(url(dict, id), "Host", serviceHost)
		if !r.hit() || r.body != productDoc(id) {
			t.Errorf("dictionary instance on the gzip entry of %d: %q", id, r.cacheStatus())
		}
	}
}

// gunzip decodes a gzip body.
func gunzip(t *testing.T, body string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return ""
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}
