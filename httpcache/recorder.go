package httpcache

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"time"
)

var _ http.Flusher = (*recorder)(nil)

// recorder stands between the origin handler and the client during a fill.
//
// A response the cache may store is held in full (it is bounded by the
// policy's maximum body size) and sent to the client only once the handler
// has returned and the fill has been shared and stored: the requests
// waiting for the fill, here and on other instances, never wait for the
// filling client to read it, and the Cache-Status it gets says whether
// the response was stored. The headers held are those the handler had set
// when it wrote the status: what it sets afterwards would not have reached
// the client without the cache, so it is neither sent nor stored.
//
// A response that turns out not to be storable (its status or headers say
// so, its body passes the limit, the handler flushes it, or writes around
// the recorder) is streamed: what was held goes out, the rest passes
// through, and onUnshared lets the fill release its waiters at once.
//
// When holdErrors is set (a stale entry may be served if the origin
// fails), a 5xx response is held back from the client entirely so the
// stale entry can be served in its place.
type recorder struct {
	w      http.ResponseWriter // the client; nil for a background refresh
	header http.Header
	limit  int64

	// decide is called once, with the final status and the header map in
	// canonical form, before anything of the response is sent; it may edit
	// the header and reports whether the response may be stored.
	decide func(status int, h http.Header) bool
	// onSend sets the response's Cache-Status in h right before a
	// streamed response's headers go out.
	onSend func(h http.Header)
	// onUnshared is called once when the response turns out not to be
	// storable.
	onUnshared func()

	holdErrors bool
	headOnly   bool // the client asked HEAD: record the body, do not send it

	status   int
	holding  bool        // the response is held for the store
	snapshot http.Header // the headers as at WriteHeader, while holding
	written  int64       // body bytes the handler wrote
	// clientTime is the time spent writing to the client while the
	// handler ran (streamed responses only: a held one is sent after).
	clientTime time.Duration
	buf        *bytes.Buffer
	overLimit  bool
	tainted    bool // the handler wrote around the recorder or hijacked the connection
	held       bool // status is a held-back 5xx
	clientErr  error
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
	// Decided on the header as it goes out, with every name in canonical
	// form: a handler's w.Header()["cache-control"] counts as much as
	// Cache-Control does to the client.
	canonicalize(rec.header)
	if rec.holdErrors && status >= 500 {
		rec.held = true
		return
	}
	if !rec.tainted && rec.decide != nil && rec.decide(status, rec.header) {
		rec.holding = true
		rec.snapshot = rec.header.Clone()
		return
	}
	rec.stream()
}

// stream sends the response's headers, and what was held of its body, to
// the client, and lets the rest pass through; the response is then not
// stored.
func (rec *recorder) stream() {
	if rec.holding {
		rec.holding = false
		restore(rec.header, rec.snapshot)
		rec.snapshot = nil
	}
	if rec.onUnshared != nil {
		rec.onUnshared()
		rec.onUnshared = nil
	}
	if rec.onSend != nil {
		rec.onSend(rec.header)
	}
	if rec.w == nil {
		return
	}
	defer rec.timeClient(time.Now())
	rec.w.WriteHeader(rec.status)
	if rec.buf.Len() > 0 && !rec.headOnly {
		_, rec.clientErr = rec.w.Write(rec.buf.Bytes())
	}
	rec.buf.Reset()
}

// timeClient adds the time since start to the time the handler spent
// blocked on the client (a slow reader of a streamed response), which
// is not the origin's: see originTime.
func (rec *recorder) timeClient(start time.Time) { rec.clientTime += time.Since(start) }

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	rec.written += int64(len(p))
	switch {
	case rec.held:
		// Kept to be sent if the stale entry cannot be served after all.
		if !rec.overLimit && int64(rec.buf.Len()+len(p)) > rec.limit {
			rec.overLimit = true
			rec.buf.Reset()
		}
		if !rec.overLimit {
			rec.buf.Write(p)
		}
		return len(p), nil
	case rec.holding:
		if int64(rec.buf.Len()+len(p)) <= rec.limit {
			rec.buf.Write(p)
			return len(p), nil
		}
		rec.overLimit = true
		rec.stream()
	}
	if rec.w == nil || rec.headOnly {
		return len(p), nil
	}
	if rec.clientErr == nil {
		start := time.Now()
		_, rec.clientErr = rec.w.Write(p)
		rec.timeClient(start)
	}
	if rec.clientErr != nil {
		return 0, rec.clientErr
	}
	return len(p), nil
}

