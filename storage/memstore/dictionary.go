package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/readthrough/readthrough/storage"
)

// routeDicts is the compression dictionaries of one route.
type routeDicts struct {
	current uint32 // 0: none
	dicts   map[uint32][]byte
}

// currentID is the id of the current dictionary when it is stored, else
// 0. d may be nil.
func (d *routeDicts) currentID() uint32 {
	if d == nil {
		return 0
	}
	if _, ok := d.dicts[d.current]; !ok {
		return 0
	}
	return d.current
}

// trim removes dictionaries other than the current one and keep, lowest
// ids first, until at most [storage.MaxDictionaries] remain.
func (d *routeDicts) trim(keep uint32) {
	excess := len(d.dicts) - storage.MaxDictionaries
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

// Dictionaries implements [storage.DictionaryStore.Dictionaries].
func (s *Store) Dictionaries(_ context.Context, route string) (uint32, map[uint32][]byte, error) {
	if err := checkBrace("route", route); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dicts[route]
	out := make(map[uint32][]byte)
	if d == nil {
		return 0, out, nil
	}
	for id, b := range d.dicts {
		out[id] = append([]byte(nil), b...)
	}
	return d.currentID(), out, nil
}

// AddDictionary implements [storage.DictionaryStore.AddDictionary].
// Unlike the Redis store's, a Store's dictionaries never expire;
// [Store.Flush] drops them, as FLUSHALL would.
func (s *Store) AddDictionary(_ context.Context, route string, id uint32, dict []byte) (uint32, error) {
	if err := storage.CheckDictionary(route, id, dict); err != nil {
		return 0, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dicts[route]
	if d == nil {
		d = &routeDicts{dicts: make(map[uint32][]byte)}
		s.dicts[route] = d
	}
	d.dicts[id] = append([]byte(nil), dict...)
	if d.currentID() == 0 {
		d.current = id
	}
	d.trim(id)
	return d.current, nil
}

// CurrentDictionary implements [storage.DictionaryStore.CurrentDictionary].
func (s *Store) CurrentDictionary(_ context.Context, route string) (uint32, error) {
	if err := checkBrace("route", route); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dicts[route].currentID(), nil
}
