package httpcache

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
)

var _ http.Flusher = (*recorder)(nil)

// recorder streams the origin's response to the client while keeping a
// copy, capped at the policy's maximum body size, for the store.
//
// When holdErrors is set (a stale entry may be served if the origin fails),
// a 5xx response is held back from the client entirely so the stale entry
// can be served in its place.
type recorder struct {
	w        http.ResponseWriter // the client; nil for a background refresh
	header   http.Header
	limit    int64
	onHeader func(status int, h http.Header) // last chance to edit headers before they go out

	holdErrors bool
	headOnly   bool // the client asked HEAD: record the body, do not send it

	status    int
	written   int64 // body bytes the handler wrote
	buf       *bytes.Buffer
	overLimit bool
	flushed   bool
	held      bool // status is a held-back 5xx
	clientErr error
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newRecorder(w http.ResponseWriter, limit int64) *recorder {
	rec := &recorder{w: w, limit: limit, buf: bufPool.Get().(*bytes.Buffer)}
	if w != nil {
		rec.header = w.Header()
	} else {
		rec.header = http.Header{}
	}
	return rec
}

// release returns the buffer to the pool; the recorder must not be used
// afterwards, nor any slice of its body.
func (rec *recorder) release() {
	if rec.buf != nil {
		putBuf(rec.buf)
	}
	rec.buf = nil
}

// putBuf returns a buffer to the pool unless it grew too large to keep.
func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 4<<20 {
		b.Reset()
		bufPool.Put(b)
	}
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.status != 0 {
		return // superfluous; net/http logs it for the client's writer
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		if rec.w != nil && !rec.holdErrors {
			rec.w.WriteHeader(status) // 1xx pass through
		}
		return
	}
	rec.status = status
	if rec.holdErrors && status >= 500 {
		rec.held = true
		return
	}
	if rec.onHeader != nil {
		rec.onHeader(status, rec.header)
	}
	if rec.w != nil {
		rec.w.WriteHeader(status)
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	rec.written += int64(len(p))
	if !rec.overLimit {
		if int64(rec.buf.Len()+len(p)) > rec.limit {
			rec.overLimit = true
			rec.buf.Reset()
		} else {
			rec.buf.Write(p)
		}
	}
	if rec.held || rec.w == nil || rec.headOnly {
		return len(p), nil
	}
	if rec.clientErr == nil {
		_, rec.clientErr = rec.w.Write(p)
	}
	// A client that went away does not stop a response that is still being
	// recorded for others; once it no longer is, let the handler know.
	if rec.clientErr != nil && !rec.recording() {
		return 0, rec.clientErr
	}
	return len(p), nil
}

// recording reports whether the body is still being kept for the store.
func (rec *recorder) recording() bool { return !rec.overLimit && !rec.flushed }

// Flush marks the response as streamed (streams are not stored) and
// forwards the flush to the client.
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	rec.flushed = true
	if rec.held || rec.w == nil {
		return
	}
	_ = http.NewResponseController(rec.w).Flush()
}

// Unwrap returns the client's writer so [http.ResponseController] reaches
// its deadlines and flushing.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.w }

// complete reports whether the handler produced a whole response that may
// be stored: a final status, nothing flushed, within the size limit, and a
// body as long as any Content-Length it declared.
func (rec *recorder) complete() bool {
	if rec.status == 0 || !rec.recording() {
		return false
	}
	if cl := rec.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n != rec.written {
			return false
		}
	}
	return true
}

// releaseHeld sends a held-back 5xx response to the client after all.
func (rec *recorder) releaseHeld() {
	rec.held = false
	if rec.onHeader != nil {
		rec.onHeader(rec.status, rec.header)
	}
	rec.w.WriteHeader(rec.status)
	if !rec.overLimit && !rec.headOnly {
		rec.w.Write(rec.buf.Bytes()) //nolint:errcheck // best effort
	}
}
