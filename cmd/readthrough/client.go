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

func newClient(base *url.URL, token string, timeout time.Duration) *client {
	return &client{base: base, token: token, timeout: timeout, http: &http.Client{}}
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
		if err := json.Unmarshal(raw, v); err != nil {
			return raw, &unexpectedError{url: target, err: err}
		}
	}
	return raw, nil
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
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &answer) == nil && answer.Error != "" {
		return answer.Error
	}
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Join(strings.Fields(s), " ")
}
