package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/readthrough/readthrough/storage"
	"github.com/readthrough/readthrough/storage/memstore"
)

func TestCheckHealth(t *testing.T) {
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.CheckHealth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Store != "memory" || rep.Mode != "process" || len(rep.Findings) != 1 || rep.Worst() != storage.LevelInfo {
		t.Errorf("report %+v", rep)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CheckHealth(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("CheckHealth with an ended context: %v", err)
	}
}
