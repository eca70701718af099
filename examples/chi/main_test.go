package main

import (
	"testing"

	"github.com/readthrough/readthrough/internal/examplekit"
)

func TestExampleServesMissThenHit(t *testing.T) {
	examplekit.Smoke(t, run, "/slow/1")
}
