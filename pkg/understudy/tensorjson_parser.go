package understudy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// This file parses a nested JSON array into a tensor in one pass.

// parser reads a nested JSON array in one pass, learning the shape from the
// first array at each depth and checking every later one against it.
type parser struct {
	buf   []byte
	pos   int
	name  string
	t     *Tensor
	shape []int64 // -1 until the first array at that depth closes
	leaf  int     // depth of scalars, -1 until the first one
	idx   []int64 // index path of the element being read, for messages
	v     values
}

// values collects elements in a slice of their own type; appending through
// Tensor.Data (an interface) would allocate on every element.
type values struct {
	f32 []float32
	f64 []float64
	u16 []uint16
	i8  []int8
	u8  []uint8
	i16 []int16
	i32 []int32
	u32 []uint32
	i64 []int64
	u64 []uint64
	b   []bool
	str []string
}

func (v *values) reserve(dt DType, n int) {
	switch dt {
	case Float32:
		v.f32 = make([]float32, 0, n)
	case Float64:
		v.f64 = make([]float64, 0, n)
	case Float16, Uint16:
		v.u16 = make([]uint16, 0, n)
	case Int8:
		v.i8 = make([]int8, 0, n)
	case Uint8:
		v.u8 = make([]uint8, 0, n)
	case Int16:
		v.i16 = make([]int16, 0, n)
	case Int32:
		v.i32 = make([]int32, 0, n)
	case Uint32:
		v.u32 = make([]uint32, 0, n)
	case Int64:
		v.i64 = make([]int64, 0, n)
	case Uint64:
		v.u64 = make([]uint64, 0, n)
	case Bool:
		v.b = make([]bool, 0, n)
	case String:
		v.str = make([]string, 0, n)
	}
}

func (v *values) data(dt DType) any {
	switch dt {
	case Float32:
		return v.f32
	case Float64:
		return v.f64
	case Float16, Uint16:
		return v.u16
	case Int8:
		return v.i8
	case Uint8:
		return v.u8
	case Int16:
		return v.i16
	case Int32:
		return v.i32
	case Uint32:
		return v.u32
	case Int64:
		return v.i64
	case Uint64:
		return v.u64
	case Bool:
		return v.b
	}
	return v.str
}

// maxReserve caps the elements reserved before parsing: 8 MiB for int64.
const maxReserve = 1 << 20

func parseNested(raw []byte, name string, dt DType) (*Tensor, error) {
	if !dt.Supported() {
		return nil, Errorf(EINVALID, "input %q: element type %v is not supported", name, dt)
	}
	// The tensor's shape and data are the parser's, set at the end. The
	// shape and the index path start with room for four dimensions each,
	// in one allocation, instead of growing from nothing: five allocations
	// fewer for a batch of rows. Past four, append moves them.
	t := &Tensor{DType: dt}
	dims := make([]int64, 8)
	p := &parser{buf: raw, name: name, t: t, leaf: -1, shape: dims[:0:4], idx: dims[4:4:8]}
	// Every element but the last is followed by a comma, so this is an
	// upper bound that saves regrowing the slice. Commas inside strings
	// count too, and nothing has checked the element type yet, so the bound
	// is capped: past it append grows the slice as elements really arrive.
	p.v.reserve(dt, min(bytes.Count(raw, []byte{','})+1, maxReserve))
	if err := p.value(0); err != nil {
		return nil, err
	}
	t.Data = p.v.data(dt)
	p.ws()
	if p.pos != len(p.buf) {
		return nil, p.syntax("unexpected data after the value")
	}
	if p.leaf >= 0 && len(p.shape) != p.leaf {
		return nil, Errorf(EINVALID, "input %q: ragged array: some elements at depth %d are arrays and some are %s values", name, p.leaf, dt)
	}
	t.Shape = p.shape
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t, nil
}

func (p *parser) ws() {
	for p.pos < len(p.buf) && isSpace(p.buf[p.pos]) {
		p.pos++
	}
}

func (p *parser) syntax(msg string) error {
	return Errorf(EINVALID, "input %q: malformed array at byte %d: %s", p.name, p.pos, msg)
}

func (p *parser) where() string {
	return FormatShape(p.idx)
}

