package examplekit

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The default admin token is public: the examples refuse it on any
// address but loopback.
func TestCheckAdminToken(t *testing.T) {
	const secret = "a-secret-token-of-some-length"
	tests := []struct {
		give      string // the admin listen address
		giveToken string // ADMIN_TOKEN
		wantErr   bool
	}{
		{give: "127.0.0.1:9090"},
		{give: "127.0.0.1:0"},
		{give: "127.1.2.3:9090"},
		{give: "[::1]:9090"},
		{give: "[::ffff:127.0.0.1]:9090"},
		{give: "localhost:9090"},
		{give: "LocalHost:9090"},
		{give: "127.0.0.1:9090", giveToken: DefaultAdminToken},
		{give: ":9090", wantErr: true},
		{give: ":0", wantErr: true},
		{give: "0.0.0.0:9090", wantErr: true},
		{give: "[::]:9090", wantErr: true},
		{give: "10.0.0.5:9090", wantErr: true},
		{give: "[fe80::1%eth0]:9090", wantErr: true},
		{give: "example.com:9090", wantErr: true},
		{give: "localhost.example.com:9090", wantErr: true},
		{give: "127.0.0.1", wantErr: true}, // no port: not an address to judge
		{give: "", wantErr: true},
		{give: ":9090", giveToken: DefaultAdminToken, wantErr: true},
		{give: ":9090", giveToken: secret},
		{give: "0.0.0.0:9090", giveToken: secret},
	}
	for _, tt := range tests {
		t.Run(tt.give+" "+tt.giveToken, func(t *testing.T) {
			err := checkAdminToken(tt.give, tt.giveToken)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkAdminToken(%q, %q) = %v, want error %t", tt.give, tt.giveToken, err, tt.wantErr)
			}
			if err != nil && (!strings.HasPrefix(err.Error(), "examplekit: ") ||
				!strings.Contains(err.Error(), "ADMIN_TOKEN") || !strings.Contains(err.Error(), tt.give)) {
				t.Errorf("error %q does not name the package, the address and ADMIN_TOKEN", err)
			}
		})
	}
}

// listen, which Main uses, checks before it opens anything.
func TestListenRefusesDefaultTokenOffLoopback(t *testing.T) {
	if _, _, err := listen("127.0.0.1:0", ":0", ""); err == nil {
		t.Fatal("admin API on every interface with the default token: want an error")
	}
	for _, tt := range []struct{ adminAddr, token string }{
		{"127.0.0.1:0", ""},
		{"127.0.0.1:0", "a-secret-token-of-some-length"},
	} {
		ln, adminLn, err := listen("127.0.0.1:0", tt.adminAddr, tt.token)
		if err != nil {
			t.Fatalf("listen(%q, %q): %v", tt.adminAddr, tt.token, err)
		}
		ln.Close()
		adminLn.Close()
	}
}

// Main, as the examples run it, refuses ADMIN_ADDR=:0 (every interface)
// without ADMIN_TOKEN: it exits 1 with the reason, before the example's
// run func is called. The test runs Main in a child process, since Main
// exits.
func TestMainRefusesDefaultTokenOffLoopback(t *testing.T) {
	if os.Getenv("EXAMPLEKIT_TEST_MAIN") == "1" {
		Main("127.0.0.1:0", "127.0.0.1:0", func(context.Context, net.Listener, net.Listener, *slog.Logger) error {
			os.Stderr.WriteString("run was called\n")
			return nil
		})
		return
	}
	for _, tt := range []struct {
		name       string
		giveEnv    []string
		wantRefuse bool
	}{
		{"every interface, default token", []string{"ADMIN_ADDR=:0", "ADMIN_TOKEN="}, true},
		{"every interface, the default token given", []string{"ADMIN_ADDR=:0", "ADMIN_TOKEN=" + DefaultAdminToken}, true},
		{"loopback, default token", []string{"ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN="}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainRefusesDefaultTokenOffLoopback$")
			cmd.Env = append(os.Environ(), append([]string{"EXAMPLEKIT_TEST_MAIN=1", "ADDR=127.0.0.1:0"}, tt.giveEnv...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			refused := errors.As(err, &exit) && exit.ExitCode() == 1
			if err != nil && !refused {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if refused != tt.wantRefuse {
				t.Fatalf("refused = %t, want %t:\n%s", refused, tt.wantRefuse, out)
			}
			if refused && (!strings.Contains(string(out), "not a loopback address") || strings.Contains(string(out), "run was called")) {
				t.Errorf("refusal without its reason, or after run:\n%s", out)
			}
			if !refused && !strings.Contains(string(out), "run was called") {
				t.Errorf("the example did not start:\n%s", out)
			}
		})
	}
}
