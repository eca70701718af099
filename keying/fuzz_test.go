package keying

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/readthrough/readthrough/policy"
)

// model is what a field stands for: two requests must share a field exactly
// when their models are equal. reference computes it the plain way, and
// decodeCanonical reads it back from the canonical encoding; checking
// decodeCanonical(encoding(r)) == reference(r) shows that the encoding loses
// nothing (it is injective on models), so equal fields mean equal models
// unless SHA-256 collides.
type model struct {
	Method string
	Scheme string
	Host   string
	Path   string
	Params [][2]string
	Query  string
	Vary   []modelHeader
}

type modelHeader struct {
	Name    string
	Present bool
	Values  []string
}

// reference builds the model of r for rt with the standard library and no
// shared code with the encoder. ok is false when url.ParseQuery rejects the
// query: then Key must fail.
func reference(rt *Route, r *http.Request) (m model, ok bool) {
	m = model{Method: r.Method, Scheme: "http", Host: r.Host}
	if m.Method == "" || m.Method == "HEAD" {
		m.Method = "GET"
	}
	if r.TLS != nil {
		m.Scheme = "https"
	}
	if r.RequestURI != "" {
		m.Path, _, _ = strings.Cut(r.RequestURI, "?")
	} else if r.URL != nil {
		m.Path = r.URL.EscapedPath()
	}
	for _, name := range rt.fieldParams {
		m.Params = append(m.Params, [2]string{name, r.PathValue(name)})
	}
	if !rt.ignoreQuery && r.URL != nil {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			return m, false
		}
		if rt.allow == nil {
			m.Query = r.URL.RawQuery
		} else {
			var kept []string
			for _, piece := range strings.Split(r.URL.RawQuery, "&") {
				name, _, _ := strings.Cut(piece, "=")
				if d, err := url.QueryUnescape(name); err == nil && piece != "" {
					if _, ok := rt.allow[d]; ok {
						kept = append(kept, piece)
					}
				}
			}
			m.Query = strings.Join(kept, "&")
		}
	}
	for _, name := range rt.vary {
		h := modelHeader{Name: name}
		if vs := r.Header.Values(name); len(vs) > 0 {
			h.Present, h.Values = true, vs
		}
		m.Vary = append(m.Vary, h)
	}
	return m, true
}

// decodeCanonical parses the canonical field encoding back into a model.
func decodeCanonical(b []byte) (model, error) {
	var m model
	rd := bytes.NewReader(b)
	fail := func(what string) (model, error) {
		return model{}, fmt.Errorf("bad %s at byte %d", what, len(b)-rd.Len())
	}
	readN := func() (int, bool) {
		n, err := binary.ReadUvarint(rd)
		return int(n), err == nil && n <= uint64(rd.Len())+1<<20
	}
	readStr := func() (string, bool) {
		n, ok := readN()
		if !ok || n > rd.Len() {
			return "", false
		}
		s := make([]byte, n)
		_, err := rd.Read(s)
		return string(s), err == nil || n == 0
	}
	readByte := func() (byte, bool) {
		c, err := rd.ReadByte()
		return c, err == nil
	}
	var ok bool
	if v, _ := readByte(); v != formatVersion {
		return fail("version")
	}
	if m.Method, ok = readStr(); !ok {
		return fail("method")
	}
	if m.Scheme, ok = readStr(); !ok {
		return fail("scheme")
	}
	if m.Host, ok = readStr(); !ok {
		return fail("host")
	}
	if m.Path, ok = readStr(); !ok {
		return fail("path")
	}
	n, ok := readN()
	if !ok {
		return fail("param count")
	}
	for range n {
		name, ok1 := readStr()
		value, ok2 := readStr()
		if !ok1 || !ok2 {
			return fail("param")
		}
		m.Params = append(m.Params, [2]string{name, value})
	}
	if m.Query, ok = readStr(); !ok {
		return fail("query")
	}
	if n, ok = readN(); !ok {
		return fail("vary count")
	}
	for range n {
		name, ok1 := readStr()
		present, ok2 := readByte()
		if !ok1 || !ok2 || present > 1 {
			return fail("vary header")
		}
		h := modelHeader{Name: name, Present: present == 1}
		if h.Present {
			k, ok := readN()
			if !ok {
				return fail("vary value count")
			}
			for range k {
				v, ok := readStr()
				if !ok {
					return fail("vary value")
				}
				h.Values = append(h.Values, v)
			}
		}
		m.Vary = append(m.Vary, h)
	}
	if rd.Len() != 0 {
		return fail("trailing bytes")
	}
	return m, nil
}

