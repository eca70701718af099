package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// MaxDictionaries is the most compression dictionaries a store keeps for
// one route. An entry compressed with a dictionary can only be decoded
// while that dictionary is stored, so a route keeps a few besides its
// current one, for the entries written before the current one was
// chosen; the bound keeps reading all of a route's dictionaries (about
// 32 to 40 KB each) cheap.
const MaxDictionaries = 8

// memDicts is the compression dictionaries of one route.
type memDicts struct {
	current uint32 // 0: none
	dicts   map[uint32][]byte
}

// currentID is the id of the current dictionary when it is stored, else
// 0. d may be nil.
func (d *memDicts) currentID() uint32 {
	if d == nil {
		return 0
	}
	if _, ok := d.dicts[d.current]; !ok {
		return 0
	}
	return d.current
}

// trim removes dictionaries other than the current one and keep, lowest
// ids first, until at most [MaxDictionaries] remain.
func (d *memDicts) trim(keep uint32) {
	excess := len(d.dicts) - MaxDictionaries
	if excess <= 0 {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(d.dicts)) {
		if excess == 0 {
			return
		}
		if id != keep && id != d.current {
			delete(d.dicts, id)
			excess--
		}
	}
}

// checkRoute rejects a route with a brace, as Set rejects such a bucket,
// so both stores accept the same routes.
func checkRoute(route string) error {
	if strings.ContainsAny(route, "{}") {
		return fmt.Errorf("storage: route %q contains a brace", route)
	}
	return nil
}

// CheckDictionary rejects what a store's AddDictionary cannot store: a
// route with a brace, the id 0 (which stands for "none") and an empty
// dictionary. Stores call it so that they all accept the same input.
func CheckDictionary(route string, id uint32, dict []byte) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if id == 0 {
		return errors.New("storage: dictionary id 0 is reserved for none")
	}
	if len(dict) == 0 {
		return fmt.Errorf("storage: dictionary %d is empty", id)
	}
	return nil
}

// Dictionaries returns copies of every compression dictionary stored for
// route, by id, and the id of the route's current one (0 when it has
// none). The map is never nil. A cache reads them once to decode entries
// compressed with any of them and to compress new entries with the
// current one. A route with a brace is an error.
func (m *MemoryStore) Dictionaries(_ context.Context, route string) (uint32, map[uint32][]byte, error) {
	if err := checkRoute(route); err != nil {
		return 0, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dicts[route]
	out := make(map[uint32][]byte)
	if d == nil {
		return 0, out, nil
	}
	for id, b := range d.dicts {
		out[id] = append([]byte(nil), b...)
	}
	return d.currentID(), out, nil
}

// AddDictionary stores a copy of dict as dictionary id of route, replacing
// the bytes of an id that exists, and makes it the route's current one
// unless the route already has a current one whose dictionary is stored.
// It returns the current id after the call. When the route would then
// hold more than [MaxDictionaries], it removes others, lowest ids first,
// but never the current one or id. Sharing dictionaries through the store
// lets every instance decode the entries the others compressed. A route
// with a brace, the id 0 and an empty dict are errors.
//
// Unlike the Redis store's, a MemoryStore's dictionaries never expire;
// [MemoryStore.Flush] drops them, as FLUSHALL would.
func (m *MemoryStore) AddDictionary(_ context.Context, route string, id uint32, dict []byte) (uint32, error) {
	if err := CheckDictionary(route, id, dict); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dicts[route]
	if d == nil {
		d = &memDicts{dicts: make(map[uint32][]byte)}
		m.dicts[route] = d
	}
	d.dicts[id] = append([]byte(nil), dict...)
	if d.currentID() == 0 {
		d.current = id
	}
	d.trim(id)
	return d.current, nil
}

// CurrentDictionary returns the id of route's current compression
// dictionary, or 0 when it has none (or its dictionary is no longer
// stored). It is the cheap check a cache makes to notice that another
// instance chose a dictionary, before it reads them all with
// [MemoryStore.Dictionaries]. A route with a brace is an error.
func (m *MemoryStore) CurrentDictionary(_ context.Context, route string) (uint32, error) {
	if err := checkRoute(route); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dicts[route].currentID(), nil
}
