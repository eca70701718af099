package envelope

import (
	"errors"
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestVaryRoundTrip(t *testing.T) {
	names := []string{"Accept-Language", "X-Tenant"}
	raw := EncodeVary(nil, names)
	if !IsVary(raw) || raw[0] != VersionVary {
		t.Fatalf("EncodeVary = %x, want version %d first", raw, VersionVary)
	}
	got, err := DecodeVary(raw)
	if err != nil || !slices.Equal(got, names) {
		t.Fatalf("DecodeVary = %q, %v; want %q", got, err, names)
	}
	// An entry decoder that does not know markers takes one for a miss.
	if err := Decode(raw, nil); !errors.Is(err, ErrVersion) {
		t.Errorf("Decode(marker) = %v, want ErrVersion", err)
	}
}

func TestVaryCorrupt(t *testing.T) {
	marker := func(names ...any) []byte {
		b, _ := msgpack.Marshal(names)
		return append([]byte{VersionVary}, b...)
	}
	many := make([]any, MaxVaryNames+1)
	for i := range many {
		many[i] = "X-" + string(rune('A'+i))
	}
	for name, raw := range map[string][]byte{
		"empty":          {VersionVary},
		"no names":       marker(),
		"too many":       marker(many...),
		"not canonical":  marker("x-tenant"),
		"not a token":    marker("X Tenant"),
		"unsorted":       marker("X-B", "X-A"),
		"duplicate":      marker("X-A", "X-A"),
		"not a string":   marker(1),
		"trailing bytes": append(marker("X-A"), 0),
		"entry version":  append([]byte{Version}, marker("X-A")[1:]...),
	} {
		if _, err := DecodeVary(raw); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeVary = %v, want ErrCorrupt", name, err)
		}
	}
}
