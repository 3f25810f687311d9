package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file decodes the binary stored form of a tensor map (see StoredTensorsV1).

// readLE fills d from the little-endian bytes of p, which holds exactly
// len(d) elements.
func readLE[T fixed](d []T, p []byte) {
	if len(d) == 0 {
		return
	}
	size := int(unsafe.Sizeof(d[0]))
	if littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*size), p)
		return
	}
	for i := range d {
		q := p[i*size:]
		switch size {
		case 1:
			*(*uint8)(unsafe.Pointer(&d[i])) = q[0]
		case 2:
			*(*uint16)(unsafe.Pointer(&d[i])) = binary.LittleEndian.Uint16(q)
		case 4:
			*(*uint32)(unsafe.Pointer(&d[i])) = binary.LittleEndian.Uint32(q)
		default:
			*(*uint64)(unsafe.Pointer(&d[i])) = binary.LittleEndian.Uint64(q)
		}
	}
}

// binReader reads the binary stored form, remembering the first error.
type binReader struct {
	p   []byte
	off int
	err error
}

func (r *binReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("stored tensors, byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *binReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p[r.off:])
	if n <= 0 {
		r.fail("bad length")
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.p[r.off:])
	if n <= 0 {
		r.fail("bad dimension")
		return 0
	}
	r.off += n
	return v
}

func (r *binReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.p)-r.off) {
		r.fail("%d bytes wanted, %d left", n, len(r.p)-r.off)
		return nil
	}
	b := r.p[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *binReader) byte() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// decodeStored decodes the binary stored form.
func decodeStored(raw []byte) (map[string]*understudy.Tensor, error) {
	r := &binReader{p: raw, off: 1}
	count := r.uvarint()
	if r.err == nil && count > uint64(len(raw)) {
		r.fail("%d tensors in %d bytes", count, len(raw))
	}
	out := make(map[string]*understudy.Tensor, min(count, 64))
	for i := uint64(0); i < count && r.err == nil; i++ {
		name := string(r.bytes(r.uvarint()))
		dt := understudy.DType(r.byte())
		if r.err != nil {
			break
		}
		if dt == understudy.Invalid {
			out[name] = nil
			continue
		}
		if !dt.Supported() {
			r.fail("tensor %q: unknown element type %d", name, int(dt))
			break
		}
		flags := r.byte()
		rank := r.uvarint()
		if r.err == nil && rank > uint64(len(raw)) {
			r.fail("tensor %q: rank %d", name, rank)
			break
		}
		shape := make([]int64, rank)
		for k := range shape {
			shape[k] = r.varint()
		}
		if r.err != nil {
			break
		}
		t := &understudy.Tensor{DType: dt, Shape: shape}
		out[name] = t
		if flags&1 == 0 {
			continue
		}
		n := int64(1)
		for _, d := range shape {
			if d < 0 || (d > 0 && n > math.MaxInt32/d) {
				r.fail("tensor %q: shape %s", name, understudy.FormatShape(shape))
				return nil, r.err
			}
			n *= d
		}
		if size := dt.Size(); size > 0 {
			p := r.bytes(uint64(n) * uint64(size))
			if r.err != nil {
				break
			}
			t.Data = decodeFixed(dt, int(n), p)
			continue
		}
		// Strings: at least one byte each, so a corrupt count cannot
		// allocate more than the row holds.
		if uint64(n) > uint64(len(raw)-r.off) {
			r.fail("tensor %q: %d strings in %d bytes", name, n, len(raw)-r.off)
			break
		}
		s := make([]string, n)
		for k := range s {
			s[k] = string(r.bytes(r.uvarint()))
		}
		t.Data = s
	}
	if r.err == nil && r.off != len(raw) {
		r.fail("%d bytes after the last tensor", len(raw)-r.off)
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode tensors: %w", r.err)
	}
	return out, nil
}

func decodeFixed(dt understudy.DType, n int, p []byte) any {
	switch dt {
	case understudy.Float32:
		d := make([]float32, n)
		readLE(d, p)
		return d
	case understudy.Float64:
		d := make([]float64, n)
		readLE(d, p)
		return d
	case understudy.Uint16, understudy.Float16:
		d := make([]uint16, n)
		readLE(d, p)
		return d
	case understudy.Int8:
		d := make([]int8, n)
		readLE(d, p)
		return d
	case understudy.Int16:
		d := make([]int16, n)
		readLE(d, p)
		return d
	case understudy.Int32:
		d := make([]int32, n)
		readLE(d, p)
		return d
	case understudy.Int64:
		d := make([]int64, n)
		readLE(d, p)
		return d
	case understudy.Uint8:
		return slices.Clone(p)
	case understudy.Uint32:
		d := make([]uint32, n)
		readLE(d, p)
		return d
	case understudy.Uint64:
		d := make([]uint64, n)
		readLE(d, p)
		return d
	case understudy.Bool:
		d := make([]bool, n)
		for i, v := range p {
			d[i] = v != 0
		}
		return d
	}
	return nil
}
