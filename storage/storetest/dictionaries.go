package storetest

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/readthrough/readthrough/storage"
)

// dictRoute is a route as the middleware names it: the escaped pattern,
// with no braces, and the bucket separator.
const dictRoute = "GET /items/%7Bid%7D|"

// dictionaries returns the store as a DictionaryStore, skipping the test when
// it is not one.
func dictionaries(t *testing.T, s Store) storage.DictionaryStore {
	t.Helper()
	d, ok := s.(storage.DictionaryStore)
	if !ok {
		t.Skipf("%T does not implement storage.DictionaryStore", s)
	}
	return d
}

// dictBytes is a 32 KB binary dictionary that differs for each seed.
func dictBytes(seed uint32) []byte {
	b := make([]byte, 32<<10)
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	b[0], b[1] = 0, '{' // bytes a careless encoding would mangle
	return b
}

func mustAddDictionary(t *testing.T, d storage.DictionaryStore, route string, id uint32, dict []byte, wantCurrent uint32) {
	t.Helper()
	cur, err := d.AddDictionary(t.Context(), route, id, dict)
	if err != nil {
		t.Fatalf("AddDictionary(%q, %d): %v", route, id, err)
	}
	if cur != wantCurrent {
		t.Fatalf("AddDictionary(%q, %d) = current %d, want %d", route, id, cur, wantCurrent)
	}
}

// wantDictionaries checks the current id of route, with both
// CurrentDictionary and storage.DictionaryStore, and that the route holds exactly
// want.
func wantDictionaries(t *testing.T, d storage.DictionaryStore, route string, wantCurrent uint32, want map[uint32][]byte) {
	t.Helper()
	ctx := t.Context()
	cur, err := d.CurrentDictionary(ctx, route)
	if err != nil {
		t.Fatalf("CurrentDictionary(%q): %v", route, err)
	}
	if cur != wantCurrent {
		t.Fatalf("CurrentDictionary(%q) = %d, want %d", route, cur, wantCurrent)
	}
	cur, got, err := d.Dictionaries(ctx, route)
	if err != nil {
		t.Fatalf("Dictionaries(%q): %v", route, err)
	}
	if cur != wantCurrent {
		t.Fatalf("Dictionaries(%q) = current %d, want %d", route, cur, wantCurrent)
	}
	if got == nil {
		t.Fatalf("Dictionaries(%q) returned a nil map", route)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("Dictionaries(%q) holds ids %v, want %v (or other bytes)", route,
			slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

func testDictionariesEmpty(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	wantDictionaries(t, d, dictRoute, 0, map[uint32][]byte{})
	wantDictionaries(t, d, "", 0, map[uint32][]byte{})
}

func testDictionaryFirstIsCurrent(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	one := dictBytes(1)
	mustAddDictionary(t, d, dictRoute, 1, one, 1)
	wantDictionaries(t, d, dictRoute, 1, map[uint32][]byte{1: one})
	// A second instance sees it.
	wantDictionaries(t, dictionaries(t, newStore(t)), dictRoute, 1, map[uint32][]byte{1: one})
}

func testDictionarySecondKeepsCurrent(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	first, second := dictBytes(7), dictBytes(3)
	mustAddDictionary(t, d, dictRoute, 7, first, 7)
	// Another instance adds its own: the first stays current.
	mustAddDictionary(t, dictionaries(t, newStore(t)), dictRoute, 3, second, 7)
	wantDictionaries(t, d, dictRoute, 7, map[uint32][]byte{7: first, 3: second})
	// The largest id is a valid one.
	big := dictBytes(^uint32(0))
	mustAddDictionary(t, d, dictRoute, ^uint32(0), big, 7)
	wantDictionaries(t, d, dictRoute, 7, map[uint32][]byte{7: first, 3: second, ^uint32(0): big})
}

func testDictionaryReplace(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	ctx := t.Context()
	one, two := dictBytes(1), dictBytes(2)
	mustAddDictionary(t, d, dictRoute, 1, one, 1)
	mustAddDictionary(t, d, dictRoute, 2, two, 1)
	// Adding again is idempotent; other bytes replace the old ones.
	mustAddDictionary(t, d, dictRoute, 2, two, 1)
	wantDictionaries(t, d, dictRoute, 1, map[uint32][]byte{1: one, 2: two})
	other := []byte("other bytes")
	mustAddDictionary(t, d, dictRoute, 1, other, 1)
	wantDictionaries(t, d, dictRoute, 1, map[uint32][]byte{1: other, 2: two})

	// The store keeps its own copies.
	mine := bytes.Clone(one)
	mustAddDictionary(t, d, dictRoute, 3, mine, 1)
	mine[5] ^= 0xff
	_, got, err := d.Dictionaries(ctx, dictRoute)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[3], one) {
		t.Fatal("changing the bytes given to AddDictionary changed the stored dictionary")
	}
	got[3][5] ^= 0xff
	wantDictionaries(t, d, dictRoute, 1, map[uint32][]byte{1: other, 2: two, 3: one})
}

func testDictionaryBound(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		ids  []uint32 // the first is current
		want []uint32
	}{
		{
			// Lowest ids go first, never the current one.
			name: "increasing",
			ids:  []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
			want: []uint32{1, 6, 7, 8, 9, 10, 11, 12},
		},
		{
			// The one just added stays although its id is the lowest.
			name: "decreasing",
			ids:  []uint32{100, 50, 49, 48, 47, 46, 45, 44, 43, 42},
			want: []uint32{100, 42, 45, 46, 47, 48, 49, 50},
		},
		{
			name: "current highest",
			ids:  []uint32{1 << 31, 9, 8, 7, 6, 5, 4, 3, 2, 1},
			want: []uint32{1 << 31, 1, 4, 5, 6, 7, 8, 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dictionaries(t, newStore(t))
			route := dictRoute + tt.name
			current := tt.ids[0]
			stored := map[uint32][]byte{}
			for _, id := range tt.ids {
				mustAddDictionary(t, d, route, id, dictBytes(id), current)
				stored[id] = dictBytes(id)
				_, got, err := d.Dictionaries(t.Context(), route)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) > storage.MaxDictionaries {
					t.Fatalf("route holds %d dictionaries, want at most %d", len(got), storage.MaxDictionaries)
				}
				if got[id] == nil || got[current] == nil {
					t.Fatalf("after adding %d the route holds %v, want %d and the current %d among them",
						id, slices.Sorted(maps.Keys(got)), id, current)
				}
			}
			maps.DeleteFunc(stored, func(id uint32, _ []byte) bool { return !slices.Contains(tt.want, id) })
			wantDictionaries(t, d, route, current, stored)
		})
	}
}

