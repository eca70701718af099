package redisstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/redisstore"
)

// CheckHealth checks the Redis the store is on and says what to change.
// A cache runs it at start-up and logs the findings; here a deployment
// script prints the ones that need action. It needs a Redis at
// localhost:6379, so the example has no output to check.
func ExampleStore_CheckHealth() {
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true, DialerRetries: 1})
	defer client.Close()
	store, err := redisstore.New(client)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := store.CheckHealth(ctx)
	if err != nil {
		fmt.Println(err) // Redis unreachable
		return
	}
	fmt.Printf("Redis %s (%s), round trip %v\n", rep.Version, rep.Mode, rep.RoundTrip)
	for _, f := range rep.Findings {
		if f.Level == storage.LevelWarn || f.Level == storage.LevelError {
			fmt.Printf("%s %s: %s\n  fix: %s\n", f.Level, f.Check, f.Message, f.Fix)
		}
	}
}
