package codec

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
)

// FuzzDictionaryOpen feeds arbitrary bodies, labelled as compressed with
// a route's dictionary, to the codec: it never panics and never returns a
// body over its limit; what does not decode is an error.
func FuzzDictionaryOpen(f *testing.F) {
	store := newMemStore(f)
	d, err := NewDictionary(store, routeName, WithMaxBody(64<<10), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close(context.Background())
	for id := 1; d.Current() == 0; id++ {
		if id > 10_000 {
			f.Fatal("no dictionary")
		}
		d.Encode(context.Background(), item(id))
		for !d.idle() {
			time.Sleep(time.Millisecond) // let the training run
		}
	}
	_, good := d.Encode(context.Background(), item(1))
	f.Add(good.Body)
	f.Add(good.Body[:len(good.Body)/2])
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add([]byte("not zstd at all"))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := storage.Entry{Coding: envelope.DictionaryCoding, Body: bytes.Clone(body)}
		err := d.Open(context.Background(), &e)
		if err == nil && (e.Coding != "" || int64(len(e.Body)) > d.maxBody) {
			t.Fatalf("decoded to coding %q, %d bytes", e.Coding, len(e.Body))
		}
	})
}
