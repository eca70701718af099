package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/readthrough/readthrough/httpcache"
	"github.com/readthrough/readthrough/policy"
	"github.com/readthrough/readthrough/storage/memstore"
)

// inspect of a standards-mode response that varies on a header the route
// does not key on says so, and names the variant of the --header given.
func TestInspectVaryOn(t *testing.T) {
	store, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := httpcache.New(store, httpcache.WithLogger(slog.New(slog.DiscardHandler)), httpcache.WithoutStartupHealthCheck())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close(t.Context()) })
	const pattern = "GET /docs/{id}"
	mux := http.NewServeMux()
	mux.Handle(pattern, cache.Handler(pattern, policy.Policy{Standards: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Tenant")
		fmt.Fprintf(w, "for %s", r.Header.Get("X-Tenant"))
	})))
	svc := httptest.NewServer(mux)
	t.Cleanup(svc.Close)
	admin, err := cache.AdminHandler(httpcache.WithAdminToken("operator", testToken))
	if err != nil {
		t.Fatal(err)
	}
	adminMux := http.NewServeMux()
	adminMux.Handle("/admin/", admin)
	adm := httptest.NewServer(adminMux)
	t.Cleanup(adm.Close)

	req, _ := http.NewRequest(http.MethodGet, svc.URL+"/docs/1", nil)
	req.Header.Set("X-Tenant", "a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	env := map[string]string{"READTHROUGH_ADMIN": adm.URL + "/admin/", "READTHROUGH_TOKEN": testToken}
	out := squeeze(runCLI(t, t.Context(), strings.NewReader(""), env, "inspect", svc.URL+"/docs/1", "--header", "X-Tenant:a").want(t, exitOK).stdout)
	for _, want := range []string{"varies on X-Tenant", "entry fresh: served as a hit"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	out = squeeze(runCLI(t, t.Context(), strings.NewReader(""), env, "inspect", svc.URL+"/docs/1", "--header", "X-Tenant:b").want(t, exitOK).stdout)
	if !strings.Contains(out, "varies on X-Tenant") || !strings.Contains(out, "entry none") {
		t.Errorf("inspect of another tenant:\n%s", out)
	}
}
