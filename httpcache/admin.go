package httpcache

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// AdminOption configures [Cache.AdminHandler]. Zero means the default; a
// negative number is an error.
type AdminOption interface{ apply(*admin) }

type adminOptionFunc func(*admin)

func (f adminOptionFunc) apply(a *admin) { f(a) }

// WithAdminToken admits callers that send "Authorization: Bearer token"
// and logs each of their purges under name. A token has at least 16
// characters. Give it once per caller; at least one is required unless
// [WithInsecureAdmin] is given.
func WithAdminToken(name, token string) AdminOption {
	return adminOptionFunc(func(a *admin) { a.pending = append(a.pending, adminToken{name: name, token: token}) })
}

// WithInsecureAdmin lets the handler run without tokens: anyone who
// reaches it can purge. Only for development on a loopback-only listener:
// without tokens the handler answers only requests addressed to
// localhost or a loopback address (against DNS rebinding), and like every
// admin handler refuses a browser's cross-site writes.
func WithInsecureAdmin() AdminOption {
	return adminOptionFunc(func(a *admin) { a.insecure = true })
}

// WithAdminLogger sets the logger that receives one line per purge.
// Default (and nil): the cache's logger.
func WithAdminLogger(l *slog.Logger) AdminOption {
	return adminOptionFunc(func(a *admin) { a.log = l })
}

// WithAdminMaxBody bounds a request body; larger bodies get 400. Default
// 64 KiB.
func WithAdminMaxBody(n int64) AdminOption {
	return adminOptionFunc(func(a *admin) { a.maxBody = n })
}

// minTokenLen is the shortest bearer token accepted.
const minTokenLen = 16

// AdminHandler returns the operators' HTTP API, to mount under any prefix
// (typically on an internal port). Every request but the admin page needs
// "Authorization: Bearer <token>". Endpoints, matched by the last path
// element:
//
//	POST .../purge    {"route": "GET /users/{id}", "params": {"id": "15"}}  one bucket
//	                  {"url": "https://svc/users/15"}                        the URL's bucket
//	                  {"route": "GET /users/{id}"}                           every bucket of a route
//	                  {"tag": "user-15"}                                     every bucket with a tag
//	                  {"all": true}                                          everything under the prefix
//	GET  .../stats    counters, in total and per route, and "recent": their
//	                  deltas over the last 5 minutes (see [RecentStats]);
//	                  with a local tier, "local" (see [LocalStats])
//	GET  .../inspect?url=https://svc/users/15[&header=Accept-Language:fr]
//	                  the URL's route, bucket and field, and its entry's state
//	GET  .../doctor   the store's health report (Cache.CheckHealth); 501 when
//	                  the store has no health check, 502 when it failed
//	GET  .../         the admin page (also .../ui), served without a token
//
// The admin page is one self-contained HTML page for a browser: it asks
// for a token, keeps it for the tab only, and calls the endpoints above
// with it: per-route stats refreshing by themselves, the store's health
// check, inspect and purge (with a confirmation). It holds no data, and
// is served with a strict Content-Security-Policy and frame headers.
//
// The recent window is sampled every 10 seconds by a goroutine that the
// first AdminHandler of a cache starts and [Cache.Close] stops; the hit
// path does nothing more for it than count, as it always does.
//
// The purge body is strict JSON: one object, keys exactly as above
// (lowercase, each at most once, none other), values of the types shown
// (null is none of them), "params" names given once, nothing after the
// object.
//
// Answers are JSON; bad requests get 400 with {"error": reason}, a missing
// or wrong token 401, a wrong method 405. It returns an error when no token
// is configured and [WithInsecureAdmin] is not given, or a token is too
// short.
func (c *Cache) AdminHandler(opts ...AdminOption) (http.Handler, error) {
	a := &admin{cache: c}
	for _, o := range opts {
		o.apply(a)
	}
	if len(a.pending) == 0 && !a.insecure {
		return nil, errors.New("httpcache: admin handler needs at least one token (WithAdminToken, or WithInsecureAdmin for development)")
	}
	if a.maxBody < 0 {
		return nil, fmt.Errorf("httpcache: WithAdminMaxBody: negative bound %d", a.maxBody)
	}
	if a.log == nil {
		a.log = c.log
	}
	if a.maxBody == 0 {
		a.maxBody = 64 << 10
	}
	for _, t := range a.pending {
		if len(t.token) < minTokenLen {
			return nil, fmt.Errorf("httpcache: admin token %q is shorter than %d characters", t.name, minTokenLen)
		}
		a.tokens = append(a.tokens, adminToken{name: t.name, sum: sha256.Sum256([]byte(t.token))})
	}
	a.pending = nil
	c.history.start(c.recentCounts)
	return a, nil
}

