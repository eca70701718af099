package codec

import (
	"context"
	"errors"
	"fmt"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/storage"
)

// Errors of [Codec.Open] and [Decode]; match them with [errors.Is].
var (
	// ErrCorrupt is a stored body that does not decode in its coding: the
	// entry is a miss, and the cache deletes it.
	ErrCorrupt = errors.New("codec: corrupt body")
	// ErrUnavailable is an entry this codec cannot open here and now, for
	// no fault of the entry: a content coding this release does not know,
	// or a dictionary this process cannot load. The entry is a miss, and
	// the cache leaves it in the store, since its writer may still read
	// it; the fill replaces it.
	ErrUnavailable = errors.New("codec: entry cannot be opened here")
	// ErrUnknownDictionary is the [ErrUnavailable] of an entry compressed
	// with a dictionary the store no longer has, or that a route without
	// dictionary compression meets.
	ErrUnknownDictionary = fmt.Errorf("%w: compressed with a dictionary the store no longer has", ErrUnavailable)
)

// A Codec is how the cache stores the bodies of one route
// (policy.Policy.Compression chooses it): which form an entry is served
// in to the requests waiting for its fill, which form it is stored in,
// and how a stored entry is opened again. A Codec is safe for concurrent
// use; one may run background work, which Close stops.
//
// Bodies in an HTTP content coding that a client does not accept are
// decoded per client with [Decode]; a codec only deals with the forms no
// client can take.
type Codec interface {
	// Encode compresses a new entry, whose body is as the origin sent
	// it. It returns the entry to serve the requests that wait for the
	// fill and the entry to store; either may be e. It does not modify
	// e's body, which the caller may share.
	Encode(ctx context.Context, e *storage.Entry) (served, stored *storage.Entry)
	// Open turns an entry read from the store into the form it is
	// served in, in place. It returns an error matching
	// [ErrUnavailable] for an entry it cannot open for no fault of the
	// entry, and one matching [ErrCorrupt] for an entry that does not
	// decode.
	Open(ctx context.Context, e *storage.Entry) error
	// Close stops the codec's background work and waits for what runs
	// until ctx ends. It is idempotent; the codec keeps encoding and
	// opening entries after it, without background work.
	Close(ctx context.Context) error
}

// Gzip returns the codec that gzips bodies with [Compress]: clients that
// accept gzip (every browser, Go's http.Client) get the stored bytes as
// they are, so a hit costs no compression work; the others get them
// decoded. Bodies the origin encoded are stored as they came.
func Gzip() Codec { return gzipCodec{} }

// Identity returns the codec that stores bodies as the origin sent them:
// no compression work on fills, none on hits, and the most memory.
func Identity() Codec { return identityCodec{} }

type gzipCodec struct{}

func (gzipCodec) Encode(_ context.Context, e *storage.Entry) (served, stored *storage.Entry) {
	c := *e
	Compress(&c)
	return &c, &c
}

func (gzipCodec) Open(_ context.Context, e *storage.Entry) error { return openPlain(e) }

func (gzipCodec) Close(context.Context) error { return nil }

type identityCodec struct{}

func (identityCodec) Encode(_ context.Context, e *storage.Entry) (served, stored *storage.Entry) {
	return e, e
}

func (identityCodec) Open(_ context.Context, e *storage.Entry) error { return openPlain(e) }

func (identityCodec) Close(context.Context) error { return nil }

// openPlain opens an entry for a codec without dictionaries: an entry in
// an HTTP content coding [Decode] knows is served as it is; one in the
// dictionary coding, or in a coding this release does not know, is
// unavailable.
func openPlain(e *storage.Entry) error {
	switch {
	case e.Coding == envelope.DictionaryCoding:
		return ErrUnknownDictionary
	case !Supported(e.Coding):
		return fmt.Errorf("%w: content coding %q, which this release cannot decode", ErrUnavailable, e.Coding)
	}
	return nil
}
