package redisstore_test

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/readthrough/readthrough/internal/redistest"
	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

const dictRoute = "GET /items/%7Bid%7D|"

// TestDictionaryLayout checks the key and fields of a route's dictionaries
// in Redis.
func TestDictionaryLayout(t *testing.T) {
	s, client := startStore(t, redisstore.WithPrefix("app")) // the last prefix option wins
	ctx := t.Context()
	key := s.DictionaryKey(dictRoute)
	if want := "app:d:{" + dictRoute + "}"; key != want {
		t.Fatalf("DictionaryKey = %q, want %q", key, want)
	}
	one, two := bytes.Repeat([]byte("\x00one"), 9000), []byte("two")
	if _, err := s.AddDictionary(ctx, dictRoute, 4000000000, one); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDictionary(ctx, dictRoute, 2, two); err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil || !slices.Equal(keys, []string{key}) {
		t.Errorf("keys = %q, %v; want only %q", keys, err, key)
	}
	h, err := client.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"4000000000": string(one), "2": string(two), "current": "4000000000"}
	if !maps.Equal(h, want) {
		t.Errorf("hash has fields %q, want %q", slices.Sorted(maps.Keys(h)), slices.Sorted(maps.Keys(want)))
	}

	// Fields that are not ids are no dictionaries, and go first when the
	// route is over its bound.
	client.HSet(ctx, key, "junk", "x")
	if _, dicts, err := s.Dictionaries(ctx, dictRoute); err != nil || len(dicts) != 2 {
		t.Errorf("Dictionaries with a junk field = %d dictionaries, %v; want 2", len(dicts), err)
	}
	for id := range uint32(storage.MaxDictionaries - 1) {
		if _, err := s.AddDictionary(ctx, dictRoute, 100+id, two); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := client.HExists(ctx, key, "junk").Result(); ok {
		t.Error("the junk field survived the bound")
	}
	if n, _ := client.HLen(ctx, key).Result(); n != storage.MaxDictionaries+1 {
		t.Errorf("HLEN = %d, want %d dictionaries and current", n, storage.MaxDictionaries)
	}
}

// TestDictionaryTTL checks that each of the three calls sets the route's
// lifetime to DictionaryTTL.
func TestDictionaryTTL(t *testing.T) {
	s, client := startStore(t)
	ctx := t.Context()
	key := s.DictionaryKey(dictRoute)
	wantTTL := func(after string) {
		t.Helper()
		d, err := client.PTTL(ctx, key).Result()
		if err != nil || d <= redisstore.DictionaryTTL-24*time.Hour || d > redisstore.DictionaryTTL {
			t.Errorf("PTTL after %s = %v, %v; want %v", after, d, err, redisstore.DictionaryTTL)
		}
	}
	if redisstore.DictionaryTTL != 30*24*time.Hour {
		t.Errorf("DictionaryTTL = %v, want 30 days", redisstore.DictionaryTTL)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"AddDictionary", func() error { _, err := s.AddDictionary(ctx, dictRoute, 1, []byte("d")); return err }},
		{"CurrentDictionary", func() error { _, err := s.CurrentDictionary(ctx, dictRoute); return err }},
		{"Dictionaries", func() error { _, _, err := s.Dictionaries(ctx, dictRoute); return err }},
	}
	for _, c := range calls {
		client.PExpire(ctx, key, time.Minute)
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		wantTTL(c.name)
	}
	// Reads of a route without dictionaries create nothing.
	other := s.DictionaryKey("GET /other|")
	if _, err := s.CurrentDictionary(ctx, "GET /other|"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Dictionaries(ctx, "GET /other|"); err != nil {
		t.Fatal(err)
	}
	if n, _ := client.Exists(ctx, other).Result(); n != 0 {
		t.Errorf("reads created %s", other)
	}
}

