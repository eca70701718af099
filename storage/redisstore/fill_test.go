package redisstore

import (
	"testing"

	"github.com/readthrough/readthrough/storage"
)

func TestFillPayload(t *testing.T) {
	tests := []struct {
		bucket, field string
		fill          storage.Fill
	}{
		{"b", "f", storage.Fill{Stored: true}},
		{"", "", storage.Fill{}},
		{"users|15", "\x00\x01\x02\xff", storage.Fill{Stored: true}},
		{string(make([]byte, 300)), "x", storage.Fill{}},
	}
	for _, tt := range tests {
		p := encodeFill(tt.bucket, tt.field, tt.fill)
		b, f, fill, ok := decodeFill(string(p))
		if !ok || b != tt.bucket || f != tt.field || fill != tt.fill {
			t.Errorf("decodeFill(encodeFill(%q, %q, %+v)) = %q, %q, %+v, %v", tt.bucket, tt.field, tt.fill, b, f, fill, ok)
		}
	}
	if got := encodeFill("ab", "c", storage.Fill{Stored: true}); string(got) != "\x01\x01\x02abc" {
		t.Errorf("encodeFill = %q", got)
	}
	for _, bad := range []string{"", "\x01", "\x01\x00", "\x02\x00\x00", "\x01\x00\x05ab", "\x01\x00\xff"} {
		if _, _, _, ok := decodeFill(bad); ok {
			t.Errorf("decodeFill(%q) accepted a bad payload", bad)
		}
	}
}

func FuzzFillPayload(f *testing.F) {
	f.Add("b", "f", true)
	f.Add("", "\x00", false)
	f.Fuzz(func(t *testing.T, bucket, field string, stored bool) {
		p := encodeFill(bucket, field, storage.Fill{Stored: stored})
		b, fl, fill, ok := decodeFill(string(p))
		if !ok || b != bucket || fl != field || fill.Stored != stored {
			t.Fatalf("round trip of %q, %q, %v = %q, %q, %+v, %v", bucket, field, stored, b, fl, fill, ok)
		}
		// Any input decodes or is refused without panicking.
		decodeFill(bucket)
	})
}

func TestGlobEscape(t *testing.T) {
	tests := []struct{ give, want string }{
		{"plain", "plain"},
		{"a*b", `a\*b`},
		{"q?[x]", `q\?\[x\]`},
		{`t\`, `t\\`},
		{"h^", `h\^`},
	}
	for _, tt := range tests {
		if got := globEscape(tt.give); got != tt.want {
			t.Errorf("globEscape(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
