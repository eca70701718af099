package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// paramsFlag collects repeated --param name=value flags.
type paramsFlag map[string]string

func (p paramsFlag) String() string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + p[n]
	}
	return strings.Join(parts, ",")
}

func (p paramsFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want name=value", s)
	}
	if _, dup := p[name]; dup {
		return fmt.Errorf("parameter %q given twice", name)
	}
	p[name] = value
	return nil
}

// purgeAnswer is the admin's answer to a purge.
type purgeAnswer struct {
	Scope   string `json:"scope"`
	Target  string `json:"target"`
	Removed int64  `json:"removed"`
}

func runPurge(ctx context.Context, e *env, g *globals, args []string) int {
	fs := newFlagSet("purge")
	var (
		route, rawURL, tag string
		all, yes           bool
		params             = paramsFlag{}
	)
	fs.StringVar(&route, "route", "", "route pattern, as declared (e.g. 'GET /users/{id}')")
	fs.Var(params, "param", "bucket parameter name=value (repeatable; with --route)")
	fs.StringVar(&rawURL, "url", "", "purge the bucket a GET of this URL uses")
	fs.StringVar(&tag, "tag", "", "purge every bucket stored with this tag")
	fs.BoolVar(&all, "all", false, "purge everything the cache stored")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	positional, code := parse(e, g, fs, args)
	if code >= 0 {
		return code
	}
	if len(positional) > 0 {
		return e.errorf(exitUsage, "purge takes no arguments, got %q; give --route, --url, --tag or --all", positional)
	}
	scopes := 0
	for _, set := range []bool{route != "", rawURL != "", tag != "", all} {
		if set {
			scopes++
		}
	}
	if scopes != 1 {
		return e.errorf(exitUsage, "purge: give exactly one of --route (with --param name=value for one bucket), --url, --tag or --all")
	}
	if len(params) > 0 && route == "" {
		return e.errorf(exitUsage, "purge: --param goes with --route")
	}

	body := map[string]any{}
	var question string
	switch {
	case route != "" && len(params) > 0:
		body["route"], body["params"] = route, map[string]string(params)
	case route != "":
		body["route"] = route
		question = fmt.Sprintf("purge every entry of route %s?", route)
	case rawURL != "":
		body["url"] = rawURL
	case tag != "":
		body["tag"] = tag
	default:
		body["all"] = true
		question = "purge every entry the cache stored (all routes, tags and locks)?"
	}
	c, code := connect(e, g)
	if code >= 0 {
		return code
	}
	if question != "" && !yes {
		if code := confirm(ctx, e, question); code != exitOK {
			return code
		}
	}

	var answer purgeAnswer
	raw, err := c.post(ctx, "purge", body, &answer)
	if err != nil {
		return fail(ctx, e, err)
	}
	if g.json {
		return printJSON(e, raw)
	}
	what := answer.Scope
	if answer.Target != "" {
		what += " " + answer.Target
	}
	if len(params) > 0 {
		what += " (" + params.String() + ")"
	}
	unit := plural(answer.Removed, "bucket")
	if answer.Scope == "all" {
		unit = fmt.Sprintf("%d removed (buckets, tags and locks)", answer.Removed)
	}
	fmt.Fprint(e.stdout, clean(fmt.Sprintf("purged %s: %s", what, unit))+"\n")
	return exitOK
}

// plural formats n with noun, adding "s" unless n is 1, and "removed".
func plural(n int64, noun string) string {
	if n != 1 {
		noun += "s"
	}
	return fmt.Sprintf("%d %s removed", n, noun)
}

// confirm asks question on the terminal and returns exitOK when the
// answer is "yes". It never reads a stdin that is not a terminal: a
// script must say --yes.
func confirm(ctx context.Context, e *env, question string) int {
	if !isTerminal(e.stdin) {
		return e.errorf(exitNotConfirmed, "%s not confirmed: stdin is not a terminal; pass --yes to confirm from a script", strings.TrimSuffix(question, "?"))
	}
	fmt.Fprintf(e.stderr, "%s type 'yes': ", question)
	type reply struct {
		text string
		err  error
	}
	line := make(chan reply, 1)
	go func() { // abandoned on SIGINT: the process is about to exit
		s, err := bufio.NewReader(e.stdin).ReadString('\n')
		line <- reply{strings.TrimSpace(s), err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(e.stderr)
		return e.errorf(exitNotConfirmed, "interrupted: nothing purged")
	case r := <-line:
		switch {
		case r.text == "yes":
			return exitOK
		case r.text == "" && r.err != nil:
			fmt.Fprintln(e.stderr)
			return e.errorf(exitNotConfirmed, "no answer (end of input): nothing purged; pass --yes to confirm from a script")
		default:
			return e.errorf(exitNotConfirmed, "not confirmed (the answer was not 'yes'): nothing purged")
		}
	}
}

// isTerminal reports whether v is a file on a character device: a
// terminal (or /dev/null, where reading the answer meets end of file and
// the purge is not confirmed). Other readers (pipes, files, buffers) are
// not terminals.
func isTerminal(v any) bool {
	f, ok := v.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printJSON prints an admin answer compacted to one line.
func printJSON(e *env, raw []byte) int {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return e.errorf(exitUnreachable, "the admin's answer is not JSON: %v", err)
	}
	io.WriteString(e.stdout, clean(b.String())+"\n") //nolint:errcheck // nothing to do about a closed stdout
	return exitOK
}
