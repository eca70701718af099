package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/readthrough/readthrough/internal/testbody"
	"github.com/readthrough/readthrough/storage"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	manyHeaders := http.Header{}
	for i := range 40 {
		manyHeaders.Set(fmt.Sprintf("X-Header-%02d", i), strings.Repeat("v", i*10))
	}
	tests := []struct {
		name string
		give *storage.Entry
		want *storage.Entry // nil: same as give
	}{
		{
			name: "minimal",
			give: &storage.Entry{Status: 200},
			want: &storage.Entry{Status: 200, Stored: time.Time{}, Header: http.Header{}},
		},
		{
			name: "every field",
			give: &storage.Entry{
				Status: 203,
				Header: http.Header{
					"Content-Type":  {"text/html"},
					"Vary":          {"Accept-Encoding", "Accept-Language"},
					"Cache-Control": {"public, max-age=60"},
					"X-Tenant":      {"t-15"},
				},
				Stored:               time.Date(2025, 6, 1, 12, 30, 45, 123e6, time.UTC),
				Fresh:                5 * time.Minute,
				StaleWhileRevalidate: 90 * time.Second,
				StaleIfError:         24 * time.Hour,
				OriginTime:           12345 * time.Microsecond,
				Coding:               "gzip",
				CacheEncoded:         true,
				Body:                 []byte("\x1f\x8b not really gzip"),
			},
		},
		{
			name: "zero time",
			give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Time{}},
		},
		{
			name: "before 1970",
			give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)},
		},
		{
			name: "far future",
			give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
		},
		{
			name: "local zone comes back as UTC",
			give: &storage.Entry{Status: 200, Stored: time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.FixedZone("X", 3600))},
			want: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Date(2025, 1, 2, 2, 4, 5, 6e6, time.UTC)},
		},
		{
			name: "precision truncated",
			give: &storage.Entry{
				Status:               200,
				Stored:               time.UnixMilli(1700000000000).Add(999999 * time.Nanosecond),
				Fresh:                1999 * time.Microsecond,
				StaleWhileRevalidate: 999 * time.Microsecond,
				StaleIfError:         time.Millisecond + 1,
				OriginTime:           1999 * time.Nanosecond,
			},
			want: &storage.Entry{
				Status:       200,
				Header:       http.Header{},
				Stored:       time.UnixMilli(1700000000000),
				Fresh:        time.Millisecond,
				StaleIfError: time.Millisecond,
				OriginTime:   time.Microsecond,
			},
		},
		{
			name: "negative durations become zero",
			give: &storage.Entry{Status: 200, Fresh: -time.Second, StaleWhileRevalidate: -1, StaleIfError: math.MinInt64, OriginTime: -time.Hour},
			want: &storage.Entry{Status: 200, Header: http.Header{}},
		},
		{
			name: "largest durations",
			give: &storage.Entry{
				Status: 200, Header: http.Header{},
				Fresh:      time.Duration(maxMillis) * time.Millisecond,
				OriginTime: time.Duration(maxMicros) * time.Microsecond,
			},
		},
		{
			name: "non-canonical names are canonicalized and merged",
			give: &storage.Entry{Status: 200, Header: http.Header{"content-type": {"a"}, "x-trace-id": {"1"}, "X-Trace-Id": {"2"}}},
			want: &storage.Entry{Status: 200, Header: http.Header{"Content-Type": {"a"}, "X-Trace-Id": {"2", "1"}}},
		},
		{
			name: "names without values are left out",
			give: &storage.Entry{Status: 200, Header: http.Header{"X-Empty": {}, "X-Nil": nil, "X-Blank": {""}}},
			want: &storage.Entry{Status: 200, Header: http.Header{"X-Blank": {""}}},
		},
		{
			name: "many and long headers, big body",
			give: &storage.Entry{
				Status: 500,
				Header: manyHeaders,
				Body:   bytes.Repeat([]byte("0123456789"), 7000),
			},
		},
		{
			name: "other codings kept",
			give: &storage.Entry{Status: 200, Header: http.Header{}, Coding: "br", Body: []byte{}},
		},
		{
			name: "lowest stored status",
			give: &storage.Entry{Status: 200, Header: http.Header{}},
		},
		{
			name: "highest stored status",
			give: &storage.Entry{Status: 599, Header: http.Header{}},
		},
		{
			name: "table names, table values and dates",
			give: &storage.Entry{Status: 200, Header: http.Header{
				"Content-Type":                {"application/json"},
				"Etag":                        {`W/"5"`},
				"Last-Modified":               {"Tue, 21 Oct 2025 07:28:00 GMT"},
				"Expires":                     {"Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"},
				"Vary":                        {"Accept-Encoding", "X-Tenant", "Origin"},
				"Cache-Control":               {"public", "max-age=60"},
				"Access-Control-Allow-Origin": {"*"},
				"Alt-Svc":                     {`h3=":443"; ma=86400`},
				"X-Custom":                    {"nosniff", "0", ""},
			}},
		},
		{
			name: "more dates than Decode keeps at hand",
			give: &storage.Entry{Status: 200, Header: http.Header{
				"Expires": {
					"Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:01 GMT", "Thu, 01 Jan 1970 00:02:08 GMT",
					"Tue, 21 Oct 2025 07:28:00 GMT", "x", "Wed, 22 Oct 2025 07:28:00 GMT",
				},
				"Last-Modified": {"Sat, 01 Jan 2000 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"},
				"X-Custom":      {"Tue, 21 Oct 2025 07:28:00 GMT", "nosniff"},
			}},
		},
		{
			name: "dates that do not round-trip stay strings",
			give: &storage.Entry{Status: 200, Header: http.Header{
				"Last-Modified": {
					"Wed, 21 Oct 2025 07:28:00 GMT",  // wrong weekday
					"tue, 21 Oct 2025 07:28:00 GMT",  // lower case
					"Tue, 21 Oct 2025 07:28:00 UTC",  // another zone name
					"Tue, 21 Oct 2025 7:28:00 GMT",   // one-digit hour
					"Tue, 21 Oct 2025 07:28:00 GMT ", // trailing space
					"Tuesday, 21-Oct-25 07:28:00 GMT",
					"Tue Oct 21 07:28:00 2025",
					"Wed, 31 Dec 1969 23:59:59 GMT", // before 1970
					"Fri, 30 Feb 2024 00:00:00 GMT",
					"Wed, 31 Dec 2025 23:59:60 GMT",
					"public", // in the value table, but not for a date name
				},
				"Expires": {"0", "-1", ""},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.give
			}
			data := Encode(nil, tt.give)
			var got storage.Entry
			if err := Decode(data, &got); err != nil {
				t.Fatalf("Decode: %v\n% x", err, data)
			}
			if d := diffEntry(&got, want); d != "" {
				t.Error(d)
			}
			if got.Header == nil {
				t.Error("Header is nil after Decode")
			}
			if got.Stored.Location() != time.UTC {
				t.Errorf("Stored location = %v, want UTC", got.Stored.Location())
			}
			if again := Encode(nil, &got); !bytes.Equal(again, data) {
				t.Errorf("Encode(Decode(Encode(e))) differs from Encode(e)\n% x\n% x", again, data)
			}
		})
	}
}

