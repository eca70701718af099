package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/readthrough/readthrough/internal/examplekit"
)

func TestExampleServesMissThenHit(t *testing.T) {
	examplekit.Smoke(t, run, "/slow/1")
}

// The default admin token is public: the example refuses it on any
// address but loopback.
func TestCheckAdminToken(t *testing.T) {
	examplekit.CheckAdminToken(t, checkAdminToken)
}

// main, as a user runs it, refuses the default token off loopback before
// it listens, and otherwise starts and stops on SIGINT.
func TestMainRefusesDefaultTokenOffLoopback(t *testing.T) {
	examplekit.CheckMain(t, main)
}

// The products route trains its dictionary from its first responses and
// then serves entries compressed with it, byte for byte the origin's.
func TestExampleDictionaryRoute(t *testing.T) {
	service, admin := examplekit.Start(t, run)
	get := func(url string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if strings.HasPrefix(url, admin) {
			req.Header.Set("Authorization", "Bearer "+examplekit.DefaultAdminToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		return resp.Header.Get("Cache-Status"), string(b)
	}
	trained := `readthrough_dictionaries_trained_total{route="/products/{id}"} 1`
	// A guarded wait: training takes a few seconds under the race
	// detector on a busy machine.
	deadline := time.Now().Add(60 * time.Second)
	id := 1
	for ; ; id++ {
		get(fmt.Sprintf("%s/products/%d", service, id))
		if _, m := get(admin + "/metrics"); strings.Contains(m, trained) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dictionary after %d products", id)
		}
	}
	url := fmt.Sprintf("%s/products/%d", service, id+1)
	miss, body := get(url)
	hit, again := get(url)
	if !strings.Contains(miss, "stored") || !strings.Contains(hit, "; hit") || body != again {
		t.Errorf("after training: %q then %q (same body: %v)", miss, hit, body == again)
	}
	if _, inspect := get(admin + "/admin/inspect?url=" + url); !strings.Contains(inspect, "zstd-dict") {
		t.Errorf("inspect does not show a dictionary entry: %.300s", inspect)
	}
}
