package envelope

import (
	"encoding/binary"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// skipValues steps over n complete msgpack values of any type that
// start at off in b, and returns the offset after them; on malformed
// input it reports false and the offset where it stopped.
//
// It is [Decode]'s guard for the elements after the tenth, which it
// ignores, and it exists because [msgpack.Decoder.Skip] recurses into
// nested arrays and maps with no limit, so that a value from the store
// nested deeply enough would overflow the stack. skipValues keeps a count
// of the values still owed instead of recursing, and gives up as soon as
// they outnumber the bytes left (each takes at least one), so its work is
// bounded by len(b) whatever the nesting. It only reads the lengths that
// it needs to step over a value, never a value itself.
func skipValues(b []byte, off int, n uint64) (int, bool) {
	for ; n > 0; n-- {
		if n > uint64(len(b)-off) {
			return off, false
		}
		c := b[off]
		hdr := 1          // code byte and length field
		var size uint64   // bytes after hdr
		var values uint64 // nested values that follow hdr
		switch {
		case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
		case msgpcode.IsFixedMap(c):
			values = 2 * uint64(c&msgpcode.FixedMapMask)
		case msgpcode.IsFixedArray(c):
			values = uint64(c & msgpcode.FixedArrayMask)
		case msgpcode.IsFixedString(c):
			size = uint64(c & msgpcode.FixedStrMask)
		case c == msgpcode.Uint8, c == msgpcode.Int8:
			size = 1
		case c == msgpcode.Uint16, c == msgpcode.Int16:
			size = 2
		case c == msgpcode.Uint32, c == msgpcode.Int32, c == msgpcode.Float:
			size = 4
		case c == msgpcode.Uint64, c == msgpcode.Int64, c == msgpcode.Double:
			size = 8
		case msgpcode.IsFixedExt(c):
			size = 1 + 1<<(c-msgpcode.FixExt1) // type byte, then 1, 2, 4, 8 or 16 bytes
		case c == msgpcode.Bin8, c == msgpcode.Str8, c == msgpcode.Ext8:
			hdr = 2
		case c == msgpcode.Bin16, c == msgpcode.Str16, c == msgpcode.Ext16, c == msgpcode.Array16, c == msgpcode.Map16:
			hdr = 3
		case c == msgpcode.Bin32, c == msgpcode.Str32, c == msgpcode.Ext32, c == msgpcode.Array32, c == msgpcode.Map32:
			hdr = 5
		default: // 0xc1, never used
			return off, false
		}
		if hdr > 1 {
			if hdr > len(b)-off {
				return off, false
			}
			var l uint64
			switch p := b[off+1 : off+hdr]; len(p) {
			case 1:
				l = uint64(p[0])
			case 2:
				l = uint64(binary.BigEndian.Uint16(p))
			default:
				l = uint64(binary.BigEndian.Uint32(p))
			}
			switch {
			case msgpcode.IsExt(c):
				size = l + 1 // type byte
			case c == msgpcode.Array16, c == msgpcode.Array32:
				values = l
			case c == msgpcode.Map16, c == msgpcode.Map32:
				values = 2 * l
			default:
				size = l
			}
		}
		if uint64(hdr)+size > uint64(len(b)-off) {
			return off, false
		}
		off += hdr + int(size)
		n += values
	}
	return off, true
}
