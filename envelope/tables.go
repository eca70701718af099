package envelope

import "net/http"

// headerNames is the static table of header names of ENVELOPE.md: in a
// name position of the headers array, the positive fixint i stands for
// headerNames[i]. Names are in canonical form. The table is append-only:
// an entry is never removed, reordered or changed, because entries already
// stored refer to it by position. A reader that meets an index past the
// end of its table (written by a newer writer) rejects the entry as
// corrupt, so the cost of growing it is a miss per entry during a rolling
// deploy, never a wrong header.
var headerNames = [...]string{
	"Content-Type",                     // 0
	"Etag",                             // 1
	"Last-Modified",                    // 2 (a date)
	"Cache-Control",                    // 3
	"Vary",                             // 4
	"Expires",                          // 5 (a date)
	"Content-Language",                 // 6
	"Content-Disposition",              // 7
	"Content-Location",                 // 8
	"Link",                             // 9
	"Location",                         // 10
	"Accept-Ranges",                    // 11
	"Access-Control-Allow-Origin",      // 12
	"Access-Control-Allow-Credentials", // 13
	"Access-Control-Expose-Headers",    // 14
	"Access-Control-Allow-Methods",     // 15
	"Access-Control-Allow-Headers",     // 16
	"Access-Control-Max-Age",           // 17
	"X-Content-Type-Options",           // 18
	"X-Frame-Options",                  // 19
	"Strict-Transport-Security",        // 20
	"Content-Security-Policy",          // 21
	"Referrer-Policy",                  // 22
	"Server",                           // 23
	"X-Request-Id",                     // 24
	"Surrogate-Key",                    // 25
	"Surrogate-Control",                // 26
	"X-Powered-By",                     // 27
	"Pragma",                           // 28
	"Permissions-Policy",               // 29
	"Cross-Origin-Opener-Policy",       // 30
	"Cross-Origin-Resource-Policy",     // 31
	"Cross-Origin-Embedder-Policy",     // 32
	"X-Xss-Protection",                 // 33
	"Timing-Allow-Origin",              // 34
	"Alt-Svc",                          // 35
	"X-Robots-Tag",                     // 36
	"Content-Range",                    // 37
	"Cdn-Cache-Control",                // 38
}

// Positions in headerNames of the names whose values are HTTP dates.
const (
	nameLastModified = 2
	nameExpires      = 5
)

// headerValues is the static table of header values of ENVELOPE.md: in
// a value position whose name is not a date name, the positive fixint i
// stands for headerValues[i]. Values match byte for byte (case matters).
// Append-only, like headerNames.
var headerValues = [...]string{
	"application/json",                      // 0
	"application/json; charset=utf-8",       // 1
	"text/html; charset=utf-8",              // 2
	"text/plain; charset=utf-8",             // 3
	"text/css; charset=utf-8",               // 4
	"text/javascript; charset=utf-8",        // 5
	"application/javascript",                // 6
	"application/xml",                       // 7
	"image/png",                             // 8
	"image/jpeg",                            // 9
	"image/webp",                            // 10
	"image/svg+xml",                         // 11
	"Accept-Encoding",                       // 12
	"Origin",                                // 13
	"nosniff",                               // 14
	"*",                                     // 15
	"bytes",                                 // 16
	"no-cache",                              // 17
	"public",                                // 18
	"DENY",                                  // 19
	"SAMEORIGIN",                            // 20
	"text/html",                             // 21
	"text/plain",                            // 22
	"text/css",                              // 23
	"application/javascript; charset=utf-8", // 24
	"application/xml; charset=utf-8",        // 25
	"text/xml; charset=utf-8",               // 26
	"application/problem+json",              // 27
	"application/vnd.api+json",              // 28
	"application/octet-stream",              // 29
	"application/pdf",                       // 30
	"image/gif",                             // 31
	"image/avif",                            // 32
	"image/x-icon",                          // 33
	"font/woff2",                            // 34
	"Accept",                                // 35
	"Accept-Language",                       // 36
	"Origin, Accept-Encoding",               // 37
	"Accept-Encoding, Origin",               // 38
	"true",                                  // 39
	"no-store",                              // 40
	"private",                               // 41
	"must-revalidate",                       // 42
	"max-age=0",                             // 43
	"no-cache, no-store, must-revalidate",   // 44
	"public, max-age=31536000, immutable",   // 45
	"max-age=31536000",                      // 46
	"max-age=31536000; includeSubDomains",   // 47
	"max-age=31536000; includeSubDomains; preload", // 48
	"max-age=63072000; includeSubDomains; preload", // 49
	"strict-origin-when-cross-origin",              // 50
	"no-referrer",                                  // 51
	"same-origin",                                  // 52
	"cross-origin",                                 // 53
	"same-site",                                    // 54
	"0",                                            // 55
	"1; mode=block",                                // 56
	"inline",                                       // 57
	"attachment",                                   // 58
	"en",                                           // 59
	"en-US",                                        // 60
	"none",                                         // 61
	"nginx",                                        // 62
	`h3=":443"; ma=86400`,                          // 63
}

