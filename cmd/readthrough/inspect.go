package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// headersFlag collects repeated --header Name:value flags.
type headersFlag []string

func (h *headersFlag) String() string { return strings.Join(*h, ", ") }

func (h *headersFlag) Set(s string) error {
	name, _, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: want Name:value", s)
	}
	*h = append(*h, s)
	return nil
}

// inspection is the admin's answer to inspect (httpcache.Inspection).
type inspection struct {
	Route     string `json:"route"`
	Bucket    string `json:"bucket"`
	Field     string `json:"field"`
	Found     bool   `json:"found"`
	State     string `json:"state"`
	Status    int    `json:"status"`
	AgeSec    int64  `json:"age_seconds"`
	TTLSec    int64  `json:"ttl_seconds"`
	Stored    int    `json:"stored_bytes"`
	BodyBytes int    `json:"body_bytes"`
	Coding    string `json:"content_coding"`
	StoredAt  string `json:"stored_at"`
	// VaryOn: the response varies on these request headers beyond the
	// route's key (standards mode); Field is the variant's of --header.
	VaryOn []string `json:"vary_on"`
}

func runInspect(ctx context.Context, e *env, g *globals, args []string) int {
	fs := newFlagSet("inspect")
	var headers headersFlag
	fs.Var(&headers, "header", "request header Name:value the route varies on (repeatable)")
	positional, code := parse(e, g, fs, args)
	if code >= 0 {
		return code
	}
	if len(positional) != 1 {
		return e.errorf(exitUsage, "inspect takes one URL (the one clients request, with its host), got %d arguments", len(positional))
	}
	target := positional[0]
	c, code := connect(e, g)
	if code >= 0 {
		return code
	}
	q := url.Values{"url": {target}}
	if len(headers) > 0 {
		q["header"] = headers
	}
	var in inspection
	raw, err := c.get(ctx, "inspect", q, &in)
	if err != nil {
		return fail(ctx, e, err)
	}
	if g.json {
		return printJSON(e, raw)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, clean(v)) }
	row("url", target)
	for _, h := range headers {
		row("header", h)
	}
	row("route", in.Route)
	row("bucket", in.Bucket)
	row("field", in.Field)
	if len(in.VaryOn) > 0 {
		row("varies on", strings.Join(in.VaryOn, ", ")+" (the field is the variant of the --header values given)")
	}
	switch {
	case !in.Found && in.State == "":
		row("entry", "none: the next GET of this URL is a miss")
	case !in.Found:
		row("entry", in.State+": unreadable, so a miss")
		row("stored", fmt.Sprintf("%d bytes", in.Stored))
	default:
		state := in.State
		switch in.State {
		case "fresh":
			state += ": served as a hit"
		case "stale", "stale-if-error":
			state += ": served stale while it is refreshed, or on an origin error"
		case "dead":
			state += ": past every lifetime, a miss"
		case "unknown-coding":
			state += ": this instance cannot decode it, a miss"
		}
		row("entry", state)
		row("status", fmt.Sprint(in.Status))
		age := seconds(in.AgeSec)
		if in.StoredAt != "" {
			age += " (stored " + in.StoredAt + ")"
		}
		row("age", age)
		if in.TTLSec > 0 {
			row("fresh for", seconds(in.TTLSec))
		} else {
			row("stale since", seconds(-in.TTLSec))
		}
		row("stored", fmt.Sprintf("%d bytes: a %d-byte body and its envelope", in.Stored, in.BodyBytes))
		coding := in.Coding
		if coding == "" || coding == "identity" {
			coding = "identity (not compressed)"
		}
		row("coding", coding)
	}
	tw.Flush() //nolint:errcheck // nothing to do about a closed stdout
	return exitOK
}

// seconds formats a number of seconds as a duration.
func seconds(n int64) string { return (time.Duration(n) * time.Second).String() }
