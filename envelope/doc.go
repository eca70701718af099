// Package envelope is the versioned msgpack envelope of a cached entry:
// the bytes stored as the value of one field of a bucket hash. It takes
// over the envelope codec of package storage; testdata holds envelopes
// written by that codec, which this package must read and write byte for
// byte.
package envelope