// The tables must fit positive fixints (0-127), the only form a table
// position takes.
var (
	_ [128 - len(headerNames)]struct{}
	_ [128 - len(headerValues)]struct{}
)

// headerNameIndex and headerValueIndex map table entries to their
// positions, for [Encode].
var (
	headerNameIndex  = tableIndex(headerNames[:])
	headerValueIndex = tableIndex(headerValues[:])
)

// tableNameStorable says, by position, whether a name of the name table
// may be stored ([storable]). All may but Surrogate-Control, which was
// stored when it entered the table and keeps its position because the
// table is append-only. [Decode] looks
// up a name given as a position here, so that only names given as
// strings cost a map lookup.
var tableNameStorable = func() (ok [len(headerNames)]bool) {
	for i, n := range headerNames {
		ok[i] = storable(n)
	}
	return ok
}()

func tableIndex(t []string) map[string]byte {
	m := make(map[string]byte, len(t))
	for i, s := range t {
		m[s] = byte(i)
	}
	return m
}

// isDateName reports whether a header of this name has an HTTP date as
// its value, so that a value stored as an integer is Unix seconds:
// Last-Modified and Expires, compared in ASCII case-insensitively (which,
// for these names, is the same as comparing canonical forms).
func isDateName[T ~string | ~[]byte](name T) bool {
	return asciiEqualFold(name, headerNames[nameLastModified]) || asciiEqualFold(name, headerNames[nameExpires])
}

func asciiEqualFold[T ~string | ~[]byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// httpDateLen is the length of every date http.TimeFormat writes for the
// years 1970 to 9999.
const httpDateLen = len(http.TimeFormat)

// maxHTTPDate is 9999-12-31T23:59:59Z in Unix seconds, the last second
// http.TimeFormat writes with a four-digit year.
const maxHTTPDate = 253402300799

// httpDateSeconds returns the Unix seconds of s if formatting them back
// with http.TimeFormat reproduces s byte for byte, for dates from 1970 to
// 9999; otherwise (another date format, a wrong weekday, a value like "0"
// or "-1", ...) it reports false and s is stored as a string. It reads
// the fields leniently and then compares s with appendHTTPDate of the
// result, so that only the exact form passes; it does not allocate.
func httpDateSeconds(s string) (uint64, bool) {
	// Mon, 02 Jan 2006 15:04:05 GMT
	// 0123456789012345678901234567
	if len(s) != httpDateLen || s[25:] != " GMT" {
		return 0, false
	}
	day, ok1 := digits(s[5:7])
	year, ok2 := digits(s[12:16])
	hour, ok3 := digits(s[17:19])
	minute, ok4 := digits(s[20:22])
	sec, ok5 := digits(s[23:25])
	month := 0
	for i, m := range months {
		if s[8:11] == m {
			month = i + 1
			break
		}
	}
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || month == 0 || year < 1970 {
		return 0, false
	}
	v := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	if v < 0 || v > maxHTTPDate {
		return 0, false
	}
	var buf [httpDateLen]byte
	if string(appendHTTPDate(buf[:0], v)) != s {
		return 0, false
	}
	return uint64(v), true
}

// digits is the decimal number s, if s is all ASCII digits.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

var (
	weekdays = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	months   = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// appendHTTPDate appends the Unix time v, in seconds from 0 to
// maxHTTPDate, as http.TimeFormat writes it, without the time package's
// general formatter: decoding an entry formats every stored date.
func appendHTTPDate(b []byte, v int64) []byte {
	days, secs := v/86400, int(v%86400)
	y, m, d := civilFromDays(days)
	b = append(b, weekdays[(days+4)%7]...) // 1970-01-01 was a Thursday
	b = append(b, ", "...)
	b = append2(b, d)
	b = append(b, ' ')
	b = append(b, months[m-1]...)
	b = append(b, ' ')
	b = append2(b, y/100)
	b = append2(b, y%100)
	b = append(b, ' ')
	b = append2(b, secs/3600)
	b = append(b, ':')
	b = append2(b, secs/60%60)
	b = append(b, ':')
	b = append2(b, secs%60)
	return append(b, " GMT"...)
}

// append2 appends n, from 0 to 99, as two digits.
func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// daysFromCivil is the number of days from 1970-01-01 to the given date
// of the proleptic Gregorian calendar, for years from 1 on (H. Hinnant,
// "chrono-Compatible Low-Level Date Algorithms").
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y-- // the year starts in March
	}
	era := y / 400 // y >= 0 for the years httpDateSeconds passes
	yoe := y - era*400
	mp := (m + 9) % 12 // March is 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// civilFromDays is the inverse of daysFromCivil, for days >= 0.
func civilFromDays(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	doe := int(z - era*146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + int(era)*400
	if m <= 2 {
		y++
	}
	return y, m, d
}