func TestEncodeAppends(t *testing.T) {
	e := testbody.Entry([]byte("{}"))
	prefix := []byte("prefix")
	data := Encode(prefix, e)
	if !bytes.HasPrefix(data, prefix) {
		t.Fatalf("Encode dropped dst: %q", data[:10])
	}
	if want := Encode(nil, e); !bytes.Equal(data[len(prefix):], want) {
		t.Errorf("Encode(prefix) = ...% x, want % x", data[len(prefix):], want)
	}
}

// TestEncodeCompact checks that every integer, string, binary and array
// that Encode writes gets its smallest msgpack encoding, at each
// boundary: the msgpack.Encoder calls it uses must be the compact ones.
func TestEncodeCompact(t *testing.T) {
	// An entry with every element 0 or empty but one; stored is 0.
	const (
		head = "01 9a cc c8" // version, array of 10, status 200
		zero = "90 00 00 00 00 00 a0 00 c4 00"
	)
	check := func(t *testing.T, e *storage.Entry, want string) {
		t.Helper()
		e.Status = 200
		if e.Stored.IsZero() {
			e.Stored = time.UnixMilli(0)
		}
		want = strings.ReplaceAll(want, " ", "")
		if got := hex.EncodeToString(Encode(nil, e)); got != want {
			if len(got) > 80 {
				got, want = got[:80]+"...", want[:min(len(want), 80)]+"..."
			}
			t.Errorf("Encode = %s, want %s", got, want)
		}
	}

	uints := []struct {
		give uint64
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "cc80"}, {255, "ccff"}, {256, "cd0100"},
		{65535, "cdffff"}, {65536, "ce00010000"}, {math.MaxUint32, "ceffffffff"},
		{math.MaxUint32 + 1, "cf0000000100000000"}, {uint64(maxMillis), "cf000008637bd05af6"},
	}
	for _, tt := range uints {
		t.Run(fmt.Sprint("uint ", tt.give), func(t *testing.T) {
			// fresh_ms, element 3
			check(t, &storage.Entry{Fresh: time.Duration(tt.give) * time.Millisecond}, head+"90 00"+tt.want+"00 00 00 a0 00 c4 00")
		})
	}
	ints := []struct {
		give int64
		want string
	}{
		{0, "00"}, {127, "7f"}, {128, "cc80"}, {-1, "ff"}, {-32, "e0"}, {-33, "d0df"},
		{-128, "d080"}, {-129, "d1ff7f"}, {math.MinInt16, "d18000"},
		{math.MinInt16 - 1, "d2ffff7fff"}, {math.MinInt32, "d280000000"},
		{math.MinInt32 - 1, "d3ffffffff7fffffff"}, {math.MinInt64, "d38000000000000000"},
		{math.MaxInt64, "cf7fffffffffffffff"},
	}
	for _, tt := range ints {
		t.Run(fmt.Sprint("int ", tt.give), func(t *testing.T) {
			// stored, element 2
			check(t, &storage.Entry{Stored: time.UnixMilli(tt.give)}, head+"90"+tt.want+"00 00 00 00 a0 00 c4 00")
		})
	}
	lengths := []struct {
		give                        int
		wantStr, wantBin, wantArray string // the bytes before the payload
	}{
		{give: 0, wantStr: "a0", wantBin: "c400", wantArray: "90"},
		{give: 14, wantStr: "ae", wantBin: "c40e", wantArray: "9e"},
		{give: 16, wantStr: "b0", wantBin: "c410", wantArray: "dc0010"},
		{give: 30, wantStr: "be", wantBin: "c41e", wantArray: "dc001e"},
		{give: 31, wantStr: "bf", wantBin: "c41f"},
		{give: 32, wantStr: "d920", wantBin: "c420", wantArray: "dc0020"},
		{give: 255, wantStr: "d9ff", wantBin: "c4ff"},
		{give: 256, wantStr: "da0100", wantBin: "c50100", wantArray: "dc0100"},
		{give: 65535, wantStr: "daffff", wantBin: "c5ffff"},
		{give: 65536, wantStr: "db00010000", wantBin: "c600010000", wantArray: "dd00010000"},
	}
	for _, tt := range lengths {
		t.Run(fmt.Sprint("length ", tt.give), func(t *testing.T) {
			p := strings.Repeat("x", tt.give)
			// coding, element 7
			check(t, &storage.Entry{Coding: p}, head+"90 00 00 00 00 00"+tt.wantStr+hex.EncodeToString([]byte(p))+"00 c4 00")
			// body, element 9
			check(t, &storage.Entry{Body: []byte(p)}, head+"90 00 00 00 00 00 a0 00"+tt.wantBin+hex.EncodeToString([]byte(p)))
			if tt.wantArray == "" {
				return
			}
			// headers, element 1: give/2 pairs X-A: ""
			h := http.Header{"X-A": make([]string, tt.give/2)}
			check(t, &storage.Entry{Header: h}, head+tt.wantArray+strings.Repeat("a3582d41a0", tt.give/2)+zero[2:])
		})
	}
	// A nil body is an empty bin too, not msgpack nil.
	check(t, &storage.Entry{Body: nil}, head+zero)
}

// TestEncodeHeaderForms checks how each kind of header name and value is
// written: table positions, dates as seconds, strings otherwise.
func TestEncodeHeaderForms(t *testing.T) {
	lm := "Tue, 21 Oct 2025 07:28:00 GMT"
	hexStr := func(s string) string { return hex.EncodeToString(mp(s)) }
	tests := []struct {
		name, value string
		want        string // the name/value pair
	}{
		{"Content-Type", "application/json", "00 00"},
		{"content-type", "application/json", "00 00"},
		{"Content-Type", "application/json; charset=utf-8", "00 01"},
		{"Content-Type", "Application/JSON", "00" + hexStr("Application/JSON")},
		{"Etag", `"v1"`, "01 a4 22763122"},
		{"ETag", `"v1"`, "01 a4 22763122"},
		{"Last-Modified", lm, "02 ce 68f73600"},
		{"Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT", "02 00"},
		{"Last-Modified", "Thu, 01 Jan 1970 00:02:07 GMT", "02 7f"},
		{"Last-Modified", "Thu, 01 Jan 1970 00:02:08 GMT", "02 cc 80"},
		{"Expires", "Fri, 31 Dec 9999 23:59:59 GMT", "05 cf 0000003afff4417f"},
		{"Expires", "Wed, 21 Oct 2025 07:28:00 GMT", "05" + hexStr("Wed, 21 Oct 2025 07:28:00 GMT")},
		{"Expires", "0", "05 a1 30"}, // "0" is in the value table, but dates never use it
		{"Vary", "Origin", "04 0d"},
		{"Vary", "Accept-Language", "04 24"},
		{"X-Custom", "nosniff", hexStr("X-Custom") + "0e"},
		{"X-Custom", "Tue, 21 Oct 2025 07:28:00 GMT", hexStr("X-Custom") + hexStr(lm)},
		{"X-Content-Type-Options", "nosniff", "12 0e"},
		{"Cdn-Cache-Control", "no-store", "26 28"},
		{"Alt-Svc", `h3=":443"; ma=86400`, "23 3f"},
	}
	for _, tt := range tests {
		t.Run(tt.name+": "+tt.value, func(t *testing.T) {
			e := &storage.Entry{Status: 200, Header: http.Header{tt.name: {tt.value}}}
			data := Encode(nil, e)
			want := "01 9a cc c8 92" + tt.want
			want = strings.ReplaceAll(want, " ", "")
			if got := hex.EncodeToString(data); !strings.HasPrefix(got, want) {
				t.Errorf("Encode = %s..., want %s...", got[:min(len(got), len(want)+4)], want)
			}
			var got storage.Entry
			if err := Decode(data, &got); err != nil {
				t.Fatal(err)
			}
			if v := got.Header.Get(tt.name); v != tt.value || len(got.Header) != 1 {
				t.Errorf("Decode = %q, want %s: %q", got.Header, tt.name, tt.value)
			}
		})
	}
}

