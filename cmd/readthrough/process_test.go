package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mainEnv, when set, makes the test binary run the command's main: the
// process tests run the tool as a process, with a real stdin, real
// signals and os.Exit.
const mainEnv = "READTHROUGH_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// command returns the tool as a process with env as its only
// READTHROUGH_ variables, killed if it outlives ctx.
func command(ctx context.Context, env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "READTHROUGH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mainEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatal(err)
		return -1
	}
}

func TestProcess(t *testing.T) {
	s := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("usage", func(t *testing.T) {
		out, err := command(ctx, nil, "stats").CombinedOutput()
		if code := exitCode(t, err); code != exitUsage || !strings.HasPrefix(string(out), "readthrough: no admin address") {
			t.Errorf("exit %d, output %q", code, out)
		}
	})

	// A purge that needs confirmation never waits on a stdin that is not
	// a terminal: a pipe (with "yes" in it) is not read, and /dev/null
	// (a character device, so asked) answers with its end.
	t.Run("confirmation", func(t *testing.T) {
		s.get("/users/1")
		for _, stdin := range []string{"pipe", "/dev/null"} {
			cmd := command(ctx, s.env(), "purge", "--all")
			if stdin == "pipe" {
				cmd.Stdin = strings.NewReader("yes\n")
			} // else exec gives the process /dev/null
			out, err := cmd.CombinedOutput()
			if code := exitCode(t, err); code != exitNotConfirmed {
				t.Errorf("stdin %s: exit %d, want %d; output %q", stdin, code, exitNotConfirmed, out)
			}
			s.wantHit("/users/1", true)
		}
	})

	// stats --watch runs until SIGINT, which is a success.
	t.Run("watch interrupted", func(t *testing.T) {
		cmd := command(ctx, s.env(), "stats", "--watch", "--interval", "50ms")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		tables := 0
		for tables < 2 && lines.Scan() {
			if strings.HasPrefix(lines.Text(), "TOTAL") {
				tables++
			}
		}
		if tables < 2 {
			t.Fatalf("%d tables before the output ended; stderr %q", tables, stderr.String())
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() { // drain, so that the process is not blocked writing
		}
		if code := exitCode(t, cmd.Wait()); code != exitOK {
			t.Errorf("exit %d after SIGINT, want 0; stderr %q", code, stderr.String())
		}
	})
}
