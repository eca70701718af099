package keying

import (
	"fmt"
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