// TestDecodeHeaderForms decodes header elements that Encode does not
// write but a reader must accept: dates in wider integer formats or of
// names given as strings, and names given both ways.
func TestDecodeHeaderForms(t *testing.T) {
	tests := []struct {
		name    string
		headers string // the headers element, hex
		want    http.Header
	}{
		{"date as int64 of a string name", "92 ad 6c6173742d6d6f646966696564 d3 0000000068f73600",
			http.Header{"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"}}},
		{"date as uint16", "92 05 cd 0100", http.Header{"Expires": {"Thu, 01 Jan 1970 00:04:16 GMT"}}},
		{"date as int8", "92 05 d0 05", http.Header{"Expires": {"Thu, 01 Jan 1970 00:00:05 GMT"}}},
		{"date as uint64", "92 02 cf 0000003afff4417f", http.Header{"Last-Modified": {"Fri, 31 Dec 9999 23:59:59 GMT"}}},
		{"date string", "92 02 a3 616263", http.Header{"Last-Modified": {"abc"}}},
		{"value index of a string name", "92 a4 76617279 0c", http.Header{"Vary": {"Accept-Encoding"}}},
		{"name given both ways", "94 04 0c a4 76617279 0d", http.Header{"Vary": {"Accept-Encoding", "Origin"}}},
		{"name given both ways, string first", "94 a4 56617279 0d 04 0c", http.Header{"Vary": {"Origin", "Accept-Encoding"}}},
		{"unsorted with dates", "96 05 00 02 01 05 02", http.Header{
			"Expires":       {"Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:02 GMT"},
			"Last-Modified": {"Thu, 01 Jan 1970 00:00:01 GMT"},
		}},
		{"nil value", "92 00 c0", http.Header{"Content-Type": {""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got storage.Entry
			if err := Decode(with(1, unhex(tt.headers)), &got); err != nil {
				t.Fatal(err)
			}
			if !maps.EqualFunc(got.Header, tt.want, slices.Equal) {
				t.Errorf("Header = %q, want %q", got.Header, tt.want)
			}
		})
	}
}

func TestHeaderTables(t *testing.T) {
	for i, n := range headerNames {
		if c := http.CanonicalHeaderKey(n); c != n {
			t.Errorf("headerNames[%d] = %q, not canonical (%q)", i, n, c)
		}
		if int(headerNameIndex[n]) != i {
			t.Errorf("headerNames[%d] = %q appears twice", i, n)
		}
		// The table name that is never stored was stored when it
		// entered the table, which is append-only.
		wantStorable := n != "Surrogate-Control"
		if storable(n) != wantStorable || tableNameStorable[i] != wantStorable {
			t.Errorf("headerNames[%d] = %q: storable %t, tableNameStorable %t, want %t", i, n, storable(n), tableNameStorable[i], wantStorable)
		}
		if isDateName(n) != (i == nameLastModified || i == nameExpires) {
			t.Errorf("isDateName(%q) = %t", n, isDateName(n))
		}
	}
	if headerNames[nameLastModified] != "Last-Modified" || headerNames[nameExpires] != "Expires" {
		t.Errorf("date names at %d and %d are %q and %q", nameLastModified, nameExpires, headerNames[nameLastModified], headerNames[nameExpires])
	}
	for i, v := range headerValues {
		if int(headerValueIndex[v]) != i {
			t.Errorf("headerValues[%d] = %q appears twice", i, v)
		}
		if _, ok := httpDateSeconds(v); ok {
			t.Errorf("headerValues[%d] = %q is a date", i, v)
		}
	}
	for _, n := range []string{"LAST-MODIFIED", "expires", "Last-Modified", "Expires"} {
		if !isDateName(n) || !isDateName([]byte(n)) {
			t.Errorf("isDateName(%q) = false", n)
		}
	}
	for _, n := range []string{"Date", "Last-Modifie", "Expiresx", "Laſt-Modified", "Last_Modified"} {
		if isDateName(n) {
			t.Errorf("isDateName(%q) = true", n)
		}
	}
}

// TestEnvelopeDocTables checks that the tables in ENVELOPE.md, and the
// lists in its Python reader, are headerNames and headerValues.
func TestEnvelopeDocTables(t *testing.T) {
	doc, err := os.ReadFile("ENVELOPE.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		heading, list string
		want          []string
	}{
		{"### Name table", "NAMES", headerNames[:]},
		{"### Value table", "VALUES", headerValues[:]},
	} {
		_, sect, ok := strings.Cut(string(doc), "\n"+tt.heading+"\n")
		if !ok {
			t.Fatalf("ENVELOPE.md has no %q", tt.heading)
		}
		if i := strings.Index(sect, "\n#"); i >= 0 {
			sect = sect[:i]
		}
		var rows []string
		for line := range strings.Lines(sect) {
			// | 12 | `Accept-Encoding` |
			cells := strings.Split(strings.TrimSpace(line), "|")
			if len(cells) != 4 || strings.TrimSpace(cells[1]) != fmt.Sprint(len(rows)) {
				continue
			}
			v := strings.TrimSpace(cells[2])
			if len(v) < 2 || v[0] != '`' || v[len(v)-1] != '`' {
				t.Errorf("%s row %d: %q is not in backquotes", tt.heading, len(rows), v)
			}
			rows = append(rows, strings.Trim(v, "`"))
		}
		if !slices.Equal(rows, tt.want) {
			t.Errorf("ENVELOPE.md %s:\n%q\nwant\n%q", tt.heading, rows, tt.want)
		}

		_, py, ok := strings.Cut(string(doc), "\n"+tt.list+" = [\n")
		py, _, ok2 := strings.Cut(py, "\n]\n")
		if !ok || !ok2 {
			t.Fatalf("ENVELOPE.md has no Python list %s", tt.list)
		}
		var items []string
		for line := range strings.Lines(py) {
			line = strings.TrimSpace(line)
			line, _, _ = strings.Cut(line, "  #")
			for line != "" {
				q := line[0]
				end := strings.IndexByte(line[1:], q)
				if q != '"' && q != '\'' || end < 0 {
					t.Fatalf("Python list %s: cannot read %q", tt.list, line)
				}
				items = append(items, line[1:1+end])
				line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[2+end:]), ","))
			}
		}
		if !slices.Equal(items, tt.want) {
			t.Errorf("ENVELOPE.md Python %s:\n%q\nwant\n%q", tt.list, items, tt.want)
		}
	}
}

