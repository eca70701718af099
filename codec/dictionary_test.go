package codec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

// item is a 2 KB JSON answer of one shape, the kind a dictionary is for.
func item(id int) *storage.Entry {
	body := fmt.Appendf(nil, `{"id":%d,"name":"product %d","description":%q,"tags":["garden","tools","outdoor"],"price":{"amount":%d,"currency":"EUR"},"stock":%d}`,
		id, id, bytes.Repeat([]byte("sturdy steel spade with an ash handle "), 40+id%7), 1000+id, id%13)
	return &storage.Entry{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
}

// newDictionary returns a dictionary codec over store with the test's
// counters.
func newDictionary(t *testing.T, store storage.DictionaryStore, trained, loaded *atomic.Int64) *Dictionary {
	t.Helper()
	d, err := NewDictionary(store, "GET /items/%7Bid%7D|", WithCheckInterval(10*time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), WithEvents(Events{
			Trained: func() { trained.Add(1) },
			Loaded:  func(n int) { loaded.Add(int64(n)) },
			Error:   func(ctx context.Context, op string, err error) { t.Logf("%s: %v", op, err) },
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDictionaryCodec(t *testing.T) {
	store := newMemStore(t)
	var trained, loaded atomic.Int64
	a := newDictionary(t, store, &trained, &loaded)
	ctx := t.Context()

	// Before a dictionary exists bodies are gzipped, and kept to train one.
	e := item(1)
	served, stored := a.Encode(ctx, e)
	if served != e || stored.Coding != "gzip" || !bytes.Equal(e.Body, item(1).Body) {
		t.Fatalf("before training: served %p (e %p), stored coding %q", served, e, stored.Coding)
	}
	for id := 2; a.Current() == 0; id++ {
		a.Encode(ctx, item(id))
		if id > 1000 {
			t.Fatal("no dictionary after 1,000 bodies")
		}
		if trained.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, "the training to be counted", func() bool { return trained.Load() == 1 })

	_, stored = a.Encode(ctx, item(5000))
	if stored.Coding != envelope.DictionaryCoding || !stored.CacheEncoded || len(stored.Body) >= len(item(5000).Body)/2 {
		t.Fatalf("after training: coding %q, %d of %d bytes", stored.Coding, len(stored.Body), len(item(5000).Body))
	}
	// Another instance on the same store opens what the first wrote.
	b := newDictionary(t, store, new(atomic.Int64), new(atomic.Int64))
	opened := *stored
	if err := b.Open(ctx, &opened); err != nil {
		t.Fatal(err)
	}
	if opened.Coding != "" || !bytes.Equal(opened.Body, item(5000).Body) {
		t.Fatalf("opened: coding %q, body %.40q", opened.Coding, opened.Body)
	}
	// An entry whose dictionary the store lost is a miss, not a fault.
	lost := *stored
	lost.Body = bytes.Clone(stored.Body)
	store.Flush()
	c := newDictionary(t, store, new(atomic.Int64), new(atomic.Int64))
	if err := c.Open(ctx, &lost); !errors.Is(err, ErrUnknownDictionary) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lost dictionary: %v", err)
	}
	// A body that does not decode is corrupt.
	bad := *stored
	bad.Body = bytes.Clone(stored.Body)
	var fh zstd.Header
	if err := fh.Decode(bad.Body); err != nil {
		t.Fatal(err)
	}
	for i := fh.HeaderSize; i < len(bad.Body); i++ {
		bad.Body[i] ^= 0x5a
	}
	if err := a.Open(ctx, &bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt body: %v", err)
	}
	// Plain codecs cannot open dictionary entries.
	if err := Gzip().Open(ctx, &storage.Entry{Coding: envelope.DictionaryCoding}); !errors.Is(err, ErrUnknownDictionary) {
		t.Fatalf("gzip codec on a dictionary entry: %v", err)
	}
	if err := Identity().Open(ctx, &storage.Entry{Coding: "br"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("identity codec on br: %v", err)
	}
}

func TestDictionaryOptions(t *testing.T) {
	store := newMemStore(t)
	for _, tt := range []struct {
		name string
		give []Option
	}{
		{"negative max body", []Option{WithMaxBody(-1)}},
		{"negative interval", []Option{WithCheckInterval(-time.Second)}},
		{"negative timeout", []Option{WithStoreTimeout(-time.Second)}},
	} {
		if _, err := NewDictionary(store, "r|", tt.give...); err == nil {
			t.Errorf("%s: NewDictionary succeeded", tt.name)
		}
	}
	if _, err := NewDictionary(store, "bad{route", nil...); err == nil {
		t.Error("a route name with a brace was accepted")
	}
	if _, err := NewDictionary(nil, "r|"); err == nil {
		t.Error("a nil store was accepted")
	}
}

// newMemStore returns an empty in-process store.
func newMemStore(t testing.TB) *memstore.Store {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A dictionary-compressed body is decoded only up to the route's
// MaxBodyBytes, whether its frame states its size or not: a few
// kilobytes of zstd can hold a gigabyte of zeros.
func TestDictionaryDecodeBounded(t *testing.T) {
	store := newMemStore(t)
	a := newDictionary(t, store, new(atomic.Int64), new(atomic.Int64))
	ctx := t.Context()
	for id := 1; a.Current() == 0; id++ {
		a.Encode(ctx, item(id))
		if id > 1000 {
			t.Fatal("no dictionary after 1,000 bodies")
		}
		time.Sleep(time.Millisecond)
	}
	cur, raw, err := store.Dictionaries(ctx, "GET /items/%7Bid%7D|")
	if err != nil || raw[cur] == nil {
		t.Fatalf("the trained dictionary: %d, %v", cur, err)
	}
	const limit = 64 << 10
	b, err := NewDictionary(store, "GET /items/%7Bid%7D|", WithMaxBody(limit), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })

	zeros := make([]byte, 8<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDict(raw[cur]))
	if err != nil {
		t.Fatal(err)
	}
	sized := enc.EncodeAll(zeros, nil)
	var streamed bytes.Buffer
	enc.Reset(&streamed)
	enc.Write(zeros)
	enc.Close()
	within := enc.EncodeAll(zeros[:limit/2], nil)

	for _, tt := range []struct {
		name    string
		body    []byte
		wantFCS bool
	}{
		{"size stated", sized, true},
		{"size not stated", streamed.Bytes(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h zstd.Header
			if err := h.Decode(tt.body); err != nil || h.HasFCS != tt.wantFCS {
				t.Fatalf("the crafted frame: %d bytes, FCS %v (%v), want FCS %v", len(tt.body), h.HasFCS, err, tt.wantFCS)
			}
			e := &storage.Entry{Status: 200, Coding: envelope.DictionaryCoding, CacheEncoded: true, Body: tt.body}
			if err := b.Open(ctx, e); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%d bytes of zstd holding 8 MB, limit 64 KB: %v, want ErrCorrupt", len(tt.body), err)
			}
		})
	}
	e := &storage.Entry{Status: 200, Coding: envelope.DictionaryCoding, CacheEncoded: true, Body: within}
	if err := b.Open(ctx, e); err != nil || len(e.Body) != limit/2 {
		t.Errorf("a body within the limit: %d bytes, %v", len(e.Body), err)
	}
}