// FuzzKey checks, for arbitrary path values, query strings, header values
// and hosts, that Key does not panic, is deterministic, keeps braces out of
// the bucket, agrees with BucketFor, escapes bucket values reversibly, and
// that its canonical encoding decodes back to the reference model.
func FuzzKey(f *testing.F) {
	seeds := []struct{ path, query, header, host string }{
		{"15", "a=1&b=2", "gzip", "example.com"},
		{"1|2", "a=b&c", "a, b", "Example.COM"},
		{"{x}", "a=b%26c", "", ""},
		{"%7C", "a=%zz&%zz=b", "x\ny", "h:80"},
		{"", "", "\n", "\xff\xfe"},
		{"a/b", "&&a&a=&=a&+=%2B", "a=1", "h?a=1"},
		{"\x00\x1f\x7f", "q=%c3%a9;x=1", "\x00", "[::1]:8080"},
		{"été", "page=2&utm=x&page=1", "br\n", "ÉTÉ.example"},
	}
	for _, s := range seeds {
		f.Add(s.path, s.query, s.header, s.host)
	}
	routes := []*Route{
		mustCompile(f, "/u/{id}/{sub}", policy.Policy{BucketParams: []string{"id"}, Vary: []string{"X-A", "x-b"}}),
		mustCompile(f, "GET /u/{id}/{rest...}", policy.Policy{QueryParams: []string{"a", "page", "%zz"}}),
		mustCompile(f, "/u/{id}/*", policy.Policy{IgnoreQuery: true, Vary: []string{"X-A"}}),
		mustCompile(f, "GET /u/{id}/", policy.Policy{}),
	}
	f.Fuzz(func(t *testing.T, pathValue, query, header, host string) {
		checkUnescape(t, query)
		r := &http.Request{
			Method: "GET",
			Host:   host,
			URL:    &url.URL{Path: "/u/" + pathValue + "/", RawPath: header, RawQuery: query},
			Header: http.Header{"X-A": strings.Split(header, "\n")},
		}
		for _, name := range []string{"id", "sub", "rest", "rest...", "*"} {
			r.SetPathValue(name, pathValue+name)
		}
		r.SetPathValue("id", pathValue)
		for _, rt := range routes {
			k, err := rt.Key(r)
			ref, refOK := reference(rt, r)
			if (err == nil) != refOK {
				t.Fatalf("%s: Key error = %v, url.ParseQuery accepts the query: %v", rt.Pattern(), err, refOK)
			}
			if err != nil {
				continue
			}
			if k2, _ := rt.Key(r.Clone(r.Context())); k2 != k {
				t.Fatalf("%s: Key not deterministic: %q %s vs %q %s", rt.Pattern(), k.Bucket, k.FieldHex(), k2.Bucket, k2.FieldHex())
			}
			if strings.ContainsAny(k.Bucket, "{}") {
				t.Fatalf("%s: bucket %q holds a brace", rt.Pattern(), k.Bucket)
			}
			values := map[string]string{}
			for _, name := range rt.bucketParams {
				values[name] = r.PathValue(name)
			}
			b, err := rt.BucketFor(values)
			if err != nil || b != k.Bucket {
				t.Fatalf("%s: BucketFor(%q) = %q, %v; Key gave %q", rt.Pattern(), values, b, err, k.Bucket)
			}
			parts := strings.Split(strings.TrimPrefix(k.Bucket, rt.BucketPrefix()), "|")
			for i, name := range rt.bucketParams {
				v := r.PathValue(name)
				if len(v) > MaxBucketValue {
					sum := sha256.Sum256([]byte(v))
					if want := "%#" + hex.EncodeToString(sum[:16]); parts[i] != want {
						t.Fatalf("%s: long value kept as %q, want %q", rt.Pattern(), parts[i], want)
					}
					continue
				}
				if got, err := url.PathUnescape(parts[i]); err != nil || got != v {
					t.Fatalf("%s: bucket %q part %d unescapes to %q, %v; want %q", rt.Pattern(), k.Bucket, i, got, err, v)
				}
			}

			enc, _ := rt.appendCanonical(nil, new(scratch), r)
			if sum := sha256.Sum256(enc); string(sum[:16]) != k.Field {
				t.Fatalf("%s: Field is not the digest of the canonical encoding", rt.Pattern())
			}
			dec, err := decodeCanonical(enc)
			if err != nil {
				t.Fatalf("%s: decoding %q: %v", rt.Pattern(), enc, err)
			}
			if !reflect.DeepEqual(dec, ref) {
				t.Fatalf("%s: canonical encoding decodes to\n%+v\nwant\n%+v", rt.Pattern(), dec, ref)
			}
		}
	})
}