// TestHTTPDateSeconds checks httpDateSeconds against its definition: s
// is a date if formatting its time with http.TimeFormat gives s again.
func TestHTTPDateSeconds(t *testing.T) {
	oracle := func(s string) (uint64, bool) {
		tm, err := time.Parse(http.TimeFormat, s)
		if err != nil || tm.Unix() < 0 || tm.Format(http.TimeFormat) != s {
			return 0, false
		}
		return uint64(tm.Unix()), true
	}
	rng := rand.New(rand.NewPCG(9, 9))
	secs := []int64{0, 1, 59, 86399, 86400, 951782400 /* 2000-02-29 */, 4107542399 /* 2100-02-28T23:59:59 */, maxHTTPDate - 1, maxHTTPDate}
	for range 300 {
		secs = append(secs, rng.Int64N(maxHTTPDate+1))
	}
	mutations := "0129 ,:-GMTaZz\x00\xff"
	for _, v := range secs {
		s := time.Unix(v, 0).UTC().Format(http.TimeFormat)
		if got := string(appendHTTPDate(nil, v)); got != s || len(got) != httpDateLen {
			t.Fatalf("appendHTTPDate(%d) = %q, want %q", v, got, s)
		}
		if got, ok := httpDateSeconds(s); !ok || got != uint64(v) {
			t.Fatalf("httpDateSeconds(%q) = %d, %t; want %d", s, got, ok, v)
		}
		// One byte changed: accepted exactly when the oracle accepts it.
		for i := range len(s) {
			for j := range len(mutations) {
				b := []byte(s)
				b[i] = mutations[j]
				want, wantOK := oracle(string(b))
				if got, ok := httpDateSeconds(string(b)); got != want || ok != wantOK {
					t.Fatalf("httpDateSeconds(%q) = %d, %t; want %d, %t", b, got, ok, want, wantOK)
				}
			}
		}
	}
	// appendHTTPDate over the whole range, every 13th day at some time of
	// day.
	for days := int64(0); days <= maxHTTPDate/86400; days += 13 {
		v := days*86400 + days*7919%86400
		if got, want := string(appendHTTPDate(nil, v)), time.Unix(v, 0).UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("appendHTTPDate(%d) = %q, want %q", v, got, want)
		}
	}
	// Every day of a few years around the leap-year rules, with the
	// neighbouring weekdays and days of month.
	for _, y := range []int{1970, 1999, 2000, 2024, 2100, 2400, 9999} {
		for d := time.Date(y, 1, 1, 12, 0, 0, 0, time.UTC); d.Year() == y; d = d.AddDate(0, 0, 1) {
			s := d.Format(http.TimeFormat)
			for _, alt := range []string{s, s[:5] + fmt.Sprintf("%02d", d.Day()+1) + s[7:], "Mon" + s[3:], "Sun" + s[3:]} {
				want, wantOK := oracle(alt)
				if got, ok := httpDateSeconds(alt); got != want || ok != wantOK {
					t.Fatalf("httpDateSeconds(%q) = %d, %t; want %d, %t", alt, got, ok, want, wantOK)
				}
			}
		}
	}
	for _, s := range []string{"", "0", "-1", "Sat, 01 Jan 10000 00:00:00 GMT", "Wed, 31 Dec 1969 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT"} {
		if v, ok := httpDateSeconds(s); ok {
			t.Errorf("httpDateSeconds(%q) = %d, true", s, v)
		}
	}
}

// docExample is the entry whose envelope ENVELOPE.md shows byte by byte.
var docExample = &storage.Entry{
	Status: 200,
	Header: http.Header{
		"Content-Type":  {"application/json"},
		"Etag":          {`"v1"`},
		"Last-Modified": {"Tue, 21 Oct 2025 07:00:00 GMT"},
		"Vary":          {"Accept-Encoding", "Accept-Language"},
		"X-Shard":       {"eu-1"},
	},
	Stored:               time.UnixMilli(1761031680123).UTC(), // 2025-10-21T07:28:00.123Z
	Fresh:                5 * time.Minute,
	StaleWhileRevalidate: 30 * time.Second,
	StaleIfError:         0,
	OriginTime:           1500 * time.Microsecond,
	Coding:               "",
	CacheEncoded:         false,
	Body:                 []byte(`{"id":15}`),
}

