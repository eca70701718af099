package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/storage"
	"github.com/vmihailenco/msgpack/v5"
)

var update = flag.Bool("update", false, "write the golden files that do not exist yet (existing ones are never rewritten)")

// goldenCase is one envelope frozen in testdata/<name>.golden, with the
// entry it decodes to described in testdata/<name>.json.
//
// The golden files were written by storage.Encode, the hand-written
// codec this package replaces, and are never rewritten: entries already
// in Redis must keep decoding, and the same entry must keep encoding to
// the same bytes. A change of format is a new case (and, if older
// readers would get it wrong, a new version byte), never an edit.
type goldenCase struct {
	name string
	note string         // what the case covers; also in the .json
	give *storage.Entry // encoded by Encode; nil for a raw case
	raw  func() []byte  // a hand-built envelope (another writer), only decoded
	want *storage.Entry // what Decode returns; nil: give
}

// goldenCases are the frozen envelopes. Append new ones; never change
// or remove one.
var goldenCases = []goldenCase{
	{
		name: "minimal",
		note: "status only: no headers (written as an empty array), zero time, nil body (written as an empty bin)",
		give: &storage.Entry{Status: 200},
		want: &storage.Entry{Status: 200, Header: http.Header{}},
	},
	{
		name: "doc-example",
		note: "the example of ENVELOPE.md",
		give: &storage.Entry{
			Status: 200,
			Header: http.Header{
				"Content-Type":  {"application/json"},
				"Etag":          {`"v1"`},
				"Last-Modified": {"Tue, 21 Oct 2025 07:00:00 GMT"},
				"Vary":          {"Accept-Encoding", "Accept-Language"},
				"X-Shard":       {"eu-1"},
			},
			Stored:               time.UnixMilli(1761031680123).UTC(),
			Fresh:                5 * time.Minute,
			StaleWhileRevalidate: 30 * time.Second,
			OriginTime:           1500 * time.Microsecond,
			Body:                 []byte(`{"id":15}`),
		},
	},
	{
		name: "typical-200B",
		note: "a typical JSON answer of 200 bytes with four headers, as the benchmarks use",
		give: &storage.Entry{
			Status: 200,
			Header: http.Header{
				"Content-Type":  {"application/json; charset=utf-8"},
				"Etag":          {`"33a64df551425fcc55e4d42a148795d9f25f89d4"`},
				"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"},
				"Cache-Control": {"public, max-age=300"},
			},
			Stored:               time.UnixMilli(1761031680123).UTC(),
			Fresh:                5 * time.Minute,
			StaleWhileRevalidate: time.Minute,
			StaleIfError:         time.Hour,
			OriginTime:           12345 * time.Microsecond,
			Body:                 goldenBody(200),
		},
	},
	{
		name: "name-table",
		note: "every position of the name table 0-38, in a name position (the headers array is an array16); " +
			"26 Surrogate-Control is written but dropped on reading",
		give: &storage.Entry{Status: 200, Header: nameTableHeader(true)},
		want: &storage.Entry{Status: 200, Header: nameTableHeader(false)},
	},
	{
		name: "value-table",
		note: "every position of the value table 0-63 as values of a name given as a string, and in order under a table name",
		give: &storage.Entry{Status: 200, Header: http.Header{
			"X-Values":     goldenValueTable,
			"Content-Type": {"application/json"},
			"Vary":         {"Origin", "Accept-Encoding", "Accept"},
		}},
	},
	{
		name: "string-headers",
		note: "names and values outside the tables at each str length format (fixstr 0 and 31, str8 32 and 255, " +
			"str16 256 and 70000), obs-text bytes (Latin-1 in the .json), a value that differs from a table value in case, " +
			"and non-canonical keys, which are canonicalized and merged (the canonical key's values first)",
		give: &storage.Entry{Status: 203, Header: http.Header{
			"X-Empty":                      {""},
			"X-Len-31":                     {strings.Repeat("a", 31)},
			"X-Len-32":                     {strings.Repeat("b", 32)},
			"X-Len-255":                    {strings.Repeat("c", 255)},
			"X-Len-256":                    {strings.Repeat("d", 256)},
			"X-Len-70000":                  {strings.Repeat("e", 70000)},
			"X-Obs-Text":                   {"caf\xe9 \xff"},
			"X-Case":                       {"Application/JSON", "NOSNIFF"},
			"x-trace-id":                   {"lower"},
			"X-Trace-Id":                   {"canonical"},
			"content-type":                 {"text/plain; charset=utf-8"},
			"X-" + strings.Repeat("N", 40): {"a name of 42 bytes"},
		}},
		want: &storage.Entry{Status: 203, Header: http.Header{
			"X-Empty":                       {""},
			"X-Len-31":                      {strings.Repeat("a", 31)},
			"X-Len-32":                      {strings.Repeat("b", 32)},
			"X-Len-255":                     {strings.Repeat("c", 255)},
			"X-Len-256":                     {strings.Repeat("d", 256)},
			"X-Len-70000":                   {strings.Repeat("e", 70000)},
			"X-Obs-Text":                    {"caf\xe9 \xff"},
			"X-Case":                        {"Application/JSON", "NOSNIFF"},
			"X-Trace-Id":                    {"canonical", "lower"},
			"Content-Type":                  {"text/plain; charset=utf-8"},
			"X-N" + strings.Repeat("n", 39): {"a name of 42 bytes"},
		}},
	},
	{
		name: "dates-as-integers",
		note: "Last-Modified and Expires values that round-trip through http.TimeFormat, written as Unix seconds: " +
			"fixint 0 and 127, uint8 128, uint16 256, uint32 (2025), uint64 (9999-12-31T23:59:59Z)",
		give: &storage.Entry{Status: 200, Header: http.Header{
			"Last-Modified": {
				"Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:02:07 GMT", "Thu, 01 Jan 1970 00:02:08 GMT",
				"Thu, 01 Jan 1970 00:04:16 GMT",
			},
			"Expires": {"Tue, 21 Oct 2025 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"},
		}},
	},
	{
		name: "dates-as-strings",
		note: "date-name values that do not round-trip stay strings (wrong weekday, lower case, other formats, " +
			"before 1970, 0, -1, a value-table string); a date under another name is a string",
		give: &storage.Entry{Status: 304, Header: http.Header{
			"Last-Modified": {
				"Wed, 21 Oct 2025 07:28:00 GMT",
				"tue, 21 Oct 2025 07:28:00 GMT",
				"Tue, 21 Oct 2025 07:28:00 UTC",
				"Tuesday, 21-Oct-25 07:28:00 GMT",
				"Tue Oct 21 07:28:00 2025",
				"Wed, 31 Dec 1969 23:59:59 GMT",
				"public",
			},
			"Expires":  {"0", "-1", ""},
			"X-Custom": {"Tue, 21 Oct 2025 07:28:00 GMT"},
		}},
	},
	{
		name: "many-headers",
		note: "40 names outside the tables with values of 0 to 390 bytes (array16 of 80 elements), status 500",
		give: &storage.Entry{Status: 500, Header: manyHeaders(40), Stored: time.UnixMilli(1700000000000).UTC()},
	},
	{
		name: "body-empty",
		note: "a 204 with an empty (non-nil) body",
		give: &storage.Entry{Status: 204, Header: http.Header{"Etag": {`"e"`}}, Body: []byte{}},
	},
	{
		name: "body-2KB",
		note: "a 2 KiB identity body (bin16)",
		give: &storage.Entry{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: goldenBody(2 << 10)},
	},
	{
		name: "body-64KB",
		note: "a 64 KiB identity body (65536 bytes: bin32)",
		give: &storage.Entry{Status: 200, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: goldenBody(64 << 10)},
	},
	{
		name: "coding-gzip",
		note: "a body the cache gzipped itself (flags 1)",
		give: &storage.Entry{
			Status: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Coding: "gzip", CacheEncoded: true, Body: []byte("\x1f\x8b\x08\x00 not really gzip"),
		},
	},
	{
		name: "coding-deflate",
		note: "a deflate body from the origin (flags 0)",
		give: &storage.Entry{Status: 200, Coding: "deflate", Body: []byte("\x78\x9c not really zlib")},
	},
	{
		name: "coding-zstd",
		note: "a zstd body from the origin",
		give: &storage.Entry{Status: 200, Coding: "zstd", Body: []byte("\x28\xb5\x2f\xfd not really zstd")},
	},
	{
		name: "coding-br",
		note: "a coding the Go reader cannot decode, kept as it is",
		give: &storage.Entry{Status: 200, Coding: "br", Body: []byte("brotli bytes")},
	},
	{
		name: "coding-zstd-dict",
		note: "the dictionary coding: version byte 2, flags 1",
		give: &storage.Entry{
			Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Etag": {`"strong"`}},
			Stored: time.UnixMilli(1761031680123).UTC(), Fresh: time.Minute,
			Coding: "zstd-dict", CacheEncoded: true, Body: []byte("\x28\xb5\x2f\xfd dictionary frame"),
		},
	},
	{
		name: "stored-zero-time",
		note: "Go's zero time.Time: stored = -62135596800000 (int64)",
		give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Time{}, Fresh: time.Second},
	},
	{
		name: "stored-before-1970",
		note: "a second before 1970: stored = -1000 (int16)",
		give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.UnixMilli(-1000).UTC()},
	},
	{
		name: "stored-far-future",
		note: "9999-12-31T23:59:59.999Z (uint64)",
		give: &storage.Entry{Status: 200, Header: http.Header{}, Stored: time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
	},
	{
		name: "durations-largest",
		note: "the largest durations a time.Duration holds (uint64 milliseconds and microseconds), uint32 and uint16 ones, status 599",
		give: &storage.Entry{
			Status: 599, Header: http.Header{},
			Stored:               time.UnixMilli(1761031680123).UTC(),
			Fresh:                time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond,
			StaleWhileRevalidate: math.MaxUint32 * time.Millisecond,
			StaleIfError:         65535 * time.Millisecond,
			OriginTime:           time.Duration(math.MaxInt64/int64(time.Microsecond)) * time.Microsecond,
		},
	},
	{
		name: "durations-truncated",
		note: "negative durations are written as 0, others truncated to milliseconds (microseconds for origin_us); " +
			"Stored in another zone comes back in UTC, truncated to the millisecond",
		give: &storage.Entry{
			Status:               200,
			Stored:               time.Date(2025, 1, 2, 3, 4, 5, 6789999, time.FixedZone("X", 3600)),
			Fresh:                -time.Second,
			StaleWhileRevalidate: 1999 * time.Microsecond,
			StaleIfError:         math.MinInt64,
			OriginTime:           1999 * time.Nanosecond,
		},
		want: &storage.Entry{
			Status:               200,
			Header:               http.Header{},
			Stored:               time.Date(2025, 1, 2, 2, 4, 5, 6e6, time.UTC),
			StaleWhileRevalidate: time.Millisecond,
			OriginTime:           time.Microsecond,
		},
	},
	{
		name: "unstored-headers",
		note: "headers that are never stored, as another writer could leave them: Encode writes them, Decode drops " +
			"them (hop-by-hop, the names Connection and Trailer list, Trailer: names, Set-Cookie, per-response headers, Surrogate-Control); Surrogate-Key is kept",
		give: &storage.Entry{Status: 200, Header: http.Header{
			"Set-Cookie":        {"a=b"},
			"Set-Cookie2":       {"c=d"},
			"Transfer-Encoding": {"chunked"},
			"Connection":        {"X-Hop, Etag"},
			"Etag":              {`"v"`},
			"X-Hop":             {"1"},
			"Trailer":           {"X-Sum"},
			"X-Sum":             {"2"},
			"Trailer:X-Late":    {"3"},
			"Date":              {"Tue, 21 Oct 2025 07:28:00 GMT"},
			"Age":               {"10"},
			"Content-Length":    {"5"},
			"Content-Encoding":  {"gzip"},
			"Cache-Status":      {"up; hit"},
			"Surrogate-Key":     {"k"},
			"X-Kept":            {"4"},
			"Content-Type":      {"text/plain"},
		}},
		want: &storage.Entry{Status: 200, Header: http.Header{"X-Kept": {"4"}, "Content-Type": {"text/plain"}, "Surrogate-Key": {"k"}}},
	},
	{
		name: "raw-extra-elements-after-date",
		note: "written by hand: the ten elements, the date (element 10), and seven more of every kind (map, ext, " +
			"str16, nil, nested arrays, ext8, negative int) in an array16, which readers ignore",
		raw: func() []byte {
			return rawEnvelope(18, func(enc *msgpack.Encoder) {
				writeTenFields(enc)
				enc.EncodeUint(1761031680)
				enc.Encode(map[string]any{"a": []any{1, "x", nil, true, 1.5}})
				enc.Encode(time.Unix(1, 2))
				enc.EncodeString(strings.Repeat("s", 300))
				enc.EncodeNil()
				enc.Encode([]any{[]any{[]any{}}, bytes.Repeat([]byte{1}, 20)})
				enc.EncodeExtHeader(5, 3)
				enc.Writer().Write([]byte{0, 1, 2})
				enc.EncodeInt64(-5)
			})
		},
		want: func() *storage.Entry {
			e := tenFieldsEntry()
			e.Date = time.Unix(1761031680, 0).UTC()
			return e
		}(),
	},
	{
		name: "date-kept",
		note: "an entry of a route in standards mode: element 10 keeps the origin's Date, Unix seconds",
		give: func() *storage.Entry {
			e := tenFieldsEntry()
			e.Date = time.Unix(1761031680, 0).UTC()
			return e
		}(),
	},
	{
		name: "raw-wide-integers",
		note: "written by hand: integers in wider formats than needed (int64 status, uint64 stored and date), " +
			"lower-case names, unknown flag bits",
		raw: func() []byte {
			return rawEnvelope(10, func(enc *msgpack.Encoder) {
				enc.EncodeInt64(404)
				enc.EncodeArrayLen(8)
				enc.EncodeString("content-type")
				enc.EncodeString("text/plain")
				enc.EncodeString("last-modified")
				enc.EncodeUint64(1761031680)
				enc.EncodeString("x-a")
				enc.EncodeString("1")
				enc.EncodeString("X-A")
				enc.EncodeString("2")
				enc.EncodeUint64(1700000000001)
				enc.EncodeInt64(1000)
				enc.EncodeUint64(2000)
				enc.EncodeInt32(3000)
				enc.EncodeInt16(4)
				enc.EncodeString("zstd")
				enc.EncodeUint64(1 | 1<<40)
				enc.EncodeBytes([]byte("body"))
			})
		},
		want: &storage.Entry{
			Status: 404,
			Header: http.Header{
				"Content-Type":  {"text/plain"},
				"Last-Modified": {"Tue, 21 Oct 2025 07:28:00 GMT"},
				"X-A":           {"1", "2"},
			},
			Stored: time.UnixMilli(1700000000001).UTC(), Fresh: time.Second,
			StaleWhileRevalidate: 2 * time.Second, StaleIfError: 3 * time.Second, OriginTime: 4 * time.Microsecond,
			Coding: "zstd", CacheEncoded: true, Body: []byte("body"),
		},
	},
	{
		name: "raw-str-bin-swapped",
		note: "written by hand: bin where str is expected and str for the body, nil as an empty string (a header value, the coding)",
		raw: func() []byte {
			return rawEnvelope(10, func(enc *msgpack.Encoder) {
				enc.EncodeUint(200)
				enc.EncodeArrayLen(6)
				enc.EncodeBytes([]byte("Content-Type"))
				enc.EncodeBytes([]byte("text/plain"))
				enc.EncodeBytes([]byte("X-Nil"))
				enc.EncodeNil()
				enc.EncodeUint(1)
				enc.EncodeBytes([]byte(`"e"`))
				enc.EncodeInt(1700000000000)
				enc.EncodeUint(60000)
				enc.EncodeUint(0)
				enc.EncodeUint(0)
				enc.EncodeUint(1500)
				enc.EncodeNil()
				enc.EncodeUint(0)
				enc.EncodeString("body as str")
			})
		},
		want: &storage.Entry{
			Status: 200,
			Header: http.Header{"Content-Type": {"text/plain"}, "X-Nil": {""}, "Etag": {`"e"`}},
			Stored: time.UnixMilli(1700000000000).UTC(), Fresh: time.Minute, OriginTime: 1500 * time.Microsecond,
			Body: []byte("body as str"),
		},
	},
	{
		name: "raw-unsorted-headers",
		note: "written by hand: pairs out of order, one name given both as a position and as a string (values appended in order), " +
			"dates of a name given as a string, a value position under a name given as a string",
		raw: func() []byte {
			return rawEnvelope(10, func(enc *msgpack.Encoder) {
				enc.EncodeUint(200)
				enc.EncodeArrayLen(12)
				enc.EncodeUint(5) // Expires
				enc.EncodeUint(0)
				enc.EncodeString("vary")
				enc.EncodeUint(13) // Origin
				enc.EncodeUint(4)  // Vary
				enc.EncodeUint(12) // Accept-Encoding
				enc.EncodeString("EXPIRES")
				enc.EncodeInt64(2)
				enc.EncodeUint(0) // Content-Type
				enc.EncodeUint(0) // application/json
				enc.EncodeString("Last-Modified")
				enc.EncodeString("yesterday")
				enc.EncodeInt(1700000000000)
				for range 4 {
					enc.EncodeUint(0)
				}
				enc.EncodeString("")
				enc.EncodeUint(0)
				enc.EncodeBytes(nil) // nil: an empty body
			})
		},
		want: &storage.Entry{
			Status: 200,
			Header: http.Header{
				"Expires":       {"Thu, 01 Jan 1970 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:02 GMT"},
				"Vary":          {"Origin", "Accept-Encoding"},
				"Content-Type":  {"application/json"},
				"Last-Modified": {"yesterday"},
			},
			Stored: time.UnixMilli(1700000000000).UTC(),
		},
	},
}

