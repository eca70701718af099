package storage

import (
	"errors"
	"fmt"
	"strings"
)

// MaxDictionaries is the most compression dictionaries a store keeps for
// one route (see [DictionaryStore]). An entry compressed with a dictionary
// can only be decoded while that dictionary is stored, so a route keeps a
// few besides its current one, for the entries written before the current
// one was chosen; the bound keeps reading all of a route's dictionaries
// (about 32 to 40 KB each) cheap.
const MaxDictionaries = 8

// CheckDictionary rejects what a store's AddDictionary cannot store: a
// route with a brace, the id 0 (which stands for "none") and an empty
// dictionary. Stores call it so that they all accept the same input.
func CheckDictionary(route string, id uint32, dict []byte) error {
	if strings.ContainsAny(route, "{}") {
		return fmt.Errorf("storage: route %q contains a brace", route)
	}
	if id == 0 {
		return errors.New("storage: dictionary id 0 is reserved for none")
	}
	if len(dict) == 0 {
		return fmt.Errorf("storage: dictionary %d is empty", id)
	}
	return nil
}
