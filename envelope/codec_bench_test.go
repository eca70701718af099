//go:build !race

// Benchmarks and allocation checks. They are left out of -race builds:
// the race detector makes sync.Pool drop a random share of what it is
// given, so allocation counts would not mean anything there.

package envelope

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/readthrough/readthrough/internal/testbody"
	"github.com/readthrough/readthrough/storage"
)

// benchSizes are the body sizes the benchmarks cover: a small JSON
// answer, a typical API page, a large document.
var benchSizes = []struct {
	name string
	n    int
}{
	{"200B", 200},
	{"2KB", 2 << 10},
	{"64KB", 64 << 10},
}

// benchEntry is a 200 with four typical headers and a JSON body of n bytes.
func benchEntry(n int) *storage.Entry {
	e := testbody.Entry(testbody.JSON(n, 1))
	e.Header.Set("Cache-Control", "public, max-age=300")
	return e
}

// BenchmarkDecode measures Decode of an identity entry with four headers
// into a fresh Entry, as on a cache hit: the header map, its values and
// the strings are allocated, the body is aliased.
func BenchmarkDecode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			data := Encode(nil, benchEntry(s.n))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var e storage.Entry
				if err := Decode(data, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeStringNames measures Decode of a 2 KB entry whose
// headers include four names that are not in the name table, so are
// given as strings: each costs Decode a check against the names that are
// never stored, which names given as table positions do not.
func BenchmarkDecodeStringNames(b *testing.B) {
	e := benchEntry(2 << 10)
	e.Header.Set("X-Request-Id", "b5a9c1") // in the table
	e.Header.Set("X-Trace-Id", "4bf92f3577b34da6a3ce929d0e0e4736")
	e.Header.Set("X-Ratelimit-Remaining", "99")
	e.Header.Set("X-Shard", "eu-1")
	e.Header.Set("Server-Timing", "db;dur=53")
	data := Encode(nil, e)
	b.ReportAllocs()
	for b.Loop() {
		var e storage.Entry
		if err := Decode(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeReuse measures Decode into an Entry whose header map is
// reused from the previous call.
func BenchmarkDecodeReuse(b *testing.B) {
	data := Encode(nil, benchEntry(2<<10))
	var e storage.Entry
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeParallel measures Decode of a 2 KB entry from all Ps at
// once, as under load.
func BenchmarkDecodeParallel(b *testing.B) {
	data := Encode(nil, benchEntry(2<<10))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var e storage.Entry
			if err := Decode(data, &e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEncode measures Encode of an entry with four headers into a
// reused buffer, as on a fill.
func BenchmarkEncode(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			e := benchEntry(s.n)
			buf := Encode(nil, e)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = Encode(buf[:0], e)
			}
		})
	}
}

func TestDecodeAllocs(t *testing.T) {
	tests := []struct {
		name string
		give *storage.Entry
		want float64
	}{
		// The string (the Etag and Cache-Control values and the text of
		// the date), the values, and the map: its header and one group
		// of eight slots.
		{"four headers", benchEntry(2 << 10), 4},
		// Names and values all from the tables: no string.
		{"table headers only", &storage.Entry{Status: 200, Header: http.Header{
			"Content-Type": {"application/json"}, "Vary": {"Accept-Encoding", "Origin"},
			"X-Content-Type-Options": {"nosniff"},
		}}, 3},
		// Dates only: one string for their text.
		{"dates only", &storage.Entry{Status: 200, Header: http.Header{
			"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"}, "Expires": {"Tue, 21 Oct 2025 08:28:00 GMT"},
		}}, 4},
		// Past eight names the map needs a table and more groups.
		{"twenty headers", manyHeaderEntry(20), 6},
		{"no headers", &storage.Entry{Status: 200}, 1}, // the empty map
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := Encode(nil, tt.give)
			got := testing.AllocsPerRun(100, func() {
				var e storage.Entry
				if err := Decode(data, &e); err != nil {
					t.Fatal(err)
				}
			})
			if got > tt.want {
				t.Errorf("Decode allocates %v times, want at most %v", got, tt.want)
			}
		})
	}
}

func manyHeaderEntry(n int) *storage.Entry {
	e := &storage.Entry{Status: 200, Header: http.Header{}}
	for i := range n {
		e.Header.Set(fmt.Sprintf("X-H%02d", i), "value")
	}
	return e
}

func TestEncodeAllocs(t *testing.T) {
	e := benchEntry(2 << 10)
	buf := Encode(nil, e)
	if got := testing.AllocsPerRun(100, func() { buf = Encode(buf[:0], e) }); got != 0 {
		t.Errorf("Encode into a big enough buffer allocates %v times, want 0", got)
	}
}
