package envelope

import (
	"bytes"
	"fmt"
	"net/textproto"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// VersionVary is the version byte of a vary marker: the value a route in
// standards mode stores in a request's own field when the response
// varies on request headers the route is not keyed on (RFC 9111 section
// 4.1). The marker names those headers; the response itself is stored in
// a secondary field derived from the request's values of them. Readers
// that do not know this version treat the marker as a miss, never as a
// response.
const VersionVary = 3

// MaxVaryNames bounds the header names one vary marker holds: a response
// that varies on more is not stored.
const MaxVaryNames = 16

// IsVary reports whether raw is a vary marker.
func IsVary(raw []byte) bool { return len(raw) > 0 && raw[0] == VersionVary }

// EncodeVary appends to dst the vary marker naming the request headers
// names, which must be canonical, sorted and at most [MaxVaryNames]:
// the version byte, then a msgpack array of the names as strings.
func EncodeVary(dst []byte, names []string) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeArrayLen(len(names))
	for _, n := range names {
		_ = enc.EncodeString(n)
	}
	return append(append(dst, VersionVary), buf.Bytes()...)
}

// DecodeVary returns the header names of the vary marker raw. It returns
// an error matching [ErrCorrupt] for a marker that is not canonical,
// sorted, unique, valid header names, at most [MaxVaryNames] of them
// and at least one, followed by nothing.
func DecodeVary(raw []byte) ([]string, error) {
	if !IsVary(raw) {
		return nil, fmt.Errorf("%w: not a vary marker", ErrCorrupt)
	}
	r := bytes.NewReader(raw[1:])
	dec := msgpack.NewDecoder(r)
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 1 || n > MaxVaryNames {
		return nil, fmt.Errorf("%w: vary marker of %d names (want 1 to %d): %v", ErrCorrupt, n, MaxVaryNames, err)
	}
	names := make([]string, n)
	for i := range names {
		s, err := dec.DecodeString()
		if err != nil {
			return nil, fmt.Errorf("%w: vary marker name %d: %v", ErrCorrupt, i, err)
		}
		if !isToken([]byte(s)) || s == "" || textproto.CanonicalMIMEHeaderKey(s) != s {
			return nil, fmt.Errorf("%w: vary marker name %q is not a canonical header name", ErrCorrupt, s)
		}
		if i > 0 && names[i-1] >= s {
			return nil, fmt.Errorf("%w: vary marker names not sorted and unique", ErrCorrupt)
		}
		names[i] = s
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the vary marker", ErrCorrupt, r.Len())
	}
	return slices.Clip(names), nil
}