// TestEnvelopeDocExample keeps the hex example in ENVELOPE.md true: it
// must decode to docExample, and Encode must produce exactly it.
func TestEnvelopeDocExample(t *testing.T) {
	doc, err := os.ReadFile("ENVELOPE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```hex\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("ENVELOPE.md has no ```hex block")
	}
	var digits strings.Builder
	for line := range strings.Lines(block) {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	data, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("ENVELOPE.md hex: %v", err)
	}
	var got storage.Entry
	if err := Decode(data, &got); err != nil {
		t.Fatalf("Decode(ENVELOPE.md example): %v", err)
	}
	if d := diffEntry(&got, docExample); d != "" {
		t.Error(d)
	}
	if enc := Encode(nil, docExample); !bytes.Equal(enc, data) {
		t.Errorf("Encode(docExample) differs from ENVELOPE.md:\n%s", hex.Dump(enc))
	}
}

// TestEncodeIsMsgpack reads an envelope with another msgpack library.
func TestEncodeIsMsgpack(t *testing.T) {
	e := testbody.Entry(testbody.JSON(300, 1))
	e.Coding, e.CacheEncoded = "gzip", true
	data := Encode(nil, e)
	if data[0] != 1 {
		t.Fatalf("version byte = %d, want 1", data[0])
	}
	var got []any
	if err := msgpack.Unmarshal(data[1:], &got); err != nil {
		t.Fatalf("msgpack.Unmarshal: %v", err)
	}
	want := []any{
		int64(200),
		[]any{
			int64(0), int64(1), // Content-Type: application/json; charset=utf-8
			int64(1), `"33a64df551425fcc55e4d42a148795d9f25f89d4"`, // Etag
			int64(2), int64(1761031680), // Last-Modified: Tue, 21 Oct 2025 07:28:00 GMT
		},
		int64(1761031680123), int64(300000), int64(60000), int64(3600000), int64(12345),
		"gzip", int64(1), e.Body,
	}
	// msgpack/v5 returns the smallest Go type for small integers.
	got[1] = widen(got[1].([]any))
	got = widen(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("msgpack sees\n%#v\nwant\n%#v", got, want)
	}
}

// widen turns the integers msgpack/v5 returns, of the smallest Go type
// that holds them, into int64s.
func widen(a []any) []any {
	for i, v := range a {
		switch n := v.(type) {
		case int8:
			a[i] = int64(n)
		case uint8:
			a[i] = int64(n)
		case int16:
			a[i] = int64(n)
		case uint16:
			a[i] = int64(n)
		case int32:
			a[i] = int64(n)
		case uint32:
			a[i] = int64(n)
		case uint64:
			a[i] = int64(n)
		}
	}
	return a
}

// TestDecodeForeignWriter decodes envelopes written with the msgpack/v5
// library the way another service might: wide integers, str for bin and
// bin for str, and elements added after the ten of version 1.
func TestDecodeForeignWriter(t *testing.T) {
	want := &storage.Entry{
		Status:               404,
		Header:               http.Header{"Content-Type": {"text/plain"}, "X-A": {"1", "2"}},
		Stored:               time.UnixMilli(1700000000001).UTC(),
		Fresh:                time.Second,
		StaleWhileRevalidate: 2 * time.Second,
		StaleIfError:         3 * time.Second,
		OriginTime:           4 * time.Microsecond,
		Coding:               "zstd",
		CacheEncoded:         true,
		Body:                 []byte("body"),
	}
	tests := []struct {
		name  string
		write func(enc *msgpack.Encoder)
	}{
		{
			name: "wide integers",
			write: func(enc *msgpack.Encoder) {
				enc.EncodeArrayLen(10)
				enc.EncodeInt64(404)
				enc.EncodeArrayLen(6)
				for _, s := range []string{"content-type", "text/plain", "x-a", "1", "X-A", "2"} {
					enc.EncodeString(s)
				}
				enc.EncodeUint64(1700000000001)
				enc.EncodeInt64(1000)
				enc.EncodeUint64(2000)
				enc.EncodeInt64(3000)
				enc.EncodeInt64(4)
				enc.EncodeString("zstd")
				enc.EncodeUint64(1 | 1<<40) // unknown flag bits are ignored
				enc.EncodeBytes([]byte("body"))
			},
		},
		{
			name: "str and bin swapped, extra elements",
			write: func(enc *msgpack.Encoder) {
				enc.EncodeArrayLen(17)
				enc.EncodeUint(404)
				enc.EncodeArrayLen(6)
				for _, s := range []string{"Content-Type", "text/plain", "X-A", "1", "X-A", "2"} {
					enc.EncodeBytes([]byte(s))
				}
				enc.EncodeInt(1700000000001)
				enc.EncodeUint(1000)
				enc.EncodeUint(2000)
				enc.EncodeUint(3000)
				enc.EncodeUint(4)
				enc.EncodeBytes([]byte("zstd"))
				enc.EncodeUint(1)
				enc.EncodeString("body")
				// Seven extras of every kind.
				enc.Encode(map[string]any{"a": []any{1, "x", nil, true, 1.5, float32(2.5)}, "b": map[string]int{"c": 1}})
				enc.Encode(time.Unix(1, 2)) // an ext value
				enc.Encode(strings.Repeat("s", 70000))
				enc.EncodeNil()
				enc.Encode([]any{[]any{[]any{}}, bytes.Repeat([]byte{1}, 300)})
				enc.EncodeExtHeader(5, 300)
				enc.Writer().Write(make([]byte, 300))
				enc.EncodeInt64(-5)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			buf.WriteByte(1)
			tt.write(msgpack.NewEncoder(&buf))
			var got storage.Entry
			if err := Decode(buf.Bytes(), &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := diffEntry(&got, want); d != "" {
				t.Error(d)
			}
		})
	}
}

// mp is v in msgpack, written by the msgpack/v5 library.
func mp(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// unhexAll decodes the |-separated hex values in groups, one slice each.
func unhexAll(groups ...string) [][]byte {
	var out [][]byte
	for _, g := range groups {
		for v := range strings.SplitSeq(g, "|") {
			out = append(out, unhex(v))
		}
	}
	return out
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// envelopeOf is a version 1 envelope of the raw msgpack elements elems.
func envelopeOf(elems ...[]byte) []byte {
	return rawEnvelope(len(elems), func(enc *msgpack.Encoder) {
		for _, el := range elems {
			enc.Writer().Write(el)
		}
	})
}

// mpUint is v in the smallest msgpack encoding.
func mpUint(v uint64) []byte {
	var buf bytes.Buffer
	msgpack.NewEncoder(&buf).EncodeUint(v)
	return buf.Bytes()
}

// validFields are the elements of a valid envelope, for tests to change
// one of.
func validFields() [][]byte {
	return [][]byte{
		mp(200), mp([]string{"Content-Type", "text/plain"}), mp(1700000000000), mp(60000),
		mp(0), mp(0), mp(1500), mp(""), mp(0), mp([]byte("hi")),
	}
}

// with is a valid envelope with element i replaced by raw.
func with(i int, raw []byte) []byte {
	f := validFields()
	f[i] = raw
	return envelopeOf(f...)
}

func TestDecodeCorrupt(t *testing.T) {
	const (
		status = iota
		headers
		stored
		fresh
		swr
		sie
		origin
		coding
		flags
		body
	)
	nested := func(depth int, end []byte) []byte {
		return slices.Concat(bytes.Repeat([]byte{0x91}, depth), end)
	}
	tests := []struct {
		name string
		give []byte
	}{
		{"empty", nil},
		{"version only", []byte{1}},
		{"not an array", append([]byte{1}, mp(map[string]int{"a": 1})...)},
		{"nine elements", envelopeOf(validFields()[:9]...)},
		{"no elements", envelopeOf()},
		{"array16 longer than input", slices.Concat([]byte{1, 0xdc, 0xff, 0xff}, slices.Concat(validFields()...))},
		{"array32 longer than input", slices.Concat([]byte{1, 0xdd, 0xff, 0xff, 0xff, 0xff}, slices.Concat(validFields()...))},
		{"status string", with(status, mp("200"))},
		{"status negative", with(status, mp(-200))},
		{"status negative fixint", with(status, []byte{0xff})},
		{"status 0", with(status, mp(0))},
		{"status 99", with(status, mp(99))},
		{"status 1000", with(status, mp(1000))},
		{"status 101", with(status, mp(101))},
		{"status 206", with(status, mp(206))},
		{"status 600", with(status, mp(600))},
		{"status 999 as uint64", with(status, unhex("cf 00000000000003e7"))},
		{"status max uint64", with(status, unhex("cf ffffffffffffffff"))},
		{"status float", with(status, mp(200.0))},
		{"status nil", with(status, []byte{0xc0})},
		{"status truncated uint16", slices.Concat([]byte{1, 0x9a, 0xcd, 0x01})},
		{"headers map", with(headers, mp(map[string]string{"A": "b"}))},
		{"headers odd", with(headers, mp([]string{"Content-Type"}))},
		{"header name past the table", with(headers, mp([]any{len(headerNames), "x"}))},
		{"header name 127", with(headers, unhex("92 7f a1 78"))},
		{"header name uint8", with(headers, unhex("92 cc 01 a1 78"))},
		{"header name negative fixint", with(headers, unhex("92 ff a1 78"))},
		{"header name bool", with(headers, unhex("92 c3 a1 78"))},
		{"header value past the table", with(headers, mp([]any{"X-A", len(headerValues)}))},
		{"header value 127", with(headers, unhex("92 a3 582d41 7f"))},
		{"header value uint8", with(headers, unhex("92 a3 582d41 cc 01"))},
		{"header value negative", with(headers, unhex("92 a3 582d41 ff"))},
		{"header value float", with(headers, unhex("92 a3 582d41 ca 00000000"))},
		{"date negative", with(headers, unhex("92 02 ff"))},
		{"date negative int64", with(headers, unhex("92 02 d3 ffffffffffffffff"))},
		{"date past 9999", with(headers, mp([]any{2, int64(maxHTTPDate + 1)}))},
		{"date uint64 huge", with(headers, unhex("92 05 cf ffffffffffffffff"))},
		{"date float", with(headers, unhex("92 02 cb 0000000000000000"))},
		{"date truncated uint32", with(headers, unhex("92 02 ce 0000"))},
		{"date past 9999 of a string name", with(headers, unhex("92 a7 45787069726573 cf 0000003afff44180"))}, // "Expires"
		{"header value array", with(headers, mp([]any{"A", []string{"x"}}))},
		{"headers array32 huge", with(headers, unhex("dd 7fffffff a1 41 a1 42"))},
		{"header str32 huge", with(headers, unhex("92 db ffffffff 41 a1 42"))},
		{"header str16 past end", with(headers, unhex("92 da 0100 41 a1 42"))},
		{"stored string", with(stored, mp("now"))},
		{"stored too big", with(stored, unhex("cf 8000000000000000"))},
		{"stored float", with(stored, mp(1.5))},
		{"fresh negative", with(fresh, mp(-1))},
		{"fresh overflows Duration", with(fresh, mp(uint64(maxMillis+1)))},
		{"swr overflows Duration", with(swr, mp(uint64(math.MaxUint64)))},
		{"sie bool", with(sie, mp(true))},
		{"origin overflows Duration", with(origin, mp(uint64(maxMicros+1)))},
		{"coding int", with(coding, mp(1))},
		{"coding with space", with(coding, mp("gz ip"))},
		{"coding with CRLF", with(coding, mp("gzip\r\nSet-Cookie: a=b"))},
		{"coding non-ASCII", with(coding, mp("gzíp"))},
		{"flags negative", with(flags, mp(-1))},
		{"flags string", with(flags, mp("1"))},
		{"body int", with(body, mp(5))},
		{"body array", with(body, mp([]int{1}))},
		{"body bin32 huge", with(body, unhex("c6 ffffffff 00"))},
		{"body bin16 past end", with(body, unhex("c5 0010 00"))},
		{"body bin8 past end", with(body, unhex("c4 02 00"))},
		{"trailing byte", append(envelopeOf(validFields()...), 0)},
		{"trailing envelope", slices.Concat(envelopeOf(validFields()...), envelopeOf(validFields()...))},
		{"extra element missing", slices.Concat([]byte{1, 0x9b}, slices.Concat(validFields()...))},
		{"extra element never-used byte", envelopeOf(append(validFields(), []byte{0xc1})...)},
		{"extra array32 huge", envelopeOf(append(validFields(), unhex("dd ffffffff 00"))...)},
		{"extra map16 short", envelopeOf(append(validFields(), unhex("de 0002 01 02 03"))...)},
		{"extra str32 huge", envelopeOf(append(validFields(), unhex("db ffffffff 00"))...)},
		{"extra ext8 short", envelopeOf(append(validFields(), unhex("c7 05 01 00"))...)},
		{"extra fixext16 short", envelopeOf(append(validFields(), unhex("d8 01 00"))...)},
		{"extra float64 short", envelopeOf(append(validFields(), unhex("cb 00"))...)},
		{"extra deeply nested, unterminated", envelopeOf(append(validFields(), nested(100000, nil))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e storage.Entry
			err := Decode(tt.give, &e)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(% .40x) = %v, want ErrCorrupt", tt.give, err)
			}
			if errors.Is(err, ErrVersion) {
				t.Errorf("Decode = %v, matches ErrVersion too", err)
			}
		})
	}

	// The same machinery accepts well-formed extras, however nested.
	valid := []struct {
		name string
		give []byte
	}{
		{"ten valid fields", envelopeOf(validFields()...)},
		{"extra deeply nested", envelopeOf(append(validFields(), nested(100000, []byte{0xc0}))...)},
		{"extras of every type", envelopeOf(append(validFields(), unhexAll(
			"c0|c2|c3|7f|e0|cc01|cd0102|ce01020304|cf0102030405060708|d001|d10102|d201020304|d30102030405060708",
			"ca01020304|cb0102030405060708|d40100|d5010000|d60100000000|d7010000000000000000|d80100000000000000000000000000000000",
			"c40100|c5000100|c60000000100|d90141|da000141|db0000000141|c7010500|c800010500|c90000000105 00",
			"80|81a16190|de00010102|df000000010102|dc000101|dd0000000101|a3616263",
		)...)...)},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			var e storage.Entry
			if err := Decode(tt.give, &e); err != nil {
				t.Fatalf("Decode = %v, want nil", err)
			}
		})
	}
}

// TestDecodeStatus: an entry in the store may have been written by
// anything with access to Redis, so Decode applies the rule for stored
// statuses (final, 200-599, and never 206 Partial Content) rather than
// serve a 101 or a 999 to clients.
func TestDecodeStatus(t *testing.T) {
	tests := []struct {
		give   int
		wantOK bool
	}{
		{give: 200, wantOK: true},
		{give: 203, wantOK: true},
		{give: 204, wantOK: true},
		{give: 304, wantOK: true},
		{give: 404, wantOK: true},
		{give: 503, wantOK: true},
		{give: 599, wantOK: true},
		{give: 100},
		{give: 101},
		{give: 103},
		{give: 199},
		{give: 206},
		{give: 600},
		{give: 999},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.give), func(t *testing.T) {
			data := Encode(nil, testbody.Entry([]byte("x")))
			data = slices.Concat(data[:2], mpUint(uint64(tt.give)), data[2+len(mpUint(200)):])
			e := *testbody.Entry([]byte("before"))
			err := Decode(data, &e)
			if tt.wantOK {
				if err != nil || e.Status != tt.give {
					t.Fatalf("Decode = %v, status %d; want status %d", err, e.Status, tt.give)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.give)) {
				t.Errorf("error %q does not name status %d", err, tt.give)
			}
			if e.Status != 200 || string(e.Body) != "before" {
				t.Errorf("a refused status changed the entry: %d %q", e.Status, e.Body)
			}
		})
	}
}

// TestDecodeDropsUnstorableHeaders: Decode drops every header that
// StorableHeader would not have stored, however the envelope spells it,
// so that an entry written by an older release, an operator or an
// attacker cannot make the cache send Set-Cookie, framing headers or
// trailers to every client.
func TestDecodeDropsUnstorableHeaders(t *testing.T) {
	const headers = 1
	tests := []struct {
		name string
		give []any // the headers element: names and values, as strings or table positions
		want http.Header
	}{
		{
			name: "Set-Cookie",
			give: []any{"Content-Type", "text/plain", "Set-Cookie", "session=victim"},
			want: http.Header{"Content-Type": {"text/plain"}},
		},
		{
			name: "set-cookie in lower case",
			give: []any{"set-cookie", "session=victim", "x-kept", "1"},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "Set-Cookie in mixed case, unsorted, several values",
			give: []any{"X-Kept", "1", "SET-COOKIE", "a=b", 0, 0, "Set-cookie", "c=d", "Set-Cookie2", "e=f"},
			want: http.Header{"X-Kept": {"1"}, "Content-Type": {"application/json"}},
		},
		{
			name: "Transfer-Encoding",
			give: []any{"Transfer-Encoding", "chunked", "Content-Type", "text/plain"},
			want: http.Header{"Content-Type": {"text/plain"}},
		},
		{
			name: "Connection and the names it lists",
			give: []any{"Connection", "X-Foo", "X-Bar", "2", "X-Foo", "1"},
			want: http.Header{"X-Bar": {"2"}},
		},
		{
			name: "Connection listed after the names, in lower case, with other tokens",
			give: []any{"X-Foo", "1", "Etag", `"v"`, "connection", "close, x-foo,, Etag", "Connection", " keep-alive "},
			want: http.Header{},
		},
		{
			name: "Connection listing a table name",
			give: []any{"Connection", "Content-Type", 0, 0, "X-Kept", "1"},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "Trailer and the names it lists",
			give: []any{"Trailer", "X-Checksum, X-Count", "X-Checksum", "abc", "X-Count", "2", "X-Kept", "1"},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "TrailerPrefix names",
			give: []any{http.TrailerPrefix + "X-Late", "1", "X-Kept", "1"},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "per-response headers",
			give: []any{"Date", "Tue, 21 Oct 2025 07:28:00 GMT", "Age", "100000", "Content-Length", "5",
				"Content-Encoding", "gzip", "Cache-Status", "evil; hit", "Expires", "0"},
			want: http.Header{"Expires": {"0"}},
		},
		{
			name: "hop-by-hop headers",
			give: []any{"Keep-Alive", "timeout=5", "Proxy-Connection", "keep-alive", "Proxy-Authenticate", "Basic",
				"Proxy-Authorization", "Basic eA==", "Te", "trailers", "Upgrade", "websocket", "Vary", 12},
			want: http.Header{"Vary": {"Accept-Encoding"}},
		},
		{
			name: "Surrogate-Control as a table position, Surrogate-Key kept",
			give: []any{0, 1, 25, "user-15", 26, "max-age=60"},
			want: http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Surrogate-Key": {"user-15"}},
		},
		{
			name: "Surrogate-Control as a string",
			give: []any{"surrogate-key", "user-15", "Surrogate-Control", "no-store", "X-Kept", "1"},
			want: http.Header{"X-Kept": {"1"}, "Surrogate-Key": {"user-15"}},
		},
		{
			name: "Content-Range is a storable header",
			give: []any{37, "bytes 0-1/2", 11, 16},
			want: http.Header{"Content-Range": {"bytes 0-1/2"}, "Accept-Ranges": {"bytes"}},
		},
		{
			name: "only unstorable headers",
			give: []any{"Set-Cookie", "a=b"},
			want: http.Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := with(headers, mp(tt.give))
			for _, reuse := range []bool{false, true} {
				var e storage.Entry
				if reuse {
					e.Header = http.Header{"Set-Cookie": {"left over"}, "X-Old": {"1"}}
				}
				if err := Decode(data, &e); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !maps.EqualFunc(e.Header, tt.want, slices.Equal) {
					t.Errorf("reuse %t: Header = %q, want %q", reuse, e.Header, tt.want)
				}
			}
		})
	}

	// Every name StorableHeader drops by name, given as a string.
	for name := range unstored {
		for _, spelling := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			var e storage.Entry
			if err := Decode(with(headers, mp([]any{spelling, "v", "X-Kept", "1"})), &e); err != nil {
				t.Fatalf("%s: %v", spelling, err)
			}
			if want := (http.Header{"X-Kept": {"1"}}); !maps.EqualFunc(e.Header, want, slices.Equal) {
				t.Errorf("%s: Header = %q, want %q", spelling, e.Header, want)
			}
		}
	}
}

// TestDecodeTruncated cuts valid envelopes at every byte.
func TestDecodeTruncated(t *testing.T) {
	big := testbody.Entry(bytes.Repeat([]byte("a"), 300))
	big.Header.Set("X-Long", strings.Repeat("v", 300))
	tests := []struct {
		name string
		give []byte
	}{
		{"minimal", Encode(nil, &storage.Entry{Status: 200})},
		{"typical", Encode(nil, testbody.Entry(testbody.JSON(200, 1)))},
		{"long strings", Encode(nil, big)},
		{"with extras", envelopeOf(append(validFields(), mp(map[string]any{"a": []any{1, "xyz", 2.5}}), mp(time.Unix(1, 0)))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e storage.Entry
			if err := Decode(tt.give, &e); err != nil {
				t.Fatalf("full envelope: %v", err)
			}
			for i := range len(tt.give) {
				if err := Decode(tt.give[:i], &e); !errors.Is(err, ErrCorrupt) {
					t.Errorf("Decode(first %d of %d bytes) = %v, want ErrCorrupt", i, len(tt.give), err)
				}
			}
		})
	}
}

func TestDecodeVersion(t *testing.T) {
	valid := Encode(nil, testbody.Entry([]byte("x")))
	for _, v := range []byte{0, 3, 0x9a, 0xff} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			data := append([]byte{v}, valid[1:]...)
			err := Decode(data, &storage.Entry{})
			if !errors.Is(err, ErrVersion) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode = %v, want ErrVersion only", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(v)) {
				t.Errorf("error %q does not name version %d", err, v)
			}
		})
	}
}

// Entries in the dictionary coding carry version 2, which readers that
// know only version 1 turn into misses; the layout is version 1's, and
// both decode.
func TestVersionDictionary(t *testing.T) {
	for _, tt := range []struct {
		coding  string
		version byte
	}{
		{"", Version},
		{"gzip", Version},
		{DictionaryCoding, VersionDictionary},
	} {
		e := testbody.Entry([]byte("body"))
		e.Coding, e.CacheEncoded = tt.coding, tt.coding != ""
		data := Encode(nil, e)
		if data[0] != tt.version {
			t.Errorf("coding %q: version byte %d, want %d", tt.coding, data[0], tt.version)
		}
		var got storage.Entry
		if err := Decode(data, &got); err != nil {
			t.Fatalf("coding %q: Decode = %v", tt.coding, err)
		}
		if got.Coding != tt.coding || string(got.Body) != "body" {
			t.Errorf("coding %q: decoded coding %q body %q", tt.coding, got.Coding, got.Body)
		}
		if tt.version != Version {
			// The layout is version 1's: the same bytes after the first
			// decode as version 1. (A version-1-only reader stops at the
			// first byte: see TestDecodeVersion.)
			v1 := append([]byte{Version}, data[1:]...)
			if err := Decode(v1, &got); err != nil {
				t.Errorf("coding %q: same layout under version 1: %v", tt.coding, err)
			}
		}
	}
}

func TestDecodeReusesHeader(t *testing.T) {
	data := Encode(nil, testbody.Entry([]byte("x")))
	h := http.Header{"X-Old": {"1"}, "Content-Type": {"text/old"}}
	e := storage.Entry{Header: h}
	if err := Decode(data, &e); err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(e.Header).UnsafePointer() != reflect.ValueOf(h).UnsafePointer() {
		t.Error("Decode replaced a non-nil Header map")
	}
	if d := diffEntry(&e, testbody.Entry([]byte("x"))); d != "" {
		t.Error(d)
	}
}

func TestDecodeErrorLeavesEntry(t *testing.T) {
	data := Encode(nil, testbody.Entry(testbody.JSON(300, 2)))
	orig := testbody.Entry([]byte("before"))
	orig.Header.Set("X-Before", "1")
	for i := range len(data) {
		e := *orig
		e.Header = orig.Header.Clone()
		if err := Decode(data[:i], &e); err == nil {
			t.Fatalf("Decode of %d bytes succeeded", i)
		}
		if d := diffEntry(&e, orig); d != "" {
			t.Fatalf("Decode of %d bytes changed the entry: %s", i, d)
		}
	}
}

func TestDecodeAliasing(t *testing.T) {
	e := testbody.Entry([]byte("hello body"))
	e.Header["Vary"] = []string{"A", "B"}
	data := Encode(nil, e)
	var got storage.Entry
	if err := Decode(data, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[len(data)-len(got.Body):], got.Body) || &data[len(data)-1] != &got.Body[len(got.Body)-1] {
		t.Error("Body does not alias data")
	}
	if cap(got.Body) != len(got.Body) {
		t.Errorf("cap(Body) = %d, want %d", cap(got.Body), len(got.Body))
	}
	// Appending to one name's values must not reach another's.
	for k := range got.Header {
		_ = append(got.Header[k], "clobber")
	}
	if !maps.EqualFunc(got.Header, e.Header, slices.Equal) {
		t.Errorf("after appending to each name, Header = %q, want %q", got.Header, e.Header)
	}
	// Header strings are copies: changing data must not change them.
	clear(data)
	if got.Header.Get("Last-Modified") != e.Header.Get("Last-Modified") {
		t.Error("header strings alias data")
	}
}

// TestConcurrentUse runs the pooled encoders and decoders from many
// goroutines, for -race: each goroutine's entries must come back intact,
// including after a failed Decode has returned its decoder to the pool.
func TestConcurrentUse(t *testing.T) {
	bodies := [][]byte{testbody.JSON(300, 1), testbody.JSON(3000, 2), testbody.JSON(40000, 3)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var buf []byte
			for i := range 50 {
				want := testbody.Entry(bodies[(g+i)%len(bodies)])
				want.Header.Set("X-Goroutine", fmt.Sprint(g, i))
				buf = Encode(buf[:0], want)
				if i%3 == 0 {
					if err := Decode(buf[:len(buf)/2], &storage.Entry{}); !errors.Is(err, ErrCorrupt) {
						t.Errorf("Decode of half an envelope = %v", err)
						return
					}
				}
				var got storage.Entry
				if err := Decode(buf, &got); err != nil {
					t.Error(err)
					return
				}
				if d := diffEntry(&got, want); d != "" {
					t.Error(d)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestPooledCodersReset: Encode and Decode share msgpack/v5's pools of
// encoders and decoders with any other user of the library in the
// process, who may leave settings on them (interned strings, a dict)
// that would change the bytes; Encode and Decode must reset them.
func TestPooledCodersReset(t *testing.T) {
	want, err := os.ReadFile("testdata/doc-example.golden")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		enc := msgpack.GetEncoder()
		enc.ResetDict(nil, map[string]int{"Content-Type": 0, `"v1"`: 1})
		enc.UseInternedStrings(true)
		enc.UseCompactInts(false)
		msgpack.PutEncoder(enc)
		dec := msgpack.GetDecoder()
		dec.ResetDict(nil, []string{"x"})
		dec.UseInternedStrings(true)
		msgpack.PutDecoder(dec)

		data := Encode(nil, docExample)
		var got storage.Entry
		if err := Decode(data, &got); err != nil {
			t.Fatal(err)
		}
		if d := diffEntry(&got, docExample); d != "" {
			t.Fatal(d)
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("Encode after a dirty pool = % x, want % x", data, want)
		}
	}
}

// TestEnvelopeSizes records the size of typical envelopes (run with -v)
// and keeps the envelope's own overhead small: everything but the body,
// for a response with the three headers most JSON APIs send.
func TestEnvelopeSizes(t *testing.T) {
	for _, tt := range []struct {
		body        []byte
		maxOverhead int // envelope minus body
	}{
		{testbody.JSON(194, 1), 56},
		{testbody.Realistic, 56},
		{testbody.JSON(2048, 1), 56},
	} {
		e := &storage.Entry{
			Status: http.StatusOK,
			Header: http.Header{
				"Content-Type":  {"application/json"},
				"Etag":          {`"abc123"`},
				"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"},
			},
			Stored:               time.UnixMilli(1761031680123).UTC(),
			Fresh:                5 * time.Minute,
			StaleWhileRevalidate: time.Minute,
			StaleIfError:         time.Hour,
			OriginTime:           12345 * time.Microsecond,
			Body:                 tt.body,
		}
		n := len(Encode(nil, e))
		t.Logf("%d B JSON body: envelope %d B (%d B besides the body)", len(tt.body), n, n-len(tt.body))
		if n-len(tt.body) > tt.maxOverhead {
			t.Errorf("%d B body: envelope overhead = %d B, want at most %d", len(tt.body), n-len(tt.body), tt.maxOverhead)
		}
	}
}
