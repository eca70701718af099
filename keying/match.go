package keying

import (
	"net/http"
	"regexp"
	"strings"
)

// Match reports whether r's method, host and path fall under the route's
// pattern and, if so, sets the path values on r (with [http.Request.SetPathValue])
// so that [Route.Key] gives the key a routed request would have. It lets
// operator tools resolve a URL to its cache key without the service's
// router. It understands both pattern syntaxes: ServeMux's "{name}",
// "{name...}", "{$}" and trailing-slash subtrees, and chi's
// "{name:regexp}" and final "*". A pattern declared relative to a mounted
// sub-router only matches the path relative to that mount.
func (rt *Route) Match(r *http.Request) bool {
	m := rt.matcher()
	if m.re == nil {
		return false
	}
	if m.method != "" && m.method != r.Method && !(m.method == http.MethodGet && r.Method == http.MethodHead) {
		return false
	}
	if m.host != "" && !strings.EqualFold(m.host, r.Host) {
		return false
	}
	sub := m.re.FindStringSubmatch(r.URL.Path)
	if sub == nil {
		return false
	}
	for i, name := range m.names {
		if name != "" {
			r.SetPathValue(name, sub[i+1])
		}
	}
	return true
}

// Specificity ranks routes that match the same URL as http.ServeMux
// does: a pattern with a host before one without, then more literal path
// characters, then fewer wildcards.
func (rt *Route) Specificity() int {
	m := rt.matcher()
	n := m.literal*16 - m.wildcards
	if m.host != "" {
		n += 1 << 30
	}
	return n
}

// patternMatcher is the pattern compiled to a regular expression over the
// request path.
type patternMatcher struct {
	method, host       string
	re                 *regexp.Regexp
	names              []string // per capture group; "" for groups without a name
	literal, wildcards int
}

func (rt *Route) matcher() *patternMatcher {
	rt.matchOnce.Do(func() { rt.match = compileMatcher(rt.pat.text) })
	return rt.match
}

// compileMatcher turns a pattern already checked by parsePattern into a
// regular expression. It returns a matcher that matches nothing when a chi
// regular expression does not compile.
func compileMatcher(pattern string) *patternMatcher {
	m := &patternMatcher{}
	var start int
	m.method, m.host, start = splitHead(pattern)
	path := pattern[start:]
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(path); {
		switch {
		case path[i] == '{':
			end := closingBrace(path, i)
			content := path[i+1 : end]
			name, expr, isRegexp := strings.Cut(content, ":")
			switch {
			case content == "$":
				b.WriteString("$")
			case isRegexp:
				b.WriteString("(" + expr + ")")
				m.names = append(m.names, name)
				m.names = append(m.names, make([]string, groupCount(expr))...)
				m.wildcards++
			case strings.HasSuffix(name, "..."):
				b.WriteString("(.*)")
				m.names = append(m.names, strings.TrimSuffix(name, "..."))
				m.wildcards += 2
			default:
				b.WriteString("([^/]+)")
				m.names = append(m.names, name)
				m.wildcards++
			}
			i = end + 1
		case path[i] == '*' && i == len(path)-1:
			b.WriteString("(.*)")
			m.names = append(m.names, "*")
			m.wildcards += 2
			i++
		default:
			j := i
			for j < len(path) && path[j] != '{' && !(path[j] == '*' && j == len(path)-1) {
				j++
			}
			b.WriteString(regexp.QuoteMeta(path[i:j]))
			m.literal += j - i
			i = j
		}
	}
	if strings.HasSuffix(path, "/") {
		b.WriteString(".*") // ServeMux: a trailing slash matches the subtree
		m.wildcards += 2
	}
	if !strings.HasSuffix(b.String(), "$") {
		b.WriteString("$")
	}
	re, err := regexp.Compile(b.String())
	if err == nil {
		m.re = re
	}
	return m
}

func groupCount(expr string) int {
	re, err := regexp.Compile(expr)
	if err != nil {
		return 0
	}
	return re.NumSubexp()
}

func isMethod(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return s != ""
}