func (p *parser) value(depth int) error {
	p.ws()
	if p.pos >= len(p.buf) {
		return p.syntax("unexpected end of input")
	}
	if depth > 32 {
		return p.syntax("arrays nested deeper than 32 levels")
	}
	if p.buf[p.pos] != '[' {
		if p.leaf < 0 {
			p.leaf = depth
		} else if p.leaf != depth {
			return Errorf(EINVALID, "input %q: ragged array: element %s is a scalar, but elements at that depth are arrays elsewhere", p.name, p.where())
		}
		return p.scalar()
	}
	if p.leaf >= 0 && depth >= p.leaf {
		return Errorf(EINVALID, "input %q: ragged array: element %s is an array, but elements at that depth are scalars elsewhere", p.name, p.where())
	}
	p.pos++
	if len(p.shape) <= depth {
		p.shape = append(p.shape, -1)
		p.idx = append(p.idx, 0)
	}
	var count int64
	p.ws()
	if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
		p.pos++
	} else {
		fast := p.t.DType == Float32 || p.t.DType == Float64
		for {
			if fast && p.leaf == depth+1 {
				n, closed := p.floats()
				count += n
				if closed {
					break
				}
			}
			p.idx[depth] = count
			if err := p.value(depth + 1); err != nil {
				return err
			}
			count++
			p.ws()
			if p.pos >= len(p.buf) {
				return p.syntax("unexpected end of input inside an array")
			}
			c := p.buf[p.pos]
			p.pos++
			if c == ']' {
				break
			}
			if c != ',' {
				p.pos--
				return p.syntax(fmt.Sprintf("expected ',' or ']', found %q", c))
			}
		}
	}
	if p.shape[depth] < 0 {
		p.shape[depth] = count
	} else if p.shape[depth] != count {
		return Errorf(EINVALID, "input %q: ragged array: the array at %s has %d elements, but the first array at that depth has %d", p.name, FormatShape(p.idx[:depth]), count, p.shape[depth])
	}
	return nil
}