func testDictionariesSurvivePurges(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	d := dictionaries(t, s)
	p := purger(t, s)
	ctx := t.Context()
	one, two := dictBytes(1), dictBytes(2)
	mustAddDictionary(t, d, dictRoute, 1, one, 1)
	mustAddDictionary(t, d, dictRoute, 2, two, 1)
	want := map[uint32][]byte{1: one, 2: two}
	mustSet(t, s, dictRoute+"1", "f", "v", storage.SetOptions{TTL: opt.TTL, Tags: []string{"t"}})
	mustSet(t, s, dictRoute+"2", "f", "v", opt)

	n, err := p.PurgeBucket(ctx, dictRoute+"1")
	wantCount(t, "PurgeBucket", n, err, 1)
	wantDictionaries(t, d, dictRoute, 1, want)
	n, err = p.PurgePrefix(ctx, dictRoute)
	wantCount(t, "PurgePrefix of the route", n, err, 1)
	wantDictionaries(t, d, dictRoute, 1, want)
	n, err = p.PurgeTag(ctx, "t")
	wantCount(t, "PurgeTag", n, err, 0)
	wantDictionaries(t, d, dictRoute, 1, want)
	n, err = p.PurgePrefix(ctx, "")
	wantCount(t, `PurgePrefix("")`, n, err, 0)
	wantDictionaries(t, d, dictRoute, 1, want)
	// PurgeAll neither removes nor counts them.
	mustSet(t, s, dictRoute+"3", "f", "v", opt)
	n, err = p.PurgeAll(ctx)
	wantCount(t, "PurgeAll", n, err, 1)
	wantDictionaries(t, d, dictRoute, 1, want)
	n, err = p.PurgeAll(ctx)
	wantCount(t, "second PurgeAll", n, err, 0)
	mustAddDictionary(t, d, dictRoute, 3, dictBytes(3), 1)
}

func testDictionaryInvalid(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	ctx := t.Context()
	dict := dictBytes(1)
	for _, route := range []string{"a{b", "a}b", "GET /items/{id}|"} {
		if _, err := d.AddDictionary(ctx, route, 1, dict); err == nil {
			t.Errorf("AddDictionary accepted the route %q", route)
		}
		if _, err := d.CurrentDictionary(ctx, route); err == nil {
			t.Errorf("CurrentDictionary accepted the route %q", route)
		}
		if _, _, err := d.Dictionaries(ctx, route); err == nil {
			t.Errorf("Dictionaries accepted the route %q", route)
		}
	}
	if _, err := d.AddDictionary(ctx, dictRoute, 0, dict); err == nil {
		t.Error("AddDictionary accepted the id 0")
	}
	for _, empty := range [][]byte{nil, {}} {
		if _, err := d.AddDictionary(ctx, dictRoute, 1, empty); err == nil {
			t.Errorf("AddDictionary accepted the empty dictionary %#v", empty)
		}
	}
	// Nothing was stored.
	wantDictionaries(t, d, dictRoute, 0, map[uint32][]byte{})
}

func testDictionaryRoutes(t *testing.T, newStore func(t *testing.T) Store) {
	d := dictionaries(t, newStore(t))
	routes := []string{dictRoute, "GET /items/%7Bid%7D/x|", "GET /items|", "", "r*?[x]\\|", "ünïcödé|"}
	want := map[string]map[uint32][]byte{}
	for i, route := range routes {
		id := uint32(10 + i)
		mustAddDictionary(t, d, route, id, dictBytes(id), id)
		want[route] = map[uint32][]byte{id: dictBytes(id)}
	}
	// A second dictionary in one route leaves the others alone.
	mustAddDictionary(t, d, routes[1], 10, dictBytes(99), 11)
	want[routes[1]][10] = dictBytes(99)
	for i, route := range routes {
		wantDictionaries(t, d, route, uint32(10+i), want[route])
	}
	wantDictionaries(t, d, "GET /other|", 0, map[uint32][]byte{})
	// Dictionaries are not entries of a bucket of the route's name.
	wantMissing(t, newStore(t), dictRoute, "10")
	wantMissing(t, newStore(t), dictRoute, "current")
}
