package examplekit

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// CheckAdminToken tests an example's checkAdminToken(addr, token), which
// must refuse the public default token (token empty or
// [DefaultAdminToken]) when the admin API would listen on addr and addr
// is not a loopback address, with an error naming addr and ADMIN_TOKEN.
func CheckAdminToken(t *testing.T, check func(addr, token string) error) {
	t.Helper()
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
			err := check(tt.give, tt.giveToken)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkAdminToken(%q, %q) = %v, want error %t", tt.give, tt.giveToken, err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), "ADMIN_TOKEN") || !strings.Contains(err.Error(), `"`+tt.give+`"`)) {
				t.Errorf("error %q does not name the address and ADMIN_TOKEN", err)
			}
		})
	}
}

// CheckMain tests an example's main func as a user runs it, with the
// embedded Redis: with ADMIN_ADDR=:0 (every interface) and the default
// admin token, given or not, it exits 1 with the reason before it listens;
// with ADMIN_ADDR on loopback it starts, and on SIGINT shuts down and
// exits 0. Since main exits, it runs in a child process of the test
// binary, which reruns the calling test with EXAMPLEKIT_MAIN=1: call
// CheckMain first in that test.
func CheckMain(t *testing.T, main func()) {
	t.Helper()
	if os.Getenv("EXAMPLEKIT_MAIN") == "1" {
		main()
		return
	}
	for _, tt := range []struct {
		name      string
		giveEnv   []string
		wantStart bool
	}{
		{"every interface, default token", []string{"ADMIN_ADDR=:0", "ADMIN_TOKEN="}, false},
		{"every interface, the default token given", []string{"ADMIN_ADDR=:0", "ADMIN_TOKEN=" + DefaultAdminToken}, false},
		{"loopback, default token", []string{"ADMIN_ADDR=127.0.0.1:0", "ADMIN_TOKEN="}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			started, exit, out := runMain(t, tt.giveEnv)
			if started != tt.wantStart {
				t.Fatalf("started = %t, want %t:\n%s", started, tt.wantStart, out)
			}
			if started && exit != 0 {
				t.Errorf("exit code %d after SIGINT, want 0:\n%s", exit, out)
			}
			if !started && (exit != 1 || !strings.Contains(out, "not a loopback address")) {
				t.Errorf("exit code %d, want 1 with the reason:\n%s", exit, out)
			}
		})
	}
}

// runMain runs the parent test in a child process with EXAMPLEKIT_MAIN=1
// and env, and interrupts it once it logs that it listens. It returns
// whether it did, its exit code and its output.
func runMain(t *testing.T, env []string) (started bool, exit int, out string) {
	parent, _, _ := strings.Cut(t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(parent)+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EXAMPLEKIT_MAIN=1", "ADDR=127.0.0.1:0", "REDIS_URL=", "POLICY_FILE=")
	cmd.Env = append(cmd.Env, env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A guard, not a wait: it only ends a child that hangs.
	guard := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer guard.Stop()
	listening, done := make(chan struct{}), make(chan struct{})
	var lines strings.Builder
	go func() {
		defer close(done)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines.WriteString(s.Text() + "\n")
			if !started && strings.Contains(s.Text(), "example listening") {
				started = true
				close(listening)
			}
		}
	}()
	select {
	case <-listening:
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Error(err)
		}
	case <-done:
	}
	<-done
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return started, cmd.ProcessState.ExitCode(), lines.String() + stdout.String()
}
