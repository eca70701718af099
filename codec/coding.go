package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// ErrUnknownCoding is returned by [Decode] for a content coding it cannot
// decode.
var ErrUnknownCoding = errors.New("codec: unknown content coding")

// Supported reports whether [Decode] can decode a body in the content
// coding c, so that a caller can decide before it sends headers.
func Supported(c string) bool {
	return codingOf(c) != codingUnknown
}

type coding int

const (
	codingUnknown coding = iota
	codingIdentity
	codingGzip
	codingDeflate
	codingZstd
)

// codingOf classifies a content coding, case-insensitively; x-gzip is
// gzip (RFC 9110 section 8.4.1.3).
func codingOf(c string) coding {
	switch {
	case c == "" || strings.EqualFold(c, "identity"):
		return codingIdentity
	case strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip"):
		return codingGzip
	case strings.EqualFold(c, "deflate"):
		return codingDeflate
	case strings.EqualFold(c, "zstd"):
		return codingZstd
	}
	return codingUnknown
}

// Decode writes body, in the HTTP content coding named by coding, decoded
// to identity to w: for clients that do not accept the coding an entry is
// stored in. It supports "" (and "identity"), "gzip" (and "x-gzip"),
// "deflate" and "zstd"; for any other coding it returns an error matching
// [ErrUnknownCoding] before writing anything ([Supported] tells in
// advance). "deflate" is the zlib format
// (RFC 9110 section 8.4.1.2); a raw deflate stream, which some servers
// send instead, is recognised and decoded too. zstd windows are limited
// to 8 MiB, as RFC 9659 allows.
//
// A body that does not decode returns an error matching [ErrCorrupt]; the
// part decoded before the fault has been written to w by then, so a
// caller that has sent its headers can only abort the response. An error
// from w is returned as it is. Decoders and the copy buffer are pooled, so
// a warm Decode allocates nothing.
func Decode(w io.Writer, coding string, body []byte) error {
	switch codingOf(coding) {
	case codingIdentity:
		_, err := w.Write(body)
		return err
	case codingGzip:
		d := gzipReaders.Get().(*gzipReader)
		defer d.release()
		d.src.Reset(body)
		if err := d.zr.Reset(&d.src); err != nil {
			return fmt.Errorf("%w: gzip body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, &d.zr, &d.buf, "gzip")
	case codingDeflate:
		d := deflateReaders.Get().(*deflateReader)
		defer d.release()
		d.src.Reset(body)
		r, err := d.reset(body)
		if err != nil {
			return fmt.Errorf("%w: deflate body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, r, &d.buf, "deflate")
	case codingZstd:
		d := zstdReaders.Get().(*zstdReader)
		defer d.release()
		if d.zr == nil {
			zr, err := zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1), // decode in this goroutine
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(8<<20))
			if err != nil {
				return fmt.Errorf("codec: zstd decoder: %w", err)
			}
			d.zr = zr
		}
		d.src.Reset(body)
		if err := d.zr.Reset(&d.src); err != nil {
			return fmt.Errorf("%w: zstd body: %w", ErrCorrupt, err)
		}
		return copyDecoded(w, d.zr, &d.buf, "zstd")
	}
	return fmt.Errorf("%w %q", ErrUnknownCoding, coding)
}

// copyBufSize is the size of the pooled buffers Decode copies through:
// one write to w per 16 KiB of decoded body.
const copyBufSize = 16 << 10

// copyDecoded copies r to w through buf, telling read faults (a corrupt
// body) from write faults (the client).
func copyDecoded(w io.Writer, r io.Reader, buf *[copyBufSize]byte, coding string) error {
	for {
		n, rerr := r.Read(buf[:])
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%w: %s body: %w", ErrCorrupt, coding, rerr)
		}
	}
}

// gzipReader is a pooled gzip decoder with its input and copy buffer.
type gzipReader struct {
	zr  gzip.Reader // the zero value is ready for Reset
	src bytes.Reader
	buf [copyBufSize]byte
}

var gzipReaders = sync.Pool{New: func() any { return new(gzipReader) }}

func (d *gzipReader) release() {
	d.src.Reset(nil) // do not keep the body alive from the pool
	gzipReaders.Put(d)
}

// deflateReader is a pooled zlib decoder and raw deflate decoder with
// their input and copy buffer; each decoder is made on first use.
type deflateReader struct {
	zr  io.ReadCloser // zlib, also a zlib.Resetter
	fr  io.ReadCloser // raw deflate, also a flate.Resetter
	src bytes.Reader
	buf [copyBufSize]byte
}

var deflateReaders = sync.Pool{New: func() any { return new(deflateReader) }}

// reset points the decoder that fits body at d.src: zlib when body starts
// with a zlib header (RFC 1950 section 2.2: compression method 8 and a
// check value making the first two bytes a multiple of 31), raw deflate
// otherwise.
func (d *deflateReader) reset(body []byte) (io.Reader, error) {
	if len(body) >= 2 && body[0]&0x0f == 8 && body[0]>>4 <= 7 && (uint(body[0])<<8|uint(body[1]))%31 == 0 {
		if d.zr == nil {
			zr, err := zlib.NewReader(&d.src)
			d.zr = zr
			return zr, err
		}
		return d.zr, d.zr.(zlib.Resetter).Reset(&d.src, nil)
	}
	if d.fr == nil {
		d.fr = flate.NewReader(&d.src)
		return d.fr, nil
	}
	return d.fr, d.fr.(flate.Resetter).Reset(&d.src, nil)
}

func (d *deflateReader) release() {
	d.src.Reset(nil)
	deflateReaders.Put(d)
}

// zstdReader is a pooled zstd decoder, made on first use, with its input
// and copy buffer. With a concurrency of 1 the decoder runs no goroutines,
// so a decoder the pool drops needs no Close.
type zstdReader struct {
	zr  *zstd.Decoder
	src bytes.Reader
	buf [copyBufSize]byte
}

var zstdReaders = sync.Pool{New: func() any { return new(zstdReader) }}

func (d *zstdReader) release() {
	if d.zr != nil {
		_ = d.zr.Reset(nil)
	}
	d.src.Reset(nil)
	zstdReaders.Put(d)
}
