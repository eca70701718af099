package httpcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/readthrough/readthrough/storage"
)

// checkerStore is a store whose health check is check.
type checkerStore struct {
	storage.Store
	check func(ctx context.Context) (storage.HealthReport, error)
}

func (s checkerStore) CheckHealth(ctx context.Context) (storage.HealthReport, error) {
	return s.check(ctx)
}

// sickReport has a finding of each level.
var sickReport = storage.HealthReport{
	Store: "redis", Version: "7.0.15", Mode: "single", RoundTrip: 210 * time.Microsecond,
	Findings: []storage.Finding{
		{Check: "version", Level: storage.LevelOK, Message: "Redis 7.0.15"},
		{Check: "persistence", Level: storage.LevelInfo, Message: "persistence is on", Fix: "turn it off"},
		{Check: "maxmemory-policy", Level: storage.LevelWarn, Message: "maxmemory-policy is noeviction", Fix: "allkeys-lru"},
		{Check: "round-trip", Level: storage.LevelError, Message: "median round trip is 80ms", Fix: "move Redis closer"},
	},
}

func TestAdminDoctor(t *testing.T) {
	tests := []struct {
		name       string
		store      storage.Store
		method     string
		wantStatus int
		wantBody   string // a substring
	}{
		{"report", checkerStore{newMemStore(t), func(context.Context) (storage.HealthReport, error) { return sickReport, nil }},
			"GET", 200, `"check": "maxmemory-policy",` + "\n" + `      "level": "warn"`},
		{"HEAD", checkerStore{newMemStore(t), func(context.Context) (storage.HealthReport, error) { return sickReport, nil }},
			"HEAD", 200, ""},
		{"memstore", newMemStore(t), "GET", 200, `"store": "memory"`},
		{"no health check", storeFuncs{Store: newMemStore(t)}, "GET", 501, `"error": "httpcache: the store has no health check (httpcache.storeFuncs)"`},
		{"check failed", checkerStore{newMemStore(t), func(context.Context) (storage.HealthReport, error) {
			return storage.HealthReport{}, errors.New("redisstore: check health: dial tcp: connection refused")
		}}, "GET", 502, `"error": "httpcache: check health: redisstore: check health: dial tcp: connection refused"`},
		{"POST", newMemStore(t), "POST", 405, `not allowed; use GET or HEAD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, tt.store, WithoutStartupHealthCheck())
			admin, err := c.AdminHandler(WithAdminToken("ops", testToken))
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tt.method, "/admin/doctor", nil)
			r.Header.Set("Authorization", "Bearer "+testToken)
			w := httptest.NewRecorder()
			admin.ServeHTTP(w, r)
			if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Fatalf("%d %s, want %d with %q", w.Code, w.Body, tt.wantStatus, tt.wantBody)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.wantStatus == 200 && tt.method == "GET" {
				var rep storage.HealthReport
				if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Store == "" || rep.Findings == nil {
					t.Errorf("report %+v", rep)
				}
			}
		})
	}
}

// TestAdminDoctorNeedsToken: the doctor is behind the token like the
// other endpoints.
func TestAdminDoctorNeedsToken(t *testing.T) {
	c := newTestCache(t, newMemStore(t))
	admin, err := c.AdminHandler(WithAdminToken("ops", testToken))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest("GET", "/admin/doctor", nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("%d without a token", w.Code)
	}
}

// logRecord is one line of a JSON log.
type logRecord struct {
	Level, Msg, Check, Severity, Message, Fix, Err string
	Findings                                       int
}

func parseLogs(t *testing.T, b *bytes.Buffer) []logRecord {
	t.Helper()
	var out []logRecord
	for line := range strings.Lines(b.String()) {
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestStartupHealthCheck: New checks the store once in the background
// and logs a summary at the worst finding's level, then each finding,
// warnings and errors at their level and the others at Info.
func TestStartupHealthCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		var calls atomic.Int32
		store := checkerStore{newMemStore(t), func(ctx context.Context) (storage.HealthReport, error) {
			calls.Add(1)
			if _, ok := ctx.Deadline(); !ok {
				t.Error("start-up check without a deadline")
			}
			return sickReport, nil
		}}
		c, err := New(store, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := c.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d checks", n)
		}
		got := parseLogs(t, &logs)
		want := []logRecord{
			{Level: "ERROR", Msg: "readthrough: store health check", Findings: 4},
			{Level: "INFO", Msg: "readthrough: store health: version", Check: "version", Severity: "ok", Message: "Redis 7.0.15"},
			{Level: "INFO", Msg: "readthrough: store health: persistence", Check: "persistence", Severity: "info", Message: "persistence is on", Fix: "turn it off"},
			{Level: "WARN", Msg: "readthrough: store health: maxmemory-policy", Check: "maxmemory-policy", Severity: "warn", Message: "maxmemory-policy is noeviction", Fix: "allkeys-lru"},
			{Level: "ERROR", Msg: "readthrough: store health: round-trip", Check: "round-trip", Severity: "error", Message: "median round trip is 80ms", Fix: "move Redis closer"},
		}
		if len(got) != len(want) {
			t.Fatalf("logged %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

// TestStartupHealthCheckOff: WithoutStartupHealthCheck runs no check,
// and neither does a store without one.
func TestStartupHealthCheckOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		store := checkerStore{newMemStore(t), func(ctx context.Context) (storage.HealthReport, error) {
			t.Error("health checked")
			return sickReport, nil
		}}
		log := WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))
		for i, s := range []storage.Store{store, storeFuncs{Store: newMemStore(t)}} {
			opts := []Option{log}
			if i == 0 {
				opts = append(opts, WithoutStartupHealthCheck())
			}
			c, err := New(s, opts...)
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if logs.Len() > 0 {
			t.Errorf("logged %s", logs.String())
		}
	})
}

// TestStartupHealthCheckBounded: a check that does not return is ended
// by DefaultHealthCheckTimeout and logged as failed; one that Close
// stops is not logged, and Close waits for it.
func TestStartupHealthCheckBounded(t *testing.T) {
	hang := checkerStore{check: func(ctx context.Context) (storage.HealthReport, error) {
		<-ctx.Done()
		return storage.HealthReport{}, ctx.Err()
	}}
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var logs bytes.Buffer
			hang.Store = newMemStore(t)
			start := time.Now()
			c, err := New(hang, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(DefaultHealthCheckTimeout)
			synctest.Wait()
			got := parseLogs(t, &logs)
			if len(got) != 1 || got[0].Level != "WARN" || got[0].Msg != "readthrough: store health check failed" ||
				!strings.Contains(got[0].Err, "context deadline exceeded") {
				t.Errorf("logged %+v", got)
			}
			if d := time.Since(start); d != DefaultHealthCheckTimeout {
				t.Errorf("ended after %v", d)
			}
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("Close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var logs bytes.Buffer
			hang.Store = newMemStore(t)
			c, err := New(hang, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			start := time.Now()
			if err := c.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("Close took %v", d)
			}
			if logs.Len() > 0 {
				t.Errorf("logged %s", logs.String())
			}
			// The goroutine is gone: synctest.Test would fail otherwise.
		})
	})
}