// floats reads plain numbers of an array of scalars, each with the ',' or
// the ']' after it, without value's per-element bookkeeping: most of a large
// request is spent here. It stops before anything else (a string, a nested
// array, a number strconv refuses, bad syntax) and leaves that element to
// value, which reads or reports it exactly as it would have. closed says
// that the array's ']' was read.
func (p *parser) floats() (n int64, closed bool) {
	buf := p.buf
	bits := 32
	if p.t.DType == Float64 {
		bits = 64
	}
	for {
		pos := p.pos
		for pos < len(buf) && isSpace(buf[pos]) {
			pos++
		}
		start := pos
		pos = scalarEnd(buf, pos)
		if pos == start || (buf[start] != '-' && (buf[start] < '0' || buf[start] > '9')) {
			return n, false
		}
		f, err := strconv.ParseFloat(unsafe.String(&buf[start], pos-start), bits)
		if err != nil {
			return n, false
		}
		for pos < len(buf) && isSpace(buf[pos]) {
			pos++
		}
		if pos >= len(buf) || (buf[pos] != ',' && buf[pos] != ']') {
			return n, false
		}
		if bits == 32 {
			p.v.f32 = append(p.v.f32, float32(f))
		} else {
			p.v.f64 = append(p.v.f64, f)
		}
		n++
		p.pos = pos + 1
		if buf[pos] == ']' {
			return n, true
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// token returns the bytes of a JSON scalar starting at pos.
func (p *parser) token() []byte {
	start := p.pos
	if p.buf[p.pos] == '"' {
		p.pos++
		for p.pos < len(p.buf) {
			switch p.buf[p.pos] {
			case '\\':
				p.pos += 2
				continue
			case '"':
				p.pos++
				return p.buf[start:p.pos]
			}
			p.pos++
		}
		return p.buf[start:]
	}
	p.pos = scalarEnd(p.buf, start)
	return p.buf[start:p.pos]
}

// scalarEnd returns where the unquoted scalar starting at pos ends: at the
// next ',', ']', space or the end of buf.
func scalarEnd(buf []byte, pos int) int {
	for pos < len(buf) && buf[pos] != ',' && buf[pos] != ']' && !isSpace(buf[pos]) {
		pos++
	}
	return pos
}

func (p *parser) scalar() error {
	tok := p.token()
	dt := p.t.DType
	kind := "a number"
	switch {
	case tok[0] == '"':
		kind = "a string"
	case string(tok) == "true" || string(tok) == "false":
		kind = "a boolean"
	case string(tok) == "null":
		kind = "null"
	case tok[0] == '{':
		return p.syntax("objects are not allowed inside an array")
	}
	want := func() error {
		what := map[bool]string{true: "numbers", false: "values"}[dt != String && dt != Bool]
		return Errorf(EINVALID, "input %q: element %s is %s (%s), but the input expects %s %s", p.name, p.where(), kind, clip(tok), dt, what)
	}
	switch dt {
	case String:
		if kind != "a string" {
			return want()
		}
		s, err := unquote(tok)
		if err != nil {
			return p.syntax("invalid string " + clip(tok))
		}
		if err := checkNUL(p.name, p.where(), s); err != nil {
			return err
		}
		p.v.str = append(p.v.str, s)
		return nil
	case Bool:
		var v bool
		switch string(tok) {
		case "true", "1":
			v = true
		case "false", "0":
		default:
			return Errorf(EINVALID, "input %q: element %s is %s, but the input expects bool values (true or false)", p.name, p.where(), clip(tok))
		}
		p.v.b = append(p.v.b, v)
		return nil
	}
	if kind != "a number" {
		return want()
	}
	// The token is not modified while s is in use, and s never outlives
	// this call except through copies made by formatting.
	s := unsafe.String(&tok[0], len(tok))
	if dt.IsFloat() {
		bits := 64
		if dt != Float64 {
			bits = 32
		}
		f, err := strconv.ParseFloat(s, bits)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return Errorf(EINVALID, "input %q: element %s value %s is out of range for %s", p.name, p.where(), clip(tok), dt)
			}
			return p.syntax("invalid number " + clip(tok))
		}
		switch dt {
		case Float32:
			p.v.f32 = append(p.v.f32, float32(f))
		case Float64:
			p.v.f64 = append(p.v.f64, f)
		case Float16:
			if math.Abs(f) > 65504 {
				return Errorf(EINVALID, "input %q: element %s value %s is out of range for float16 (±65504)", p.name, p.where(), clip(tok))
			}
			p.v.u16 = append(p.v.u16, Float32ToHalf(float32(f)))
		}
		return nil
	}
	return p.integer(s, dt)
}

func (p *parser) integer(s string, dt DType) error {
	unsigned := dt == Uint8 || dt == Uint16 || dt == Uint32 || dt == Uint64
	var iv int64
	var uv uint64
	rangeErr := func() error {
		if unsigned {
			return Errorf(EINVALID, "input %q: element %s value %s is out of range for %s (0 to %d)", p.name, p.where(), clipString(s), dt, dt.uintMax())
		}
		lo, hi := dt.intRange()
		return Errorf(EINVALID, "input %q: element %s value %s is out of range for %s (%d to %d)", p.name, p.where(), clipString(s), dt, lo, hi)
	}
	if strings.ContainsAny(s, ".eE") {
		// Exporters often write integral values as 2.0; accept those, refuse 2.5.
		f, err := strconv.ParseFloat(s, 64)
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			// Beyond float64 (1e400) is beyond every integer type too.
			return rangeErr()
		}
		if err != nil {
			return p.syntax("invalid number " + clipString(s))
		}
		if f != math.Trunc(f) {
			return Errorf(EINVALID, "input %q: element %s is %s, not an integer; the input expects %s", p.name, p.where(), clipString(s), dt)
		}
		// The bounds are powers of two, exact as float64, where the largest
		// int64 and uint64 are not: a float64 at or above 2^63 rounds to a
		// value that int64 cannot hold.
		if unsigned && (f < 0 || f >= 18446744073709551616.0) ||
			!unsigned && (f < -9223372036854775808.0 || f >= 9223372036854775808.0) {
			return rangeErr()
		}
		if unsigned {
			uv = uint64(f)
		} else {
			iv = int64(f)
		}
	} else if unsigned {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange || strings.HasPrefix(s, "-") {
				return rangeErr()
			}
			return p.syntax("invalid number " + clipString(s))
		}
		uv = v
	} else {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return rangeErr()
			}
			return p.syntax("invalid number " + clipString(s))
		}
		iv = v
	}
	if unsigned {
		if uv > dt.uintMax() {
			return rangeErr()
		}
	} else if lo, hi := dt.intRange(); iv < lo || iv > hi {
		return rangeErr()
	}
	switch dt {
	case Int8:
		p.v.i8 = append(p.v.i8, int8(iv))
	case Int16:
		p.v.i16 = append(p.v.i16, int16(iv))
	case Int32:
		p.v.i32 = append(p.v.i32, int32(iv))
	case Int64:
		p.v.i64 = append(p.v.i64, iv)
	case Uint8:
		p.v.u8 = append(p.v.u8, uint8(uv))
	case Uint16:
		p.v.u16 = append(p.v.u16, uint16(uv))
	case Uint32:
		p.v.u32 = append(p.v.u32, uint32(uv))
	case Uint64:
		p.v.u64 = append(p.v.u64, uv)
	}
	return nil
}

func unquote(tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 && len(tok) >= 2 && tok[len(tok)-1] == '"' {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
}

// clip keeps error messages short when a client sends a huge token.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// clipString is clip for a token already held as a string.
func clipString(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