type adminToken struct {
	name  string
	token string // until AdminHandler hashes it
	sum   [sha256.Size]byte
}

type admin struct {
	cache    *Cache
	log      *slog.Logger
	maxBody  int64
	insecure bool
	pending  []adminToken // from the options
	tokens   []adminToken
	checks   sharedChecks // the doctor endpoint's health checks
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(a.tokens) == 0 && !loopbackHost(r.Host) {
		// Without tokens a browser on the machine is the only guard: a
		// page of another site that rebinds its name to 127.0.0.1 would
		// be same-origin with this handler and could read its answers.
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "an admin handler without tokens answers only requests addressed to localhost, 127.0.0.1 or [::1]"})
		return
	}
	if err := sameOrigin.Check(r); err != nil {
		// A browser's cross-site POST (a "simple" request needs no
		// preflight) must not purge, even where no token guards.
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused: " + err.Error()})
		return
	}
	if isAdminPage(r.URL.Path) {
		servePage(w, r) // no token: the page holds no data, and asks for one
		return
	}
	who, ok := a.authorize(r)
	if !ok {
		if suppressed, log := a.cache.logLimit.allow("admin unauthorized", time.Now()); log {
			a.log.LogAttrs(r.Context(), slog.LevelWarn, "readthrough: admin request without a valid token",
				slog.String("remote", r.RemoteAddr), slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int64("suppressed", suppressed))
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="readthrough"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or invalid bearer token"})
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	endpoint := path[strings.LastIndexByte(path, '/')+1:]
	switch endpoint {
	case "purge":
		if !allow(w, r, http.MethodPost) {
			return
		}
		a.purge(w, r, who)
	case "stats":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		out := map[string]any{"total": a.cache.Stats(), "routes": a.cache.RouteStats(), "recent": a.cache.recentStats()}
		if ls := a.cache.LocalStats(); ls.Enabled {
			out["local"] = ls
		}
		writeJSON(w, http.StatusOK, out)
	case "inspect":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.inspect(w, r)
	case "doctor":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a.doctor(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown endpoint " + endpoint + "; use purge, stats, inspect or doctor"})
	}
}

// sameOrigin refuses the unsafe requests a browser sends from another
// site (by Sec-Fetch-Site, or Origin against Host).
var sameOrigin = http.NewCrossOriginProtection()

// loopbackHost reports whether host (a Host header) names this machine:
// localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// authorize checks the bearer token against every configured token in
// constant time and returns the matching token's name.
func (a *admin) authorize(r *http.Request) (string, bool) {
	if len(a.tokens) == 0 {
		return "insecure", true
	}
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		token = ""
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	who, found := "", 0
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			who, found = t.name, 1
		}
	}
	return who, found == 1 && token != ""
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed; use " + strings.Join(methods, " or ")})
	return false
}

// purgeRequest is the body of POST .../purge; exactly one scope is set.
// It is read by [decodePurge], never by encoding/json's struct decoding.
type purgeRequest struct {
	Route  string
	Params map[string]string // non-nil when "params" was given, even as {}
	URL    string
	Tag    string
	All    bool
}

// decodePurge reads a purge body strictly. encoding/json's struct decoding
// matches keys case-insensitively and lets a later duplicate win, so
// {"all": false, "ALL": true} would purge everything although its first
// key, the one a reviewer or a filter reads, says not to. Here the body
// must be one JSON object whose keys are exactly "route", "params", "url",
// "tag" and "all" (lowercase, each at most once, compared after
// unescaping), with string values, a boolean "all" and "params" an object
// of strings without duplicate names; null is no value of any of them.
// Nothing may follow the object. The error is the reason given to the
// caller.
func decodePurge(body []byte) (purgeRequest, error) {
	var req purgeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := expectDelim(dec, '{'); err != nil {
		return req, err
	}
	seen := make(map[string]bool, 5)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, malformed(err)
		}
		key, _ := tok.(string) // inside an object, More and Token give a key here
		if seen[key] {
			return req, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		switch key {
		case "route":
			req.Route, err = stringValue(dec, key)
		case "params":
			req.Params, err = paramsValue(dec)
		case "url":
			req.URL, err = stringValue(dec, key)
		case "tag":
			req.Tag, err = stringValue(dec, key)
		case "all":
			req.All, err = boolValue(dec, key)
		default:
			err = fmt.Errorf("unknown field %q; the keys are route, params, url, tag and all, in lowercase", key)
		}
		if err != nil {
			return req, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return req, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("malformed JSON: trailing data after the object")
	}
	return req, nil
}

