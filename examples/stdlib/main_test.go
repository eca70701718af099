package main

import (
	"testing"

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
