package storage

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// FuzzDecode feeds Decode arbitrary bytes. It must never panic, and an
// entry it accepts must survive Encode and Decode again unchanged, with
// Encode reproducing its own output byte for byte.
func FuzzDecode(f *testing.F) {
	seeds := []*Entry{
		{Status: 200},
		typicalEntry(jsonBody(200, 1)),
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
	for _, e := range seeds {
		f.Add(Encode(nil, e))
	}
	f.Add(envelope(append(validFields(), mp(map[string]any{"a": []any{1, "x"}}))...))
	f.Add(envelope(append(validFields(), nestedArrays(50))...))
	f.Add([]byte{})
	f.Add([]byte{2})

	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		if err := Decode(data, &e); err != nil {
			return
		}
		first := Encode(nil, &e)
		var again Entry
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
