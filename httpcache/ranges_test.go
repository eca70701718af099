package httpcache

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The validators of the representation in the If-Range cases: a
// Last-Modified with a Date one second later is strong (RFC 9110 section
// 8.8.2.2); lmRFC850 is the same instant in the obsolete RFC 850 format,
// which section 5.6.7 requires recipients to accept.
const (
	rangeLM       = "Mon, 02 Jan 2006 15:04:05 GMT"
	rangeLMRFC850 = "Monday, 02-Jan-06 15:04:05 GMT"
	rangeLMNext   = "Mon, 02 Jan 2006 15:04:06 GMT"
	rangeLMBefore = "Mon, 02 Jan 2006 15:04:04 GMT"
)

// TestEvalRange checks how a Range request is answered from a complete
// representation, each case against the RFC 9110 rule it names.
func TestEvalRange(t *testing.T) {
	type validators struct{ etag, lastModified, date string }
	strong := validators{`"v1"`, rangeLM, rangeLMNext}
	tests := []struct {
		name   string
		method string   // "" is GET
		give   []string // request header lines, name then value
		size   int64
		val    validators

		wantStart, wantEnd int64
		wantKind           rangeKind
	}{
		// Section 14.1.1: the three forms of a byte range-spec.
		{name: "first-last", give: []string{"Range", "bytes=2-5"}, size: 10, wantStart: 2, wantEnd: 5, wantKind: rangePartial},
		{name: "first-", give: []string{"Range", "bytes=3-"}, size: 10, wantStart: 3, wantEnd: 9, wantKind: rangePartial},
		{name: "-suffix", give: []string{"Range", "bytes=-4"}, size: 10, wantStart: 6, wantEnd: 9, wantKind: rangePartial},
		{name: "single byte", give: []string{"Range", "bytes=0-0"}, size: 10, wantStart: 0, wantEnd: 0, wantKind: rangePartial},
		{name: "last byte", give: []string{"Range", "bytes=9-9"}, size: 10, wantStart: 9, wantEnd: 9, wantKind: rangePartial},
		{name: "whole by int-range", give: []string{"Range", "bytes=0-9"}, size: 10, wantStart: 0, wantEnd: 9, wantKind: rangePartial},
		{name: "leading zeros", give: []string{"Range", "bytes=002-005"}, size: 10, wantStart: 2, wantEnd: 5, wantKind: rangePartial},

		// Section 14.1.2: a last-pos at or past the end is clamped.
		{name: "last-pos past end", give: []string{"Range", "bytes=5-100"}, size: 10, wantStart: 5, wantEnd: 9, wantKind: rangePartial},
		{name: "last-pos at size", give: []string{"Range", "bytes=5-10"}, size: 10, wantStart: 5, wantEnd: 9, wantKind: rangePartial},
		{name: "last-pos max int64", give: []string{"Range", "bytes=0-9223372036854775807"}, size: 10, wantStart: 0, wantEnd: 9, wantKind: rangePartial},

		// Section 14.1.2: a suffix longer than the representation is all
		// of it, still as 206.
		{name: "suffix longer than size", give: []string{"Range", "bytes=-100"}, size: 10, wantStart: 0, wantEnd: 9, wantKind: rangePartial},
		{name: "suffix equal to size", give: []string{"Range", "bytes=-10"}, size: 10, wantStart: 0, wantEnd: 9, wantKind: rangePartial},
		{name: "suffix max int64", give: []string{"Range", "bytes=-9223372036854775807"}, size: 10, wantStart: 0, wantEnd: 9, wantKind: rangePartial},

		// Section 14.1.2: unsatisfiable ranges.
		{name: "first-pos at size", give: []string{"Range", "bytes=10-"}, size: 10, wantKind: rangeUnsatisfiable},
		{name: "first-pos past size", give: []string{"Range", "bytes=20-30"}, size: 10, wantKind: rangeUnsatisfiable},
		{name: "first-pos max int64", give: []string{"Range", "bytes=9223372036854775807-"}, size: 10, wantKind: rangeUnsatisfiable},
		{name: "suffix zero", give: []string{"Range", "bytes=-0"}, size: 10, wantKind: rangeUnsatisfiable},
		{name: "zero size int-range", give: []string{"Range", "bytes=0-0"}, size: 0, wantKind: rangeUnsatisfiable},
		{name: "zero size first-", give: []string{"Range", "bytes=0-"}, size: 0, wantKind: rangeUnsatisfiable},
		// Sections 14.1.2 and 14.4: no 206 can carry zero bytes.
		{name: "zero size suffix", give: []string{"Range", "bytes=-5"}, size: 0, wantKind: rangeFull},

		// Section 14.1: range unit names are case-insensitive.
		{name: "unit upper case", give: []string{"Range", "BYTES=1-2"}, size: 10, wantStart: 1, wantEnd: 2, wantKind: rangePartial},
		{name: "unit mixed case", give: []string{"Range", "Bytes=1-2"}, size: 10, wantStart: 1, wantEnd: 2, wantKind: rangePartial},
		// Section 14.2: a Range with a unit the server does not
		// understand is ignored.
		{name: "other unit", give: []string{"Range", "items=0-1"}, size: 10, wantKind: rangeFull},
		{name: "unit none", give: []string{"Range", "none=0-1"}, size: 10, wantKind: rangeFull},
		{name: "no unit", give: []string{"Range", "=0-1"}, size: 10, wantKind: rangeFull},
		{name: "unit prefix", give: []string{"Range", "bytesx=0-1"}, size: 10, wantKind: rangeFull},

		// Section 5.6.1.2: whitespace around commas, and empty list
		// elements, which a recipient ignores.
		{name: "whitespace around spec", give: []string{"Range", "bytes= 1-2 "}, size: 10, wantStart: 1, wantEnd: 2, wantKind: rangePartial},
		{name: "trailing empty element", give: []string{"Range", "bytes=1-2, "}, size: 10, wantStart: 1, wantEnd: 2, wantKind: rangePartial},
		{name: "leading empty element", give: []string{"Range", "bytes=,\t1-2"}, size: 10, wantStart: 1, wantEnd: 2, wantKind: rangePartial},

		// Section 14.2: a server MAY ignore Range; several ranges get the
		// whole representation as 200.
		{name: "two ranges", give: []string{"Range", "bytes=0-1,3-4"}, size: 10, wantKind: rangeFull},
		{name: "two ranges with whitespace", give: []string{"Range", "bytes=0-1 ,\t3-4"}, size: 10, wantKind: rangeFull},
		{name: "int-range and suffix", give: []string{"Range", "bytes=0-1, -2"}, size: 10, wantKind: rangeFull},
		{name: "same range twice", give: []string{"Range", "bytes=0-1,0-1"}, size: 10, wantKind: rangeFull},
		{name: "unsatisfiable ranges", give: []string{"Range", "bytes=20-,30-"}, size: 10, wantKind: rangeFull},
		// Section 5.3: two field lines are one list of two ranges.
		{name: "two Range lines", give: []string{"Range", "bytes=0-1", "Range", "bytes=3-4"}, size: 10, wantKind: rangeFull},
		{name: "two identical Range lines", give: []string{"Range", "bytes=0-1", "Range", "bytes=0-1"}, size: 10, wantKind: rangeFull},

		// Section 14.2: an invalid ranges-specifier is ignored.
		{name: "empty range-set", give: []string{"Range", "bytes="}, size: 10, wantKind: rangeFull},
		{name: "only commas", give: []string{"Range", "bytes=, ,"}, size: 10, wantKind: rangeFull},
		{name: "empty value", give: []string{"Range", ""}, size: 10, wantKind: rangeFull},
		{name: "dash only", give: []string{"Range", "bytes=-"}, size: 10, wantKind: rangeFull},
		{name: "no dash", give: []string{"Range", "bytes=5"}, size: 10, wantKind: rangeFull},
		{name: "first greater than last", give: []string{"Range", "bytes=5-3"}, size: 10, wantKind: rangeFull},
		{name: "first greater than last past end", give: []string{"Range", "bytes=30-20"}, size: 10, wantKind: rangeFull},
		{name: "letters", give: []string{"Range", "bytes=a-b"}, size: 10, wantKind: rangeFull},
		{name: "letter in last", give: []string{"Range", "bytes=1-2x"}, size: 10, wantKind: rangeFull},
		{name: "hex", give: []string{"Range", "bytes=0x1-2"}, size: 10, wantKind: rangeFull},
		{name: "plus sign", give: []string{"Range", "bytes=+1-2"}, size: 10, wantKind: rangeFull},
		{name: "negative suffix", give: []string{"Range", "bytes=--2"}, size: 10, wantKind: rangeFull},
		{name: "three parts", give: []string{"Range", "bytes=1-2-3"}, size: 10, wantKind: rangeFull},
		{name: "space inside spec", give: []string{"Range", "bytes=1 - 2"}, size: 10, wantKind: rangeFull},
		{name: "space around equals", give: []string{"Range", "bytes = 1-2"}, size: 10, wantKind: rangeFull},
		{name: "no equals", give: []string{"Range", "bytes 1-2"}, size: 10, wantKind: rangeFull},
		{name: "invalid spec among valid", give: []string{"Range", "bytes=0-1,x"}, size: 10, wantKind: rangeFull},
		{name: "invalid on empty representation", give: []string{"Range", "bytes=5-3"}, size: 0, wantKind: rangeFull},
		// Section 14.1.1: 1*DIGIT beyond int64 cannot be represented, so
		// the value is invalid.
		{name: "first-pos overflow", give: []string{"Range", "bytes=9223372036854775808-"}, size: 10, wantKind: rangeFull},
		{name: "last-pos overflow", give: []string{"Range", "bytes=0-9223372036854775808"}, size: 10, wantKind: rangeFull},
		{name: "suffix overflow", give: []string{"Range", "bytes=-99999999999999999999"}, size: 10, wantKind: rangeFull},

		// Section 14.2: Range is ignored for methods other than GET.
		{name: "HEAD", method: http.MethodHead, give: []string{"Range", "bytes=0-1"}, size: 10, wantKind: rangeFull},
		{name: "POST", method: http.MethodPost, give: []string{"Range", "bytes=0-1"}, size: 10, wantKind: rangeFull},
		{name: "HEAD with If-Range", method: http.MethodHead, give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "no Range", size: 10, wantKind: rangeFull},

		// Section 13.1.5: If-Range is ignored without a Range.
		{name: "If-Range alone", give: []string{"If-Range", `"v1"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range alone mismatched", give: []string{"If-Range", `"v2"`}, size: 10, val: strong, wantKind: rangeFull},

		// Sections 13.1.5 and 8.8.3.2: an entity-tag If-Range matches by
		// strong comparison only.
		{name: "If-Range strong match", give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, size: 10, val: strong, wantStart: 0, wantEnd: 1, wantKind: rangePartial},
		{name: "If-Range strong match without dates", give: []string{"Range", "bytes=-3", "If-Range", `"v1"`}, size: 10, val: validators{etag: `"v1"`}, wantStart: 7, wantEnd: 9, wantKind: rangePartial},
		{name: "If-Range mismatch", give: []string{"Range", "bytes=0-1", "If-Range", `"v2"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range weak tag", give: []string{"Range", "bytes=0-1", "If-Range", `W/"v1"`}, size: 10, val: validators{`W/"v1"`, rangeLM, rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range weak tag strong stored", give: []string{"Range", "bytes=0-1", "If-Range", `W/"v1"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range strong tag weak stored", give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, size: 10, val: validators{`W/"v1"`, rangeLM, rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range tag without stored ETag", give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, size: 10, val: validators{"", rangeLM, rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range empty tag", give: []string{"Range", "bytes=0-1", "If-Range", `""`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range unquoted tag", give: []string{"Range", "bytes=0-1", "If-Range", `v1`}, size: 10, val: validators{`v1`, rangeLM, rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range malformed tag", give: []string{"Range", "bytes=0-1", "If-Range", `"v"1"`}, size: 10, val: validators{`"v"1"`, rangeLM, rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range tag list", give: []string{"Range", "bytes=0-1", "If-Range", `"v1", "v2"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range twice", give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`, "If-Range", `"v1"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range empty", give: []string{"Range", "bytes=0-1", "If-Range", ""}, size: 10, val: strong, wantKind: rangeFull},
		// Section 13.1.5: If-Range applies to a Range that would be
		// answered with 416 too.
		{name: "If-Range match unsatisfiable", give: []string{"Range", "bytes=20-", "If-Range", `"v1"`}, size: 10, val: strong, wantKind: rangeUnsatisfiable},
		{name: "If-Range mismatch unsatisfiable", give: []string{"Range", "bytes=20-", "If-Range", `"v2"`}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range mismatch multi-range", give: []string{"Range", "bytes=0-1,3-4", "If-Range", `"v1"`}, size: 10, val: strong, wantKind: rangeFull},

		// Sections 13.1.5 and 8.8.2.2: a date If-Range matches only a
		// strong Last-Modified exactly.
		{name: "If-Range date exact match", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: strong, wantStart: 0, wantEnd: 1, wantKind: rangePartial},
		{name: "If-Range date match without ETag", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{"", rangeLM, rangeLMNext}, wantStart: 0, wantEnd: 1, wantKind: rangePartial},
		{name: "If-Range date same instant RFC 850", give: []string{"Range", "bytes=0-1", "If-Range", rangeLMRFC850}, size: 10, val: strong, wantStart: 0, wantEnd: 1, wantKind: rangePartial},
		{name: "If-Range date much older than Date", give: []string{"Range", "bytes=0-1", "If-Range", rangeLMBefore}, size: 10, val: validators{`"v1"`, rangeLMBefore, "Tue, 03 Jan 2006 15:04:05 GMT"}, wantStart: 0, wantEnd: 1, wantKind: rangePartial},
		{name: "If-Range date later", give: []string{"Range", "bytes=0-1", "If-Range", rangeLMNext}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range date earlier", give: []string{"Range", "bytes=0-1", "If-Range", rangeLMBefore}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range date Last-Modified equals Date", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, rangeLM, rangeLM}, wantKind: rangeFull},
		{name: "If-Range date Last-Modified after Date", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, rangeLM, rangeLMBefore}, wantKind: rangeFull},
		{name: "If-Range date no Date", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, rangeLM, ""}, wantKind: rangeFull},
		{name: "If-Range date invalid Date", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, rangeLM, "soon"}, wantKind: rangeFull},
		{name: "If-Range date no Last-Modified", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, "", rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range date invalid Last-Modified", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{`"v1"`, "yesterday", rangeLMNext}, wantKind: rangeFull},
		{name: "If-Range invalid date", give: []string{"Range", "bytes=0-1", "If-Range", "yesterday"}, size: 10, val: strong, wantKind: rangeFull},
		{name: "If-Range date with ETag only", give: []string{"Range", "bytes=0-1", "If-Range", rangeLM}, size: 10, val: validators{etag: `"v1"`}, wantKind: rangeFull},
		{name: "If-Range tag with dates only", give: []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, size: 10, val: validators{"", rangeLM, rangeLMNext}, wantKind: rangeFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, "/", nil)
			for i := 0; i+1 < len(tt.give); i += 2 {
				r.Header.Add(tt.give[i], tt.give[i+1])
			}
			start, end, kind := evalRange(r, tt.size, tt.val.etag, tt.val.lastModified, tt.val.date)
			if start != tt.wantStart || end != tt.wantEnd || kind != tt.wantKind {
				t.Errorf("evalRange = %d, %d, %s; want %d, %d, %s",
					start, end, kindName(kind), tt.wantStart, tt.wantEnd, kindName(tt.wantKind))
			}
		})
	}
}