// goldenNameTable is the name table of ENVELOPE.md, written out here so
// that the golden files do not depend on the code's copy.
var goldenNameTable = []string{
	"Content-Type", "Etag", "Last-Modified", "Cache-Control", "Vary", "Expires", "Content-Language",
	"Content-Disposition", "Content-Location", "Link", "Location", "Accept-Ranges",
	"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age",
	"X-Content-Type-Options", "X-Frame-Options", "Strict-Transport-Security", "Content-Security-Policy",
	"Referrer-Policy", "Server", "X-Request-Id", "Surrogate-Key", "Surrogate-Control", "X-Powered-By",
	"Pragma", "Permissions-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy",
	"Cross-Origin-Embedder-Policy", "X-Xss-Protection", "Timing-Allow-Origin", "Alt-Svc", "X-Robots-Tag",
	"Content-Range", "Cdn-Cache-Control",
}

// goldenValueTable is the value table of ENVELOPE.md.
var goldenValueTable = []string{
	"application/json", "application/json; charset=utf-8", "text/html; charset=utf-8",
	"text/plain; charset=utf-8", "text/css; charset=utf-8", "text/javascript; charset=utf-8",
	"application/javascript", "application/xml", "image/png", "image/jpeg", "image/webp", "image/svg+xml",
	"Accept-Encoding", "Origin", "nosniff", "*", "bytes", "no-cache", "public", "DENY", "SAMEORIGIN",
	"text/html", "text/plain", "text/css", "application/javascript; charset=utf-8",
	"application/xml; charset=utf-8", "text/xml; charset=utf-8", "application/problem+json",
	"application/vnd.api+json", "application/octet-stream", "application/pdf", "image/gif", "image/avif",
	"image/x-icon", "font/woff2", "Accept", "Accept-Language", "Origin, Accept-Encoding",
	"Accept-Encoding, Origin", "true", "no-store", "private", "must-revalidate", "max-age=0",
	"no-cache, no-store, must-revalidate", "public, max-age=31536000, immutable", "max-age=31536000",
	"max-age=31536000; includeSubDomains", "max-age=31536000; includeSubDomains; preload",
	"max-age=63072000; includeSubDomains; preload", "strict-origin-when-cross-origin", "no-referrer",
	"same-origin", "cross-origin", "same-site", "0", "1; mode=block", "inline", "attachment", "en",
	"en-US", "none", "nginx", `h3=":443"; ma=86400`,
}

