package codec

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/readthrough/readthrough/internal/testbody"
	"github.com/readthrough/readthrough/storage"
)

func TestCompress(t *testing.T) {
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	json2k := testbody.JSON(2048, 1)
	tests := []struct {
		name        string
		contentType string
		coding      string
		body        []byte
		want        bool // compressed
	}{
		{"json 2 KB", "application/json", "", json2k, true},
		{"json with parameters", "Application/JSON ; charset=utf-8", "", json2k, true},
		{"no content type", "", "", json2k, true},
		{"html", "text/html; charset=utf-8", "", bytes.Repeat([]byte("<p>hello</p>"), 100), true},
		{"svg is text", "image/svg+xml", "", bytes.Repeat([]byte("<path d='M0 0'/>"), 100), true},
		{"bmp is raw pixels", "image/bmp", "", bytes.Repeat([]byte{0, 0, 255}, 1000), true},
		{"exactly the minimum", "text/plain", "", bytes.Repeat([]byte("a"), CompressMinBytes), true},
		{"one byte short of the minimum", "text/plain", "", bytes.Repeat([]byte("a"), CompressMinBytes-1), false},
		{"json 150 B", "application/json", "", testbody.JSON(150, 1), false},
		{"realistic json 211 B", "application/json", "", testbody.Realistic, true},
		{"realistic json one byte short of the minimum", "application/json", "", testbody.Realistic[:CompressMinBytes-1], false},
		{"empty", "text/plain", "", nil, false},
		{"origin coding present", "application/json", "br", json2k, false},
		{"origin gzip", "application/json", "gzip", json2k, false},
		{"png", "image/png", "", json2k, false},
		{"jpeg upper case", "IMAGE/JPEG", "", json2k, false},
		{"video", "video/mp4", "", json2k, false},
		{"audio", "audio/mpeg", "", json2k, false},
		{"zip", "application/zip", "", json2k, false},
		{"gzip", "application/gzip", "", json2k, false},
		{"zstd", "application/zstd", "", json2k, false},
		{"7z", "application/x-7z-compressed", "", json2k, false},
		{"rar", "application/vnd.rar", "", json2k, false},
		{"+zip suffix", "application/epub+zip", "", json2k, false},
		{"woff2", "font/woff2", "", json2k, false},
		{"octet-stream", "application/octet-stream", "", json2k, false},
		{"incompressible text", "text/plain", "", random, false},
		{"barely compressible", "text/plain", "", slices.Concat(random[:3500], bytes.Repeat([]byte{'a'}, 300)), false},
		{"random block repeated", "text/plain", "", bytes.Repeat(random, 4), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &storage.Entry{Status: 200, Header: http.Header{}, Coding: tt.coding, Body: tt.body}
			if tt.contentType != "" {
				e.Header.Set("Content-Type", tt.contentType)
			}
			Compress(e)
			if !tt.want {
				if e.Coding != tt.coding || e.CacheEncoded || !sameSlice(e.Body, tt.body) {
					t.Fatalf("Compress changed the entry: Coding %q, CacheEncoded %t, %d bytes", e.Coding, e.CacheEncoded, len(e.Body))
				}
				return
			}
			if e.Coding != "gzip" || !e.CacheEncoded {
				t.Fatalf("Compress left Coding %q, CacheEncoded %t; want gzip, true", e.Coding, e.CacheEncoded)
			}
			if len(e.Body) > len(tt.body)-len(tt.body)/8 {
				t.Errorf("compressed to %d of %d bytes, more than 7/8", len(e.Body), len(tt.body))
			}
			zr, err := gzip.NewReader(bytes.NewReader(e.Body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, tt.body) {
				t.Errorf("gunzip = %d bytes, %v; want the original %d bytes", len(got), err, len(tt.body))
			}
		})
	}
}

func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// TestCompressAfterAbort checks that a pooled writer that gave up on an
// incompressible body compresses the next one correctly.
func TestCompressAfterAbort(t *testing.T) {
	random := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for i := range 5 {
		e := &storage.Entry{Body: random}
		Compress(e)
		if e.Coding != "" {
			t.Fatalf("round %d: random data compressed", i)
		}
		body := testbody.JSON(10000+i, uint64(i))
		e = &storage.Entry{Body: body}
		Compress(e)
		var out bytes.Buffer
		if err := Decode(&out, e.Coding, e.Body); err != nil || !bytes.Equal(out.Bytes(), body) {
			t.Fatalf("round %d: Decode = %v, equal %t", i, err, bytes.Equal(out.Bytes(), body))
		}
	}
}

