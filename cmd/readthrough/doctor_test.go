package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDoctorOutput runs doctor against a server answering as the admin
// API's doctor endpoint does (see the contract in httpcache's admin
// handler): the findings printed, and the exit codes scripts rely on.
func TestDoctorOutput(t *testing.T) {
	const (
		allOK = `{"store":"redis","version":"7.0.15","mode":"single","round_trip_ns":210000,"findings":[
			{"check":"version","level":"ok","message":"Redis 7.0.15"},
			{"check":"persistence","level":"info","message":"no RDB or AOF: a restart empties the cache","fix":""}]}`
		warned = `{"store":"redis","version":"7.0.15","mode":"single","round_trip_ns":210000,"findings":[
			{"check":"version","level":"ok","message":"Redis 7.0.15"},
			{"check":"maxmemory-policy","level":"warn","message":"noeviction: fills will fail when Redis is full","fix":"CONFIG SET maxmemory-policy allkeys-lru"}]}`
		failed = `{"store":"redis","version":"7.0.15","mode":"cluster","round_trip_ns":210000,"findings":[
			{"check":"latency","level":"error","message":"a round trip takes 80ms","fix":"move Redis closer to the service"}]}`
	)
	tests := []struct {
		name   string
		status int
		body   string
		json   bool
		want   int
		stdout []string // each in stdout
		stderr string   // in stderr
	}{
		{name: "all ok", status: 200, body: allOK, want: exitOK,
			stdout: []string{"store: redis 7.0.15, single, round trip 210µs", "OK    version: Redis 7.0.15", "INFO  persistence: no RDB or AOF", "no problem found"}},
		{name: "warning", status: 200, body: warned, want: exitProblems,
			stdout: []string{"WARN  maxmemory-policy: noeviction: fills will fail when Redis is full", "      fix: CONFIG SET maxmemory-policy allkeys-lru", "1 problem found (exit code 4)"}},
		{name: "error", status: 200, body: failed, want: exitProblems,
			stdout: []string{"cluster", "ERROR  latency: a round trip takes 80ms", "       fix: move Redis closer"}},
		{name: "json warning", status: 200, body: warned, json: true, want: exitProblems},
		{name: "json ok", status: 200, body: allOK, json: true, want: exitOK},
		{name: "no health check", status: 501, body: `{"error":"httpcache: the store has no health check"}`, want: exitAdminError,
			stderr: "readthrough: the store has no health check\n"},
		{name: "store down", status: 502, body: `{"error":"redisstore: dial tcp: connection refused"}`, want: exitAdminError,
			stderr: "the store could not be checked: redisstore: dial tcp: connection refused"},
		{name: "older server", status: 404, body: `{"error":"unknown endpoint doctor; use purge, stats or inspect"}`, want: exitAdminError,
			stderr: "no doctor endpoint"},
		{name: "wrong token", status: 401, body: `{"error":"missing or invalid bearer token"}`, want: exitAdminError,
			stderr: "401 Unauthorized: missing or invalid bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/admin/doctor" || r.Header.Get("Authorization") != "Bearer "+testToken {
					t.Errorf("request %s %s, Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			args := []string{"doctor"}
			if tt.json {
				args = append(args, "--json")
			}
			env := map[string]string{"READTHROUGH_ADMIN": srv.URL + "/admin", "READTHROUGH_TOKEN": testToken}
			r := runCLI(t, context.Background(), strings.NewReader(""), env, args...).want(t, tt.want)
			for _, want := range tt.stdout {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q", want)
				}
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.stderr)
			}
			if tt.json {
				var report healthReport
				if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
					t.Fatalf("doctor --json: %v", err)
				}
				if strings.Count(r.stdout, "\n") != 1 || report.Store != "redis" || len(report.Findings) != 2 {
					t.Errorf("doctor --json printed %q", r.stdout)
				}
			}
		})
	}
}

// TestDoctorRedis runs doctor against the admin API of a cache on a real
// Redis. It is skipped only when that admin handler has no doctor
// endpoint (it answers 404): the endpoint is built beside this command.
func TestDoctorRedis(t *testing.T) {
	s := startService(t)
	req, err := http.NewRequest(http.MethodGet, s.admin+"doctor", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the admin handler's doctor endpoint: %d", resp.StatusCode)
	}

	r := s.cli("doctor", "--json")
	var report healthReport
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("doctor --json (exit %d): %v\n%s", r.code, err, r.stdout)
	}
	if report.Store != "redis" || report.Version == "" || report.Mode != "single" || len(report.Findings) == 0 {
		t.Errorf("report %+v", report)
	}
	want := exitOK
	for _, f := range report.Findings {
		if f.Level == "warn" || f.Level == "error" {
			want = exitProblems
		}
	}
	if r.code != want {
		t.Errorf("exit code %d, want %d for findings %+v", r.code, want, report.Findings)
	}
	text := s.cli("doctor").want(t, want).stdout
	for _, f := range report.Findings {
		if !strings.Contains(text, strings.ToUpper(f.Level)+"  "+f.Check+": ") && !strings.Contains(text, " "+f.Check+": ") {
			t.Errorf("the text lacks the finding %q", f.Check)
		}
	}
}
