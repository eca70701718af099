package envelope

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/internal/testbody"
	"github.com/readthrough/readthrough/storage"
)

// FuzzDecode feeds Decode arbitrary bytes. It must never panic; an entry
// it accepts must obey the rules for stored entries (a status of 200-599
// other than 206, and only headers that StorableHeader keeps, whatever
// the bytes hold), and must survive Encode and Decode again unchanged,
// with Encode reproducing its own output byte for byte.
func FuzzDecode(f *testing.F) {
	seeds := []*storage.Entry{
		{Status: 200},
		testbody.Entry(testbody.JSON(200, 1)),
		docExample,
		{
			Status:       404,
			Header:       http.Header{"Vary": {"A", "B"}, "X-Long": {string(bytes.Repeat([]byte("v"), 40))}},
			Stored:       time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC),
			Coding:       "gzip",
			CacheEncoded: true,
			Body:         bytes.Repeat([]byte{0}, 300),
		},
	}
	seeds = append(seeds, &storage.Entry{
		Status: 200,
		Header: http.Header{
			"Content-Type":  {"text/html; charset=utf-8"},
			"Expires":       {"0", "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"},
			"Last-Modified": {"Wed, 21 Oct 2025 07:28:00 GMT"}, // wrong weekday: a string
			"Vary":          {"Origin", "X-Tenant"},
			"X-Custom":      {"nosniff", "*"},
		},
	})
	// Entries that another writer could have put in the store: statuses
	// and headers that are never stored, which Decode refuses or drops.
	seeds = append(seeds,
		&storage.Entry{Status: 101},
		&storage.Entry{Status: 206},
		&storage.Entry{Status: 999},
		&storage.Entry{Status: 200, Header: http.Header{
			"Set-Cookie":        {"a=b"},
			"Transfer-Encoding": {"chunked"},
			"Connection":        {"X-Hop, Etag"},
			"Etag":              {`"v"`},
			"X-Hop":             {"1"},
			"Trailer":           {"X-Sum"},
			"X-Sum":             {"2"},
			"Surrogate-Key":     {"k"},
			"X-Kept":            {"3"},
		}},
	)
	for _, e := range seeds {
		f.Add(Encode(nil, e))
	}
	// Header forms Encode does not write: wide dates, string date names,
	// names given both ways, unsorted pairs.
	for _, h := range []string{
		"92 ad 6c6173742d6d6f646966696564 d3 0000000068f73600",
		"94 04 0c a4 76617279 0d",
		"96 05 00 02 01 05 cf 0000003afff4417f",
		"94 a4 56617279 0d 02 a3 616263",
		"94 aa 7365742d636f6f6b6965 a3 613d62 00 00",                        // set-cookie: a=b, Content-Type
		"96 a4 54652d41 a1 78 aa 636f6e6e656374696f6e a4 74652d61 19 a1 6b", // Te-A, connection: te-a, Surrogate-Key
	} {
		f.Add(with(1, unhex(h)))
	}
	f.Add(envelopeOf(append(validFields(), mp(map[string]any{"a": []any{1, "x"}}))...))
	f.Add(envelopeOf(append(validFields(), nestedArrays(50))...))
	// The envelopes of other writers among the golden files.
	for _, tt := range goldenCases {
		if tt.raw != nil {
			f.Add(tt.raw())
		}
	}
	f.Add([]byte{})
	f.Add([]byte{2})

	f.Fuzz(func(t *testing.T, data []byte) {
		var e storage.Entry
		if err := Decode(data, &e); err != nil {
			return
		}
		if e.Status < 200 || e.Status > 599 || e.Status == http.StatusPartialContent {
			t.Fatalf("Decode accepted status %d\ndata % x", e.Status, data)
		}
		if kept := StorableHeader(e.Header); !maps.EqualFunc(kept, e.Header, slices.Equal) {
			t.Fatalf("Decode kept headers that are never stored: %q, StorableHeader keeps %q\ndata % x", e.Header, kept, data)
		}
		for name := range e.Header {
			if unstored[name] || strings.HasPrefix(name, http.TrailerPrefix) {
				t.Fatalf("Decode kept %s\ndata % x", name, data)
			}
		}
		first := Encode(nil, &e)
		var again storage.Entry
		if err := Decode(first, &again); err != nil {
			t.Fatalf("Decode(Encode(Decode(data))) = %v\ndata % x\nfirst % x", err, data, first)
		}
		if d := diffEntry(&again, &e); d != "" {
			t.Fatalf("decode, encode, decode changed the entry: %s\ndata % x", d, data)
		}
		if second := Encode(nil, &again); !bytes.Equal(second, first) {
			t.Fatalf("Encode is not stable:\n% x\n% x", first, second)
		}
	})
}

func nestedArrays(depth int) []byte {
	b := bytes.Repeat([]byte{0x91}, depth)
	return append(b, 0xc0)
}

// FuzzHTTPDate checks httpDateSeconds against its definition: s is a
// date exactly when formatting its time with http.TimeFormat gives s.
func FuzzHTTPDate(f *testing.F) {
	for _, s := range []string{
		"Tue, 21 Oct 2025 07:28:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
		"Wed, 21 Oct 2025 07:28:00 GMT", "Thu, 29 Feb 2024 00:00:00 GMT", "Mon, 29 Feb 2100 00:00:00 GMT",
		"Wed, 31 Dec 1969 23:59:59 GMT", "Tue, 21 Oct 2025 24:00:00 GMT", "0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantOK := uint64(0), false
		if tm, err := time.Parse(http.TimeFormat, s); err == nil && tm.Unix() >= 0 && tm.Format(http.TimeFormat) == s {
			want, wantOK = uint64(tm.Unix()), true
		}
		if got, ok := httpDateSeconds(s); got != want || ok != wantOK {
			t.Fatalf("httpDateSeconds(%q) = %d, %t; want %d, %t", s, got, ok, want, wantOK)
		}
	})
}