// TestDictionaryCurrentVanished checks a current id whose dictionary is
// gone: it counts as none, and the next dictionary added becomes current.
func TestDictionaryCurrentVanished(t *testing.T) {
	s, client := startStore(t)
	ctx := t.Context()
	key := s.DictionaryKey(dictRoute)
	for _, id := range []uint32{5, 6} {
		if cur, err := s.AddDictionary(ctx, dictRoute, id, []byte(fmt.Sprint(id))); err != nil || cur != 5 {
			t.Fatalf("AddDictionary(%d) = %d, %v; want current 5", id, cur, err)
		}
	}
	if err := client.HDel(ctx, key, "5").Err(); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.CurrentDictionary(ctx, dictRoute); err != nil || cur != 0 {
		t.Errorf("CurrentDictionary after HDEL of the current one = %d, %v; want 0", cur, err)
	}
	cur, dicts, err := s.Dictionaries(ctx, dictRoute)
	if err != nil || cur != 0 || !slices.Equal(slices.Sorted(maps.Keys(dicts)), []uint32{6}) {
		t.Errorf("Dictionaries after HDEL of the current one = %d, %v, %v; want 0, [6]", cur, slices.Sorted(maps.Keys(dicts)), err)
	}
	if cur, err := s.AddDictionary(ctx, dictRoute, 7, []byte("7")); err != nil || cur != 7 {
		t.Errorf("AddDictionary after HDEL of the current one = %d, %v; want current 7", cur, err)
	}
	if cur, err := s.CurrentDictionary(ctx, dictRoute); err != nil || cur != 7 {
		t.Errorf("CurrentDictionary = %d, %v; want 7", cur, err)
	}

	// Re-adding the dictionary that "current" names makes it valid again.
	client.HDel(ctx, key, "7")
	client.HSet(ctx, key, "current", "5")
	if cur, err := s.AddDictionary(ctx, dictRoute, 5, []byte("5")); err != nil || cur != 5 {
		t.Errorf("AddDictionary of the vanished current one = %d, %v; want 5", cur, err)
	}

	// A missing current field, or one that is no id, is none.
	for _, v := range []string{"", "junk", "current"} {
		if v == "" {
			client.HDel(ctx, key, "current")
		} else {
			client.HSet(ctx, key, "current", v)
		}
		if cur, err := s.CurrentDictionary(ctx, dictRoute); err != nil || cur != 0 {
			t.Errorf("CurrentDictionary with current %q = %d, %v; want 0", v, cur, err)
		}
		if cur, _, err := s.Dictionaries(ctx, dictRoute); err != nil || cur != 0 {
			t.Errorf("Dictionaries with current %q = current %d, %v; want 0", v, cur, err)
		}
	}
}

// TestDictionaryCommands checks that each call is one script run.
func TestDictionaryCommands(t *testing.T) {
	s, client := startStore(t)
	ctx := t.Context()
	calls := func(id uint32) {
		t.Helper()
		if _, err := s.AddDictionary(ctx, dictRoute, id, []byte("d")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CurrentDictionary(ctx, dictRoute); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Dictionaries(ctx, dictRoute); err != nil {
			t.Fatal(err)
		}
	}
	calls(1) // loads the scripts
	log := &commandLog{}
	client.AddHook(log)
	calls(2)
	if got := names(log.take()); !slices.Equal(got, []string{"evalsha", "evalsha", "evalsha"}) {
		t.Errorf("AddDictionary, CurrentDictionary and Dictionaries sent %v, want one EVALSHA each", got)
	}
}

// TestDictionaryPurgeAllKeepsThem checks that PurgeAll leaves the
// dictionary keys alone on a cluster, where it walks every master.
func TestDictionaryPurgeAllKeepsThem(t *testing.T) {
	c := redistest.StartClusterT(t, 3)
	s := newStore(t, c.Client())
	ctx := t.Context()
	const routes = 20
	for i := range routes {
		route := fmt.Sprintf("GET /r%d|", i)
		if _, err := s.AddDictionary(ctx, route, 1, []byte(route)); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, route+"1", "f", []byte("v"), storage.SetOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PurgeAll(ctx); err != nil || n != routes {
		t.Fatalf("PurgeAll = %d, %v; want %d", n, err, routes)
	}
	for i := range routes {
		route := fmt.Sprintf("GET /r%d|", i)
		cur, dicts, err := s.Dictionaries(ctx, route)
		if err != nil || cur != 1 || string(dicts[1]) != route {
			t.Errorf("Dictionaries(%q) after PurgeAll = %d, %q, %v", route, cur, dicts[1], err)
		}
	}
}