// nameTableHeader has one value for every name of the name table: a
// date for the date names, a string otherwise. Without surrogate, the
// Surrogate-Control that Decode drops is left out.
func nameTableHeader(surrogate bool) http.Header {
	h := http.Header{}
	for i, n := range goldenNameTable {
		switch {
		case n == "Last-Modified" || n == "Expires":
			h[n] = []string{time.Unix(int64(i)*86400*365, 0).UTC().Format(http.TimeFormat)}
		case !surrogate && n == "Surrogate-Control":
		default:
			h[n] = []string{fmt.Sprintf("value %d", i)}
		}
	}
	return h
}

// manyHeaders has n names outside the tables, the i-th with a value of
// 10*i bytes.
func manyHeaders(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h.Set(fmt.Sprintf("X-Header-%02d", i), strings.Repeat(string(rune('a'+i%26)), i*10))
	}
	return h
}

// goldenBody is a JSON-like body of exactly n bytes that does not depend
// on anything that could change (no random source).
func goldenBody(n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"name":"item %d","tags":["a","b"]},`, i*7919%100000, i)
	}
	return b[:n]
}

// rawEnvelope is a version 1 envelope of an array of n elements that
// write writes.
func rawEnvelope(n int, write func(*msgpack.Encoder)) []byte {
	var buf bytes.Buffer
	buf.WriteByte(1)
	enc := msgpack.NewEncoder(&buf)
	enc.EncodeArrayLen(n)
	write(enc)
	return buf.Bytes()
}

// writeTenFields writes the ten elements of tenFieldsEntry.
func writeTenFields(enc *msgpack.Encoder) {
	enc.EncodeUint(200)
	enc.EncodeArrayLen(2)
	enc.EncodeUint(0)
	enc.EncodeUint(3)
	enc.EncodeInt(1700000000000)
	enc.EncodeUint(60000)
	enc.EncodeUint(0)
	enc.EncodeUint(0)
	enc.EncodeUint(1500)
	enc.EncodeString("")
	enc.EncodeUint(0)
	enc.EncodeBytes([]byte("hi"))
}

func tenFieldsEntry() *storage.Entry {
	return &storage.Entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Stored: time.UnixMilli(1700000000000).UTC(), Fresh: time.Minute, OriginTime: 1500 * time.Microsecond,
		Body: []byte("hi"),
	}
}

// goldenDesc is the .json description of a golden file: the entry it
// decodes to, in the units of the envelope, for readers in any language.
type goldenDesc struct {
	Note    string `json:"note"`
	Version int    `json:"version"`
	Status  int    `json:"status"`
	// Headers are the name/value pairs after decoding (unstored headers
	// dropped, names canonical), sorted by name, values in order. Header
	// bytes are given as Latin-1, one character per byte.
	Headers      [][2]string `json:"headers"`
	StoredMs     int64       `json:"stored_ms"`
	FreshMs      int64       `json:"fresh_ms"`
	SWRMs        int64       `json:"swr_ms"`
	SIEMs        int64       `json:"sie_ms"`
	OriginUs     int64       `json:"origin_us"`
	Coding       string      `json:"coding"`
	CacheEncoded bool        `json:"cache_encoded"`
	BodyLen      int         `json:"body_len"`
	BodySHA256   string      `json:"body_sha256"`
	// Body is the body in base64, for bodies up to 256 bytes.
	Body string `json:"body,omitempty"`
	// DateS is element 10, the origin's Date in Unix seconds, when the
	// envelope has one.
	DateS int64 `json:"date_s,omitempty"`
}

func describe(note string, version byte, e *storage.Entry) goldenDesc {
	d := goldenDesc{
		Note:         note,
		Version:      int(version),
		Status:       e.Status,
		Headers:      [][2]string{},
		StoredMs:     e.Stored.UnixMilli(),
		FreshMs:      e.Fresh.Milliseconds(),
		SWRMs:        e.StaleWhileRevalidate.Milliseconds(),
		SIEMs:        e.StaleIfError.Milliseconds(),
		OriginUs:     e.OriginTime.Microseconds(),
		Coding:       e.Coding,
		CacheEncoded: e.CacheEncoded,
		BodyLen:      len(e.Body),
	}
	if !e.Date.IsZero() {
		d.DateS = e.Date.Unix()
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range e.Header {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range e.Header[name] {
			d.Headers = append(d.Headers, [2]string{latin1(name), latin1(v)})
		}
	}
	sum := sha256.Sum256(e.Body)
	d.BodySHA256 = hex.EncodeToString(sum[:])
	if len(e.Body) <= 256 {
		d.Body = base64.StdEncoding.EncodeToString(e.Body)
	}
	return d
}

// latin1 reads the bytes of s as Latin-1, so that any bytes survive JSON.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := range len(s) {
		r[i] = rune(s[i])
	}
	return string(r)
}

// TestGolden checks each frozen envelope in testdata: Decode returns the
// entry described, and Encode writes exactly the frozen bytes. With
// -update it writes the files of new cases; it never rewrites one.
func TestGolden(t *testing.T) {
	for _, tt := range goldenCases {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.give
			}
			path := filepath.Join("testdata", tt.name+".golden")
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) && *update {
				if tt.give != nil {
					data = Encode(nil, tt.give)
				} else {
					data = tt.raw()
				}
				writeNew(t, path, data)
			} else if err != nil {
				t.Fatal(err)
			}

			var got storage.Entry
			if err := Decode(data, &got); err != nil {
				t.Fatalf("Decode(%s): %v", path, err)
			}
			if d := diffEntry(&got, want); d != "" {
				t.Errorf("Decode(%s): %s", path, d)
			}

			jsonPath := strings.TrimSuffix(path, ".golden") + ".json"
			desc, err := json.MarshalIndent(describe(tt.note, data[0], &got), "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			// One line per header pair.
			desc = headerPair.ReplaceAll(desc, []byte("[$1, $2]"))
			desc = append(desc, '\n')
			wantDesc, err := os.ReadFile(jsonPath)
			if errors.Is(err, fs.ErrNotExist) && *update {
				writeNew(t, jsonPath, desc)
				wantDesc = desc
			} else if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(desc, wantDesc) {
				t.Errorf("Decode(%s) is not described by %s:\n%s", path, jsonPath, desc)
			}

			if tt.give != nil {
				if enc := Encode(nil, tt.give); !bytes.Equal(enc, data) {
					t.Errorf("Encode differs from %s (%d bytes, want %d):\n%s", path, len(enc), len(data), hex.Dump(enc[:min(len(enc), 512)]))
				}
			}
		})
	}
}

// headerPair matches a name/value pair as json.MarshalIndent writes it.
var headerPair = regexp.MustCompile(`\[\n\t\t\t("(?:[^"\\]|\\.)*"),\n\t\t\t("(?:[^"\\]|\\.)*")\n\t\t\]`)

func writeNew(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
