package envelope

import (
	"maps"
	"net/http"
	"slices"
	"testing"
)

func TestStorableHeader(t *testing.T) {
	tests := []struct {
		name string
		give http.Header
		want http.Header // nil: give, unchanged
	}{
		{
			name: "nil",
			give: nil,
			want: http.Header{},
		},
		{
			name: "end-to-end headers kept",
			give: http.Header{
				"Content-Type":      {"application/json"},
				"Etag":              {`"abc"`},
				"Last-Modified":     {"Wed, 21 Oct 2025 07:28:00 GMT"},
				"Cache-Control":     {"public, max-age=60"},
				"Vary":              {"Accept-Encoding", "Accept-Language"},
				"X-Cache":           {"HIT from upstream"},
				"X-Cache-Hits":      {"3"},
				"Link":              {"</a>; rel=preload", "</b>; rel=preload"},
				"Content-Range":     {"bytes 0-1/2"}, // the cache refuses such responses; the header rule does not
				"Cdn-Cache-Control": {"max-age=60"},
			},
		},
		{
			name: "Surrogate-Control dropped, Surrogate-Key kept",
			give: http.Header{
				"Surrogate-Key":     {"user-15"},
				"surrogate-control": {"max-age=3600"},
				"Content-Type":      {"text/plain"},
			},
			want: http.Header{"Content-Type": {"text/plain"}, "Surrogate-Key": {"user-15"}},
		},
		{
			name: "hop-by-hop dropped",
			give: http.Header{
				"Connection":          {"keep-alive"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Connection":    {"keep-alive"},
				"Proxy-Authenticate":  {"Basic"},
				"Proxy-Authorization": {"Basic eA=="},
				"Te":                  {"trailers"},
				"Trailer":             {"X-Checksum"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"h2c"},
				"Content-Type":        {"text/plain"},
			},
			want: http.Header{"Content-Type": {"text/plain"}},
		},
		{
			name: "headers named by Connection dropped",
			give: http.Header{
				"Connection":   {"close, X-Hop", " x-other-hop ,,"},
				"X-Hop":        {"1"},
				"X-Other-Hop":  {"2"},
				"X-End-To-End": {"3"},
			},
			want: http.Header{"X-End-To-End": {"3"}},
		},
		{
			name: "Connection and Trailer under non-canonical keys",
			give: http.Header{
				"connection":   {"X-Hop"},
				"TRAILER":      {"x-checksum"},
				"X-Hop":        {"1"},
				"X-Checksum":   {"abc"},
				"X-End-To-End": {"3"},
			},
			want: http.Header{"X-End-To-End": {"3"}},
		},
		{
			name: "trailers dropped",
			give: http.Header{
				"Trailer":                  {"X-Checksum, X-Count"},
				"X-Checksum":               {"abc"},
				"X-Count":                  {"2"},
				http.TrailerPrefix + "X-B": {"late"},
				"X-Kept":                   {"1"},
			},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "per-response and private headers dropped",
			give: http.Header{
				"Set-Cookie":       {"a=b", "c=d"},
				"Set-Cookie2":      {"old"},
				"Date":             {"Wed, 21 Oct 2025 07:28:00 GMT"},
				"Age":              {"10"},
				"Content-Length":   {"42"},
				"Content-Encoding": {"gzip"},
				"Cache-Status":     {"upstream; hit"},
				"Expires":          {"Wed, 21 Oct 2025 08:28:00 GMT"},
			},
			want: http.Header{"Expires": {"Wed, 21 Oct 2025 08:28:00 GMT"}},
		},
		{
			name: "names canonicalized and merged",
			give: http.Header{
				"content-type": {"text/plain"},
				"set-cookie":   {"a=b"},
				"x-request-id": {"r1"},
			},
			want: http.Header{"Content-Type": {"text/plain"}, "X-Request-Id": {"r1"}},
		},
		{
			name: "names without values dropped",
			give: http.Header{"X-Empty": {}, "X-Nil": nil, "X-Blank": {""}},
			want: http.Header{"X-Blank": {""}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StorableHeader(tt.give)
			want := tt.want
			if want == nil {
				want = tt.give
			}
			if !maps.EqualFunc(got, want, slices.Equal) {
				t.Errorf("StorableHeader = %q, want %q", got, want)
			}
		})
	}
}

func TestStorableHeaderMergesCase(t *testing.T) {
	got := StorableHeader(http.Header{"X-A": {"1"}, "x-a": {"2"}})
	vs := got["X-A"]
	slices.Sort(vs)
	if !slices.Equal(vs, []string{"1", "2"}) || len(got) != 1 {
		t.Errorf("StorableHeader = %q, want X-A: 1, 2", got)
	}
}

func TestStorableHeaderCopies(t *testing.T) {
	h := http.Header{"A": {"1", "2"}, "B": {"3"}}
	got := StorableHeader(h)
	h["A"][0] = "changed"
	got["A"] = append(got["A"], "x")
	got["B"] = append(got["B"], "y")
	if got["A"][0] != "1" {
		t.Error("result shares values with the input")
	}
	if !slices.Equal(got["B"], []string{"3", "y"}) || !slices.Equal(got["A"], []string{"1", "2", "x"}) {
		t.Errorf("appending to one name reached another: %q", got)
	}
}
