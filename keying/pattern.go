package keying

import (
	"fmt"
	"net/http"
	"strings"
)

// ParamNames returns the path parameter names of pattern, in the order they
// appear. pattern is an [http.ServeMux] pattern or a chi pattern (see the
// package documentation). It reports an error for unbalanced braces, an empty
// or malformed name, and a name used twice.
func ParamNames(pattern string) ([]string, error) {
	pp, err := parsePattern(pattern)
	if err != nil {
		return nil, err
	}
	return pp.names, nil
}

// A Pattern is a route pattern parsed without a policy: what a route that
// is not cached (a write route, say) needs to know of its pattern, read
// the way [Route] reads it.
type Pattern struct {
	text string
	chi  string // text as chi renders it in r.Pattern; "" for ServeMux-only patterns
	host string
	path string
	// params are the path parameters, in pattern order.
	params []string
	// shadows: see parsedPattern.
	shadows []string
}

// ParsePattern parses pattern, an [http.ServeMux] or chi route pattern;
// a malformed one is reported as by [ParamNames].
func ParsePattern(pattern string) (*Pattern, error) {
	pp, err := parsePattern(pattern)
	if err != nil {
		return nil, err
	}
	_, host, start := splitHead(pattern)
	p := &Pattern{text: pattern, host: host, path: pattern[start:], params: pp.names, shadows: pp.shadows}
	if start == 0 {
		p.chi = chiRoutePattern(pattern) // chi patterns have neither method nor host
	}
	return p, nil
}

// String returns the pattern as it was given.
func (p *Pattern) String() string { return p.text }

// Params returns the path parameter names, in pattern order. The caller
// must not modify the slice.
func (p *Pattern) Params() []string { return p.params }

// Routed reports whether r was routed by this pattern, as
// [Route.Routed] does.
func (p *Pattern) Routed(r *http.Request) bool {
	return r.Pattern == p.text || (r.Pattern != "" && r.Pattern == p.chi)
}

// SameTarget reports whether p and q route the same host and path,
// whatever their methods: "PUT /items/{id}" and "GET /items/{id}" do.
func (p *Pattern) SameTarget(q *Pattern) bool {
	return p.path == q.path && strings.EqualFold(p.host, q.host)
}

// splitHead splits what a pattern holds before its path (which starts at
// the first '/'): a ServeMux pattern may hold "METHOD ", a host, or both;
// a head without a space is a method when it is all upper case letters.
// start is the index of the path; a pattern without one has start 0.
func splitHead(pattern string) (method, host string, start int) {
	start = strings.IndexByte(pattern, '/')
	if start <= 0 {
		return "", "", max(start, 0)
	}
	head := strings.TrimSpace(pattern[:start])
	if m, h, ok := strings.Cut(head, " "); ok {
		return m, strings.TrimSpace(h), start
	}
	if isMethod(head) {
		return head, "", start
	}
	return "", head, start
}

// parsedPattern is what keying needs to know about a pattern.
type parsedPattern struct {
	// names are the path parameters, in pattern order.
	names []string
	// shadows are names whose PathValue is also read into the field because
	// the pattern text means different things to the two routers: "{$}" is
	// an end anchor to ServeMux but a parameter named "$" to chi, and
	// "{rest...}" is the parameter "rest" to ServeMux but "rest..." to chi.
	// Reading both readings keeps the key correct under either router; the
	// reading that does not apply is always empty.
	shadows []string
}

// patternError reports a malformed pattern.
func patternError(pattern string, off int, format string, args ...any) error {
	return fmt.Errorf("keying: pattern %q: at offset %d: %s", pattern, off, fmt.Sprintf(format, args...))
}

func parsePattern(pattern string) (parsedPattern, error) {
	var pp parsedPattern
	if pattern == "" {
		return pp, fmt.Errorf("keying: pattern %q: empty pattern", pattern)
	}
	// The path starts at the first '/'. Before it, a ServeMux pattern may
	// hold "METHOD " and a host; chi patterns always start with '/'. Only
	// split off a method when the pattern does not start with '/', since a
	// chi regular expression may contain spaces.
	start := strings.IndexByte(pattern, '/')
	if start < 0 {
		return pp, patternError(pattern, 0, "no path (missing '/')")
	}
	if i := strings.IndexAny(pattern[:start], "{}"); i >= 0 {
		return pp, patternError(pattern, i, "brace before the path (missing initial '/'?)")
	}
	if i := strings.IndexAny(pattern[:start], " \t"); i == 0 {
		return pp, patternError(pattern, 0, "empty method")
	}

	seen := make(map[string]bool)
	add := func(off int, name string) error {
		if seen[name] {
			return patternError(pattern, off, "duplicate parameter name %q", name)
		}
		seen[name] = true
		pp.names = append(pp.names, name)
		return nil
	}
	for i := start; i < len(pattern); {
		switch pattern[i] {
		case '}':
			return pp, patternError(pattern, i, "unbalanced '}'")
		case '{':
			end := closingBrace(pattern, i)
			if end < 0 {
				return pp, patternError(pattern, i, "unbalanced '{'")
			}
			content := pattern[i+1 : end]
			atEnd := end == len(pattern)-1
			switch {
			case content == "$":
				// ServeMux: "{$}" must be the whole last segment.
				if !atEnd || pattern[i-1] != '/' {
					return pp, patternError(pattern, i, "{$} must end the pattern, after a '/'")
				}
				pp.shadows = append(pp.shadows, "$")
			default:
				name, _, isRegexp := strings.Cut(content, ":")
				if !isRegexp {
					if base, multi := strings.CutSuffix(name, "..."); multi {
						if !atEnd {
							return pp, patternError(pattern, i, "{%s} must end the pattern", content)
						}
						pp.shadows = append(pp.shadows, name)
						name = base
					}
				}
				if name == "" {
					return pp, patternError(pattern, i, "empty parameter name")
				}
				if strings.ContainsAny(name, "{}/") {
					return pp, patternError(pattern, i, "malformed parameter name %q", name)
				}
				if err := add(i, name); err != nil {
					return pp, err
				}
			}
			i = end + 1
		default:
			i++
		}
	}
	// chi: a final '*' catches the rest of the path under the name "*". To
	// ServeMux it is a literal, and PathValue("*") is then always empty.
	if strings.HasSuffix(pattern, "*") {
		if err := add(len(pattern)-1, "*"); err != nil {
			return pp, err
		}
	}
	for _, s := range pp.shadows {
		if seen[s] {
			return pp, patternError(pattern, 0, "parameter name %q is ambiguous", s)
		}
	}
	return pp, nil
}

// closingBrace returns the index of the '}' that closes the '{' at open,
// counting nested braces as chi does, or -1.
func closingBrace(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