// Flush marks the response as streamed (streams are not stored) and
// forwards the flush to the client.
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.held {
		return
	}
	if rec.holding {
		rec.stream()
	}
	if rec.w == nil {
		return
	}
	defer rec.timeClient(time.Now())
	_ = http.NewResponseController(rec.w).Flush()
}

// taint records that the handler wrote to the client around the recorder
// or took over the connection: what the client got is unknown, so nothing
// is stored, and what was held goes out first.
func (rec *recorder) taint() {
	if rec.tainted {
		return
	}
	rec.tainted = true
	if rec.holding {
		rec.stream()
	} else if rec.onUnshared != nil {
		rec.onUnshared()
		rec.onUnshared = nil
	}
}

// Unwrap returns the client's writer, behind a guard that notices writes
// and hijacks made through it, so that [http.ResponseController] reaches
// the client's deadlines, full duplex and hijacking.
func (rec *recorder) Unwrap() http.ResponseWriter {
	if rec.w == nil {
		return nil
	}
	return unwrapped{rec}
}

// unwrapped is the client's writer as the handler reaches it through
// [recorder.Unwrap].
type unwrapped struct{ rec *recorder }

func (u unwrapped) Header() http.Header { return u.rec.w.Header() }

func (u unwrapped) Write(p []byte) (int, error) {
	u.rec.taint()
	return u.rec.w.Write(p)
}

func (u unwrapped) WriteHeader(status int) {
	u.rec.taint()
	u.rec.w.WriteHeader(status)
}

// Hijack hands the connection over; the response is then whatever the
// handler writes to it, which the cache never sees: nothing is stored.
func (u unwrapped) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	u.rec.taint()
	return http.NewResponseController(u.rec.w).Hijack()
}

func (u unwrapped) Unwrap() http.ResponseWriter { return u.rec.w }

// complete reports whether the handler produced a whole response that may
// be stored: held back for the store, nothing flushed, within the size
// limit, and a body as long as any Content-Length it declared.
func (rec *recorder) complete() bool {
	if !rec.holding || rec.tainted {
		return false
	}
	if cl := headerValue(rec.snapshot, "Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n != rec.written {
			return false
		}
	}
	return true
}

// deliver sends a held response to the client, with the headers held and
// cacheStatus; a response that was never held has been sent already.
func (rec *recorder) deliver(cacheStatus string) {
	if !rec.holding {
		return
	}
	rec.holding = false
	if rec.w == nil {
		return
	}
	h := rec.header
	restore(h, rec.snapshot)
	h["Cache-Status"] = []string{cacheStatus}
	if _, ok := h["Content-Length"]; !ok && bodyAllowed(rec.status) {
		h["Content-Length"] = []string{strconv.FormatInt(rec.written, 10)}
	}
	rec.w.WriteHeader(rec.status)
	if !rec.headOnly {
		rec.w.Write(rec.buf.Bytes()) //nolint:errcheck // the client went away; nothing to do
	}
}

// bodyAllowed reports whether a response with status may carry a body
// (RFC 9110 section 6.4.1).
func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status >= 200
}

// releaseHeld sends a held-back 5xx response to the client after all.
func (rec *recorder) releaseHeld() {
	rec.held = false
	if rec.onSend != nil {
		rec.onSend(rec.header)
	}
	if rec.onUnshared != nil {
		rec.onUnshared()
		rec.onUnshared = nil
	}
	rec.w.WriteHeader(rec.status)
	if !rec.overLimit && !rec.headOnly {
		rec.w.Write(rec.buf.Bytes()) //nolint:errcheck // best effort
	}
}

// canonicalize moves the values of every header name not in canonical
// form to its canonical name, so that decisions and lookups by canonical
// name see every value the client will be sent.
func canonicalize(h http.Header) {
	for name, v := range h {
		c := textproto.CanonicalMIMEHeaderKey(name)
		if c == name {
			continue
		}
		delete(h, name)
		if len(v) > 0 {
			h[c] = append(h[c][:len(h[c]):len(h[c])], v...)
		}
	}
}