// malformed describes a syntax error; an end of input inside the object
// is reported as unexpected rather than as a bare EOF.
func malformed(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("malformed JSON: %w", err)
}

// expectDelim reads one token and checks that it is the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return malformed(err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		if d == '{' {
			return fmt.Errorf("malformed JSON: want a JSON object, got %s", describe(tok))
		}
		return fmt.Errorf("malformed JSON: want %q, got %s", d, describe(tok))
	}
	return nil
}

// stringValue reads the value of key, which must be a JSON string.
func stringValue(dec *json.Decoder, key string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", malformed(err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string, not %s", key, describe(tok))
	}
	return s, nil
}

// boolValue reads the value of key, which must be true or false.
func boolValue(dec *json.Decoder, key string) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, malformed(err)
	}
	b, ok := tok.(bool)
	if !ok {
		return false, fmt.Errorf("%q must be true or false, not %s", key, describe(tok))
	}
	return b, nil
}

// paramsValue reads "params": an object whose values are strings, each
// name given once.
func paramsValue(dec *json.Decoder) (map[string]string, error) {
	const want = `"params" must be an object of strings`
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s, not %s", want, describe(tok))
	}
	params := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		name, _ := tok.(string)
		if tok, err = dec.Token(); err != nil {
			return nil, malformed(err)
		}
		value, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%s; %q is %s", want, name, describe(tok))
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf(`"params": duplicate key %q`, name)
		}
		params[name] = value
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return params, nil
}

// describe names the kind of a JSON token for an error message.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		if t == '[' {
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	}
	return fmt.Sprintf("%T", tok)
}

type purgeResponse struct {
	Scope   string `json:"scope"`
	Target  string `json:"target,omitempty"`
	Removed int64  `json:"removed"`
}

func (a *admin) purge(w http.ResponseWriter, r *http.Request, who string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, a.maxBody+1))
	if err != nil {
		badRequest(w, "read body: "+err.Error())
		return
	}
	if int64(len(body)) > a.maxBody {
		badRequest(w, fmt.Sprintf("body exceeds %d bytes", a.maxBody))
		return
	}
	req, err := decodePurge(body)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	scopes := 0
	for _, set := range []bool{req.Route != "", req.URL != "", req.Tag != "", req.All} {
		if set {
			scopes++
		}
	}
	if scopes != 1 {
		badRequest(w, `give exactly one of "route" (with "params" for one bucket), "url", "tag" or "all": true`)
		return
	}
	if req.Params != nil && req.Route == "" {
		badRequest(w, `"params" goes with "route"`)
		return
	}

	ctx := r.Context()
	var res purgeResponse
	switch {
	case req.Route != "" && req.Params != nil:
		res.Scope, res.Target = "bucket", req.Route
		res.Removed, err = a.cache.PurgeBucket(ctx, req.Route, req.Params)
	case req.Route != "":
		res.Scope, res.Target = "route", req.Route
		res.Removed, err = a.cache.PurgeRoute(ctx, req.Route)
	case req.URL != "":
		res.Scope, res.Target = "url", req.URL
		res.Removed, err = a.cache.PurgeURL(ctx, req.URL)
	case req.Tag != "":
		res.Scope, res.Target = "tag", req.Tag
		res.Removed, err = a.cache.PurgeTag(ctx, req.Tag)
	default:
		res.Scope = "all"
		res.Removed, err = a.cache.PurgeAll(ctx)
	}
	if err != nil {
		a.log.Warn("readthrough: purge failed", "who", who, "remote", r.RemoteAddr, "scope", res.Scope, "target", res.Target, "err", err)
		if isInputError(err) {
			badRequest(w, err.Error())
			return
		}
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "purge failed: " + err.Error()})
		return
	}
	a.log.Info("readthrough: purge", "who", who, "remote", r.RemoteAddr, "scope", res.Scope, "target", res.Target, "removed", res.Removed)
	writeJSON(w, http.StatusOK, res)
}

// isInputError tells the caller's mistakes (400) from store failures.
func isInputError(err error) bool {
	return errors.Is(err, ErrUnknownRoute) || errors.Is(err, ErrNoRoute) || errors.Is(err, ErrInvalid)
}

func (a *admin) inspect(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("url")
	if target == "" {
		badRequest(w, `missing query parameter "url"`)
		return
	}
	header := http.Header{}
	for _, h := range q["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			badRequest(w, fmt.Sprintf("header %q: want Name:Value", h))
			return
		}
		header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	in, err := a.cache.Inspect(r.Context(), target, header)
	if err != nil {
		if isInputError(err) {
			badRequest(w, err.Error())
			return
		}
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func badRequest(w http.ResponseWriter, reason string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}