// TestContentRange checks the Content-Range values of RFC 9110 section
// 14.4 for a 206 and, by section 15.5.17, a 416.
func TestContentRange(t *testing.T) {
	tests := []struct {
		name             string
		start, end, size int64
		kind             rangeKind
		want             string
	}{
		{"partial", 0, 4, 10, rangePartial, "bytes 0-4/10"},
		{"single byte", 9, 9, 10, rangePartial, "bytes 9-9/10"},
		{"whole", 0, 9, 10, rangePartial, "bytes 0-9/10"},
		{"largest", 0, 9223372036854775806, 9223372036854775807, rangePartial, "bytes 0-9223372036854775806/9223372036854775807"},
		{"unsatisfiable", 0, 0, 10, rangeUnsatisfiable, "bytes */10"},
		{"unsatisfiable empty", 0, 0, 0, rangeUnsatisfiable, "bytes */0"},
		{"full has none", 0, 0, 10, rangeFull, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := contentRange(tt.start, tt.end, tt.size, tt.kind); got != tt.want {
				t.Errorf("contentRange(%d, %d, %d, %s) = %q, want %q", tt.start, tt.end, tt.size, kindName(tt.kind), got, tt.want)
			}
		})
	}
}

// FuzzEvalRange checks that any Range value gives a range inside the
// representation: a 206 never sends bytes the representation does not
// have (RFC 9110 section 14.1.2).
func FuzzEvalRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=-5", "bytes=3-", "bytes=5-3", "bytes=0-1,2-3", "BYTES=-0", "bytes=99999999999999999999-"} {
		f.Add(s, int64(10))
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, value string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Range"] = []string{value}
		start, end, kind := evalRange(r, size, "", "", "")
		switch kind {
		case rangePartial:
			if start < 0 || start > end || end >= size {
				t.Fatalf("evalRange(%q, %d) = %d-%d, outside the representation", value, size, start, end)
			}
		case rangeFull, rangeUnsatisfiable:
			if start != 0 || end != 0 {
				t.Fatalf("evalRange(%q, %d) = %d-%d with %s", value, size, start, end, kindName(kind))
			}
		default:
			t.Fatalf("evalRange(%q, %d): kind %d", value, size, kind)
		}
	})
}

// kindName names k in test failures.
func kindName(k rangeKind) string {
	switch k {
	case rangeFull:
		return "rangeFull"
	case rangePartial:
		return "rangePartial"
	case rangeUnsatisfiable:
		return "rangeUnsatisfiable"
	}
	return "rangeKind(?)"
}
