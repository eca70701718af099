package envelope

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/readthrough/readthrough/storage"
)

// diffEntry describes the first difference between two entries, or
// returns "". Times compare with Equal, nil and empty headers and bodies
// are equal.
func diffEntry(got, want *storage.Entry) string {
	switch {
	case got.Status != want.Status:
		return fmt.Sprintf("Status = %d, want %d", got.Status, want.Status)
	case !maps.EqualFunc(got.Header, want.Header, slices.Equal):
		return fmt.Sprintf("Header = %q, want %q", got.Header, want.Header)
	case !got.Stored.Equal(want.Stored):
		return fmt.Sprintf("Stored = %v, want %v", got.Stored, want.Stored)
	case got.Fresh != want.Fresh:
		return fmt.Sprintf("Fresh = %v, want %v", got.Fresh, want.Fresh)
	case got.StaleWhileRevalidate != want.StaleWhileRevalidate:
		return fmt.Sprintf("StaleWhileRevalidate = %v, want %v", got.StaleWhileRevalidate, want.StaleWhileRevalidate)
	case got.StaleIfError != want.StaleIfError:
		return fmt.Sprintf("StaleIfError = %v, want %v", got.StaleIfError, want.StaleIfError)
	case got.OriginTime != want.OriginTime:
		return fmt.Sprintf("OriginTime = %v, want %v", got.OriginTime, want.OriginTime)
	case got.Coding != want.Coding:
		return fmt.Sprintf("Coding = %q, want %q", got.Coding, want.Coding)
	case got.CacheEncoded != want.CacheEncoded:
		return fmt.Sprintf("CacheEncoded = %t, want %t", got.CacheEncoded, want.CacheEncoded)
	case !bytes.Equal(got.Body, want.Body):
		return fmt.Sprintf("Body = %.40q (%d bytes), want %.40q (%d bytes)", got.Body, len(got.Body), want.Body, len(want.Body))
	}
	return ""
}
