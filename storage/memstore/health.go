package memstore

import (
	"context"
	"fmt"

	"github.com/readthrough/readthrough/storage"
)

var _ storage.HealthChecker = (*Store)(nil)

// CheckHealth implements [storage.HealthChecker]. An in-process store has
// no server to misconfigure: the report names the store "memory", mode
// "process", and holds one info finding, "store", which says that entries
// live in this process only.
func (s *Store) CheckHealth(ctx context.Context) (storage.HealthReport, error) {
	if err := ctx.Err(); err != nil {
		return storage.HealthReport{}, fmt.Errorf("memstore: check health: %w", err)
	}
	return storage.HealthReport{
		Store: "memory",
		Mode:  "process",
		Findings: []storage.Finding{{
			Check:   "store",
			Level:   storage.LevelInfo,
			Message: "in-process memory store: entries, locks and purges are shared only by the caches of this process, and a restart loses them",
			Fix:     "To share the cache between instances, use the Redis store (package storage/redisstore).",
		}},
	}, nil
}
