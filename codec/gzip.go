package codec

import (
	"bytes"
	"errors"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/readthrough/readthrough/storage"
)

// CompressMinBytes is the smallest body [Compress] compresses.
//
// Measured with klauspost gzip at the default level on 20,000 generated
// JSON API answers of 150-320 bytes (single products, users, orders and
// articles: ids, names, ISO timestamps, nested price objects, no filler),
// counting the 4 bytes the "gzip" coding adds to the envelope: gzip's
// fixed cost (an 18-byte frame plus the Huffman table of a block) means
// that no body under 184 bytes got 10% smaller (most come out as a stored
// block, 17-20% larger); from 188-191 bytes 43% of bodies saved at least
// 10%, from 192-195 69% (median saving 11%), from 200-203 89%, and from
// 220 bytes all of them (median 15%, 34 bytes; 28% at 300 bytes). 192 is
// the smallest threshold at which a typical body saves 10%; the bodies
// that do not are then left alone by the 1/8 rule. Level 9 instead of the
// default made 2 KB JSON pages only 1.7% smaller (731 to 719 bytes on
// average) for twice the time (13 to 26 µs per fill), so the default
// level stays.
const CompressMinBytes = 192

// maxPooledBuf bounds the buffers kept in pools, so that one huge body
// does not pin its buffer for the life of the process.
const maxPooledBuf = 256 << 10

// Compress gzip-encodes e.Body in place when that pays: e.Coding is ""
// (identity), len(e.Body) >= [CompressMinBytes], the Content-Type in
// e.Header is not media that is already compressed (see below), and the
// result is at least 1/8 smaller than the body. It then sets e.Coding to
// "gzip" and e.CacheEncoded to true; otherwise it leaves e unchanged.
// The new body is a fresh slice; the old one is not modified.
//
// Already compressed media are image/* except image/svg+xml and
// image/bmp, video/*, audio/*, font/woff, font/woff2, the archive and
// compressed-stream types (zip, gzip, 7z, rar, zstd, bzip2, xz, brotli,
// and any +zip, +gzip or +zstd suffix) and application/octet-stream,
// which is mostly downloads of such files. Compress uses pooled
// [gzip.Writer]s at the default level, and stops as soon as the output
// grows past the 7/8 bound.
func Compress(e *storage.Entry) {
	if e.Coding != "" || len(e.Body) < CompressMinBytes || compressedMedia(e.Header.Get("Content-Type")) {
		return
	}
	c := gzipWriters.Get().(*gzipWriter)
	defer c.release()
	c.out.buf = c.out.buf[:0]
	c.out.limit = len(e.Body) - len(e.Body)/8
	c.zw.Reset(&c.out)
	if _, err := c.zw.Write(e.Body); err != nil {
		return // errTooBig: not worth it
	}
	if err := c.zw.Close(); err != nil {
		return
	}
	e.Body = bytes.Clone(c.out.buf)
	e.Coding = "gzip"
	e.CacheEncoded = true
}

// Compressible reports whether the cache may compress e's body: it is
// identity-coded and its Content-Type is not media that is already
// compressed (the list [Compress] gives). Every codec applies this rule.
func Compressible(e *storage.Entry) bool {
	return e.Coding == "" && !compressedMedia(e.Header.Get("Content-Type"))
}

// gzipWriter is a pooled compressor and its output buffer.
type gzipWriter struct {
	zw  *gzip.Writer
	out limitedBuffer
}

var gzipWriters = sync.Pool{New: func() any {
	return &gzipWriter{zw: gzip.NewWriter(nil)}
}}

func (c *gzipWriter) release() {
	c.zw.Reset(nil)
	if cap(c.out.buf) > maxPooledBuf {
		c.out.buf = nil
	}
	gzipWriters.Put(c)
}

var errTooBig = errors.New("codec: compressed body not small enough")

// limitedBuffer is an in-memory writer that fails once it would hold more
// than limit bytes.
type limitedBuffer struct {
	buf   []byte
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > b.limit {
		return 0, errTooBig
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// compressedMedia reports whether a body of Content-Type ct is already
// compressed, so that gzip would only cost time.
func compressedMedia(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	typ, sub, _ := strings.Cut(ct, "/")
	switch typ {
	case "image":
		return sub != "svg+xml" && sub != "bmp"
	case "video", "audio":
		return true
	case "font":
		return sub == "woff" || sub == "woff2"
	case "application":
		switch sub {
		case "octet-stream", "zip", "gzip", "x-gzip", "x-7z-compressed",
			"x-rar-compressed", "vnd.rar", "zstd", "x-bzip2", "x-xz",
			"x-brotli", "font-woff", "java-archive",
			"vnd.android.package-archive":
			return true
		}
		return strings.HasSuffix(sub, "+zip") || strings.HasSuffix(sub, "+gzip") ||
			strings.HasSuffix(sub, "+zstd")
	}
	return false
}