// encodeAs returns body in the content coding c, using encoders other
// than the ones Decode decodes with where the module has them.
func encodeAs(t testing.TB, c string, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
	case "zlib":
		zw := zlib.NewWriter(&buf) // compress/zlib from the standard library
		zw.Write(body)
		zw.Close()
	case "raw deflate":
		fw, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		fw.Write(body)
		fw.Close()
	case "zstd":
		zw, _ := zstd.NewWriter(nil)
		return zw.EncodeAll(body, nil)
	default:
		t.Fatalf("encodeAs %q", c)
	}
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	body := testbody.JSON(2048, 5)
	large := testbody.JSON(200<<10, 6) // several copy buffers
	tests := []struct {
		name   string
		coding string
		give   []byte
		want   []byte
	}{
		{"identity", "", body, body},
		{"identity named", "identity", body, body},
		{"identity empty", "", nil, nil},
		{"gzip", "gzip", encodeAs(t, "gzip", body), body},
		{"gzip upper case", "GZIP", encodeAs(t, "gzip", body), body},
		{"x-gzip", "x-gzip", encodeAs(t, "gzip", body), body},
		{"gzip large", "gzip", encodeAs(t, "gzip", large), large},
		{"gzip empty", "gzip", encodeAs(t, "gzip", nil), nil},
		{"gzip two members", "gzip", slices.Concat(encodeAs(t, "gzip", body[:100]), encodeAs(t, "gzip", body[100:])), body},
		{"deflate as zlib", "deflate", encodeAs(t, "zlib", body), body},
		{"deflate as zlib, large", "deflate", encodeAs(t, "zlib", large), large},
		{"deflate raw", "deflate", encodeAs(t, "raw deflate", body), body},
		{"zstd", "zstd", encodeAs(t, "zstd", body), body},
		{"zstd large", "zstd", encodeAs(t, "zstd", large), large},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 { // again with warm pools
				var out bytes.Buffer
				if err := Decode(&out, tt.coding, tt.give); err != nil {
					t.Fatalf("Decode #%d: %v", i, err)
				}
				if !bytes.Equal(out.Bytes(), tt.want) {
					t.Fatalf("Decode #%d wrote %d bytes, want %d", i, out.Len(), len(tt.want))
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	body := testbody.JSON(4096, 7)
	gz := encodeAs(t, "gzip", body)
	flipped := bytes.Clone(gz)
	flipped[len(flipped)/2] ^= 0xff
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-5] ^= 1
	tests := []struct {
		name   string
		coding string
		give   []byte
		want   error
	}{
		{"brotli", "br", []byte{1}, ErrUnknownCoding},
		{"compress", "compress", []byte{1}, ErrUnknownCoding},
		{"list of codings", "gzip, zstd", gz, ErrUnknownCoding},
		{"gzip empty", "gzip", nil, ErrCorrupt},
		{"gzip bad header", "gzip", []byte("not gzip at all"), ErrCorrupt},
		{"gzip truncated", "gzip", gz[:len(gz)/2], ErrCorrupt},
		{"gzip without trailer", "gzip", gz[:len(gz)-8], ErrCorrupt},
		{"gzip flipped byte", "gzip", flipped, ErrCorrupt},
		{"gzip bad checksum", "gzip", badCRC, ErrCorrupt},
		{"gzip trailing garbage", "gzip", append(bytes.Clone(gz), "garbage"...), ErrCorrupt},
		{"deflate truncated zlib", "deflate", encodeAs(t, "zlib", body)[:100], ErrCorrupt},
		{"deflate garbage", "deflate", []byte{0xff, 0xff, 0xff, 0xff}, ErrCorrupt},
		{"zstd garbage", "zstd", []byte("not zstd"), ErrCorrupt},
		{"zstd truncated", "zstd", encodeAs(t, "zstd", body)[:50], ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Decode(&out, tt.coding, tt.give)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if tt.want == ErrUnknownCoding {
				if out.Len() != 0 {
					t.Errorf("wrote %d bytes before failing", out.Len())
				}
				if Supported(tt.coding) {
					t.Errorf("Supported(%q) = true", tt.coding)
				}
			}
		})
	}

	// After a corrupt body, the pooled decoders still work.
	for _, c := range []string{"gzip", "deflate", "zstd"} {
		enc := map[string]string{"deflate": "zlib"}[c]
		if enc == "" {
			enc = c
		}
		var out bytes.Buffer
		if err := Decode(&out, c, encodeAs(t, enc, body)); err != nil || !bytes.Equal(out.Bytes(), body) {
			t.Errorf("%s after corrupt input: %v", c, err)
		}
	}
}

// failWriter fails every write after the first n bytes.
type failWriter struct{ n int }

var errClientGone = errors.New("client gone")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errClientGone
	}
	w.n -= len(p)
	return len(p), nil
}

func TestDecodeWriterError(t *testing.T) {
	body := testbody.JSON(100<<10, 8)
	for _, c := range []string{"", "gzip", "deflate", "zstd"} {
		t.Run(c, func(t *testing.T) {
			give := body
			switch c {
			case "gzip", "zstd":
				give = encodeAs(t, c, body)
			case "deflate":
				give = encodeAs(t, "zlib", body)
			}
			err := Decode(&failWriter{n: 1000}, c, give)
			if !errors.Is(err, errClientGone) || errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode = %v, want the writer's error only", err)
			}
		})
	}
}

func TestSupported(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"", true}, {"identity", true}, {"gzip", true}, {"GZip", true}, {"x-gzip", true},
		{"deflate", true}, {"zstd", true}, {"br", false}, {"compress", false}, {"gzip ", false},
	}
	for _, tt := range tests {
		if got := Supported(tt.give); got != tt.want {
			t.Errorf("Supported(%q) = %t, want %t", tt.give, got, tt.want)
		}
	}
}

// TestConcurrentUse runs the pooled paths from many goroutines, for -race.
func TestConcurrentUse(t *testing.T) {
	bodies := [][]byte{testbody.JSON(300, 1), testbody.JSON(3000, 2), testbody.JSON(40000, 3)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 30 {
				body := bodies[(g+i)%len(bodies)]
				e := testbody.Entry(body)
				Compress(e)
				var out bytes.Buffer
				if err := Decode(&out, e.Coding, e.Body); err != nil || !bytes.Equal(out.Bytes(), body) {
					t.Errorf("Decode: %v", err)
					return
				}
				zs := &storage.Entry{Coding: "zstd", Body: encodeAs(t, "zstd", body)}
				out.Reset()
				if err := Decode(&out, zs.Coding, zs.Body); err != nil || !bytes.Equal(out.Bytes(), body) {
					t.Errorf("Decode zstd: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestEnvelopeSizes records the size of typical envelopes (run with -v)
// and keeps the envelope's own overhead small: everything but the body,
// for a response with the three headers most JSON APIs send.
