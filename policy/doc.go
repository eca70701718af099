// Package policy holds the per-route cache policy of readthrough: a plain
// [Policy] value declared next to a route in Go, whose zero fields mean
// their defaults (each field's comment states it), [Policy.Validate] to
// reject bad values with a [FieldError] naming the field, and policy files
// ([Load], [Parse], [File]) that let operators override declared policies
// without a rebuild. It has no I/O besides reading a file and runs no
// goroutines: package httpcache applies the policies.
package policy
