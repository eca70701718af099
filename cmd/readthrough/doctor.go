package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// healthReport is the admin's answer to doctor (storage.HealthReport).
type healthReport struct {
	Store       string    `json:"store"`
	Version     string    `json:"version"`
	Mode        string    `json:"mode"`
	RoundTripNs int64     `json:"round_trip_ns"`
	Findings    []finding `json:"findings"`
}

// finding is one check's result.
type finding struct {
	Check   string `json:"check"`
	Level   string `json:"level"` // ok, info, warn or error
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// problem reports whether the finding needs an operator: a warning, an
// error, or a level this tool does not know (a newer server's).
func (f finding) problem() bool { return f.Level != "ok" && f.Level != "info" }

func runDoctor(ctx context.Context, e *env, g *globals, args []string) int {
	fs := newFlagSet("doctor")
	positional, code := parse(e, g, fs, args)
	if code >= 0 {
		return code
	}
	if len(positional) > 0 {
		return e.errorf(exitUsage, "doctor takes no arguments, got %q", positional)
	}
	c, code := connect(e, g)
	if code >= 0 {
		return code
	}
	var report healthReport
	raw, err := c.get(ctx, "doctor", nil, &report)
	var ae *adminError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusNotImplemented:
			return e.errorf(exitAdminError, "the store has no health check")
		case http.StatusNotFound:
			return e.errorf(exitAdminError, "the admin API has no doctor endpoint (a server older than this tool?): %v", ae)
		case http.StatusBadGateway:
			return e.errorf(exitAdminError, "the store could not be checked: %s", ae.Reason)
		}
	}
	if err != nil {
		return fail(ctx, e, err)
	}

	problems := 0
	for _, f := range report.Findings {
		if f.problem() {
			problems++
		}
	}
	done := exitOK
	if problems > 0 {
		done = exitProblems
	}
	if g.json {
		if code := printJSON(e, raw); code != exitOK {
			return code
		}
		return done
	}

	var b strings.Builder
	fmt.Fprintf(&b, "store: %s", report.Store)
	if report.Version != "" {
		fmt.Fprintf(&b, " %s", report.Version)
	}
	if report.Mode != "" {
		fmt.Fprintf(&b, ", %s", report.Mode)
	}
	if report.RoundTripNs > 0 {
		fmt.Fprintf(&b, ", round trip %v", roundDuration(time.Duration(report.RoundTripNs)))
	}
	b.WriteString("\n\n")
	width := 0
	for _, f := range report.Findings {
		width = max(width, len(f.Level))
	}
	for _, f := range report.Findings {
		fmt.Fprintf(&b, "%-*s  %s: %s\n", width, strings.ToUpper(f.Level), f.Check, f.Message)
		if f.Fix != "" {
			fmt.Fprintf(&b, "%-*s  fix: %s\n", width, "", f.Fix)
		}
	}
	if len(report.Findings) > 0 {
		b.WriteByte('\n')
	}
	switch problems {
	case 0:
		b.WriteString("no problem found\n")
	case 1:
		b.WriteString("1 problem found (exit code 4)\n")
	default:
		fmt.Fprintf(&b, "%d problems found (exit code 4)\n", problems)
	}
	fmt.Fprint(e.stdout, clean(b.String()))
	return done
}
