package httpcache

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/readthrough/readthrough/envelope"
	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/storage"
)

// Vary as the response says it (standards mode, RFC 9111 section 4.1).
// The request headers a route's policy lists in Vary are in every key.
// A response that varies on others is stored under a secondary key: the
// request's own field holds a vary marker naming those headers
// (envelope.EncodeVary), and the response is stored in a field derived
// from the request's field and its normalised values of them. A hit
// reads the marker, derives its secondary field and reads that: one more
// round trip, only for responses that vary on unkeyed headers. A
// secondary field is the primary field's 16 bytes followed by 16 bytes
// of the values' digest, so the primary key is always known from it.

// primaryFieldLen is the length of a keying.Key's field.
const primaryFieldLen = 16

// unkeyedVary returns the names, canonical, sorted and unique, of the
// request headers h's Vary lists that the route is not keyed on, but
// Accept-Encoding, which the cache itself answers (it stores the coding
// and decodes for clients that do not accept it). ok is false for
// Vary: * (which never matches another request), for a header the fill
// does not send the origin (originStripped), and for more than
// envelope.MaxVaryNames names.
func (rt *route) unkeyedVary(h http.Header) (names []string, ok bool) {
	for _, v := range h["Vary"] {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" {
				return nil, false
			}
			f = textproto.CanonicalMIMEHeaderKey(f)
			if slices.Contains(originStripped[:], f) {
				// The origin never sees these (originRequest): a
				// variant keyed on the client's value of one would be
				// another request's answer.
				return nil, false
			}
			if f == "" || f == "Accept-Encoding" || rt.varies(f) || slices.Contains(names, f) {
				continue
			}
			names = append(names, f)
		}
	}
	if len(names) > envelope.MaxVaryNames {
		return nil, false
	}
	slices.Sort(names)
	return names, true
}

// listFields are request fields whose values are comma separated lists
// of case-insensitive tokens, normalised as such before two requests'
// values are compared.
var listFields = map[string]bool{
	"Accept": true, "Accept-Charset": true, "Accept-Language": true, "Accept-Encoding": true,
}

// normalizedValue is the value of the request header name in hdr as the
// secondary key compares it: its field lines combined, whitespace
// around them and, for list fields, around their elements removed, and
// list fields lower-cased (RFC 9111 section 4.1). ok is false when the
// header is absent, which matches only another absent one.
func normalizedValue(hdr http.Header, name string) (string, bool) {
	lines, ok := hdr[name]
	if !ok {
		return "", false
	}
	if !listFields[name] {
		parts := make([]string, len(lines))
		for i, l := range lines {
			parts[i] = strings.TrimSpace(l)
		}
		return strings.Join(parts, ", "), true
	}
	var elems []string
	for _, l := range lines {
		for el := range strings.SplitSeq(l, ",") {
			if el = strings.TrimSpace(el); el != "" {
				elems = append(elems, strings.ToLower(strings.ReplaceAll(el, " ", "")))
			}
		}
	}
	return strings.Join(elems, ","), true
}

// secondaryKey is the key a response varying on names is stored under
// for a request with header hdr, whose primary key is k (or a secondary
// key of it).
func secondaryKey(k keying.Key, names []string, hdr http.Header) keying.Key {
	h := sha256.New()
	for _, name := range names {
		h.Write([]byte(name))
		if v, ok := normalizedValue(hdr, name); ok {
			h.Write([]byte{0, 1})
			h.Write([]byte(v))
		} else {
			h.Write([]byte{0, 0})
		}
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	k.Field = primaryKey(k).Field + string(sum[:primaryFieldLen])
	return k
}

// primaryKey is the request's own key of k, which may be a secondary one.
func primaryKey(k keying.Key) keying.Key {
	if len(k.Field) > primaryFieldLen {
		k.Field = k.Field[:primaryFieldLen]
	}
	return k
}

// isSecondary reports whether k is a secondary key.
func isSecondary(k keying.Key) bool { return len(k.Field) > primaryFieldLen }

// varyMatch reports whether a request with header b may be served e, a
// response to a request with header a: they agree on every unkeyed
// header e varies on (standards mode). In the default mode a stored
// response never varies on an unkeyed header.
func (rt *route) varyMatch(e *storage.Entry, a, b http.Header) bool {
	if !rt.policy.Standards || a == nil {
		return true
	}
	names, ok := rt.unkeyedVary(e.Header)
	if !ok {
		return false
	}
	for _, name := range names {
		va, oka := normalizedValue(a, name)
		vb, okb := normalizedValue(b, name)
		if oka != okb || va != vb {
			return false
		}
	}
	return true
}

// resolveVary follows a vary marker: when raw, read at k, is one and the
// route is in standards mode, it reads the response stored for hdr's
// values of the headers the marker names and returns its key and bytes.
// Anything else comes back as it went in. A marker that does not decode
// is reported and deleted: a miss.
func (rt *route) resolveVary(ctx context.Context, k keying.Key, raw []byte, err error, hdr http.Header) (keying.Key, []byte, error) {
	if err != nil || !rt.policy.Standards || !envelope.IsVary(raw) {
		return k, raw, err
	}
	if hdr == nil {
		return k, nil, storage.ErrNotFound
	}
	names, err := envelope.DecodeVary(raw)
	if err != nil {
		rt.stats.add(cEntriesRejected, 1)
		rt.reportError(ctx, "decode vary marker", err)
		rt.dropField(ctx, k)
		return k, nil, storage.ErrNotFound
	}
	k2 := secondaryKey(k, names, hdr)
	sctx, cancel := rt.cache.storeCtx(ctx)
	raw, err = rt.cache.store.Get(sctx, k2.Bucket, k2.Field)
	cancel()
	rt.cache.observe(err)
	if err == nil && envelope.IsVary(raw) {
		// Only a primary field holds a marker.
		rt.dropField(ctx, k2)
		return k2, nil, storage.ErrNotFound
	}
	return k2, raw, err
}

// storeVary writes the vary marker of names in the primary field of k,
// fenced as the response it points at was.
func (rt *route) storeVary(ctx context.Context, k keying.Key, names []string, opts storage.SetOptions) {
	p := primaryKey(k)
	sctx, cancel := rt.cache.storeCtx(ctx)
	err := rt.cache.store.Set(sctx, p.Bucket, p.Field, envelope.EncodeVary(nil, names), opts)
	cancel()
	rt.cache.observe(err)
	if err != nil && !errors.Is(err, storage.ErrPurged) && !errors.Is(err, storage.ErrBucketFull) {
		rt.reportError(ctx, "store vary marker", err)
	}
}
