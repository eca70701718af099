package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds the bytes read from one admin answer.
const maxAnswer = 16 << 20

// client calls the admin API under base with a bearer token.
type client struct {
	base    *url.URL
	token   string
	timeout time.Duration
	http    *http.Client
}

// newClient returns a client that never follows a redirect: the admin
// API does not redirect, and Go's client would send the token on to
// another port or scheme of the same host name.
func newClient(base *url.URL, token string, timeout time.Duration) *client {
	return &client{base: base, token: token, timeout: timeout, http: &http.Client{
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			return fmt.Errorf("the admin API does not redirect, yet this address redirected to %s (check --addr)", req.URL.Redacted())
		},
	}}
}

// adminError is an error answer (4xx or 5xx) of the admin API: exit code
// 1.
type adminError struct {
	Status int
	Reason string // the answer's "error", or the start of its body
	hint   string
}

func (e *adminError) Error() string {
	msg := fmt.Sprintf("the admin API answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

// unexpectedError is a success answer that is not the JSON expected: the
// address is probably not the admin API's. Exit code 3.
type unexpectedError struct {
	url string
	err error
}

func (e *unexpectedError) Error() string {
	return fmt.Sprintf("%s did not answer like the readthrough admin API (check --addr): %v", e.url, e.err)
}

// endpoint returns the URL of an endpoint under the base.
func (c *client) endpoint(name string, query url.Values) string {
	u := *c.base
	u.Path += name
	if u.RawPath != "" {
		u.RawPath += name
	}
	u.RawQuery = query.Encode()
	return u.String()
}

// get calls GET endpoint?query and decodes its JSON answer into v; raw is
// the answer's body.
func (c *client) get(ctx context.Context, name string, query url.Values, v any) (raw []byte, err error) {
	return c.do(ctx, http.MethodGet, c.endpoint(name, query), nil, v)
}

// post sends body as JSON to endpoint and decodes the answer into v.
func (c *client) post(ctx context.Context, name string, body any, v any) (raw []byte, err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodPost, c.endpoint(name, nil), b, v)
}

func (c *client) do(ctx context.Context, method, target string, body []byte, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "readthrough-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.netError(ctx, method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, c.netError(ctx, method, target, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &adminError{Status: resp.StatusCode, Reason: reason(raw)}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			ae.hint = "no token given: use --token, --token-file or READTHROUGH_TOKEN"
		}
		return raw, ae
	}
	if v != nil {
		if err := decodeAnswer(raw, v); err != nil {
			return raw, &unexpectedError{url: target, err: err}
		}
	}
	return raw, nil
}

// answer is implemented by the types admin answers decode into: the keys
// an answer must have, and a check of its values, so that a success from
// something that is not the admin API (a service's catch-all, a health
// endpoint's {"status":"ok"}) is not taken for one.
type answer interface {
	required() []string
	check() error
}

// decodeAnswer decodes raw into v and, when v is an answer, checks it.
func decodeAnswer(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return err
	}
	a, ok := v.(answer)
	if !ok {
		return nil
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return err
	}
	for _, k := range a.required() {
		if _, ok := keys[k]; !ok {
			return fmt.Errorf("the answer has no %q", k)
		}
	}
	return a.check()
}

// netError describes a call that got no answer, naming the timeout when
// it ran out.
func (c *client) netError(ctx context.Context, method, target string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: no answer within %v (--timeout)", method, target, c.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach the admin API: %s %s: %w", method, target, err)
}

// reason reads the "error" of an error answer, or else the start of its
// body as text.
func reason(raw []byte) string {
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		return body.Error
	}
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Join(strings.Fields(s), " ")
}

// clean makes text that holds strings from the server safe to print on
// a terminal: control characters (C0 but newline and tab, DEL, C1: the
// escape sequences that move the cursor, rewrite the screen or set the
// clipboard) are shown as \u escapes, which JSON reads back as the same
// characters.
func clean(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0)
}

// The answers' required keys and checks (see answer).

func (purgeAnswer) required() []string { return []string{"scope", "removed"} }

func (a purgeAnswer) check() error {
	switch a.Scope {
	case "bucket", "route", "url", "tag", "all":
		return nil
	}
	return fmt.Errorf("the answer's scope %q is none of bucket, route, url, tag, all", a.Scope)
}

func (healthReport) required() []string { return []string{"store", "findings"} }

func (r healthReport) check() error {
	for _, f := range r.Findings {
		if f.Check == "" || f.Level == "" {
			return fmt.Errorf("a finding without a check or a level")
		}
	}
	return nil
}

func (statsAnswer) required() []string { return []string{"total", "routes"} }
func (statsAnswer) check() error       { return nil }

func (inspection) required() []string { return []string{"route", "bucket", "field", "found"} }
func (inspection) check() error       { return nil }
