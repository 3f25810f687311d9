package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unsafe"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// EncodeTensors encodes a tensor map as JSON, the form consumers see and
// the one stored before migration 00004 (backends now store the binary form
// of AppendStoredTensors): {"name": {"dtype": "float32", "shape": [..], "data": [..]}}, with
// data as a nested array written by understudy.AppendJSON. Names are sorted,
// so equal maps encode to equal bytes and hash alike. A tensor whose data does
// not match its shape is written with "data": null rather than panicking.
func EncodeTensors(m map[string]*understudy.Tensor) []byte {
	// Size the buffer once: a float takes about 12 bytes, the framing 64.
	n := 2
	for name, t := range m {
		n += len(name) + 64
		if t != nil && consistent(t) {
			n += 12 * t.Len()
		}
	}
	return appendTensors(make([]byte, 0, n), m)
}

func appendTensors(b []byte, m map[string]*understudy.Tensor) []byte {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	b = append(b, '{')
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = understudy.AppendJSONString(b, n)
		b = append(b, ':')
		t := m[n]
		if t == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, `{"dtype":`...)
		b = understudy.AppendJSONString(b, t.DType.String())
		b = append(b, `,"shape":[`...)
		for k, d := range t.Shape {
			if k > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data":`...)
		if consistent(t) {
			b = understudy.AppendJSON(b, t)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// consistent reports whether AppendJSON can walk t without indexing past its
// data: the store must never crash the server over a malformed tensor.
func consistent(t *understudy.Tensor) bool {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return false
		}
		n *= d
	}
	var l int
	switch d := t.Data.(type) {
	case []float32:
		l = len(d)
	case []float64:
		l = len(d)
	case []uint16:
		l = len(d)
	case []int8:
		l = len(d)
	case []int16:
		l = len(d)
	case []int32:
		l = len(d)
	case []int64:
		l = len(d)
	case []uint8:
		l = len(d)
	case []uint32:
		l = len(d)
	case []uint64:
		l = len(d)
	case []bool:
		l = len(d)
	case []string:
		l = len(d)
	default:
		return false
	}
	return int64(l) == n
}

// DecodeTensors decodes a stored tensor map in either form: the binary one
// of AppendStoredTensors, or the JSON of EncodeTensors that rows stored
// before migration 00004 hold. NaN and infinities, written in JSON as
// strings, decode back to floats; a tensor stored without its data decodes
// with nil Data.
func DecodeTensors(raw []byte) (map[string]*understudy.Tensor, error) {
	if IsStoredBinary(raw) {
		return decodeStored(raw)
	}
	var stored map[string]*struct {
		DType understudy.DType `json:"dtype"`
		Shape []int64          `json:"shape"`
		Data  json.RawMessage  `json:"data"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("decode tensors: %w", err)
	}
	out := make(map[string]*understudy.Tensor, len(stored))
	for name, s := range stored {
		if s == nil {
			out[name] = nil
			continue
		}
		if s.Shape == nil {
			s.Shape = []int64{}
		}
		t, err := decodeTensor(name, s.DType, s.Shape, s.Data)
		if err != nil {
			return nil, fmt.Errorf("decode tensor %q: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func decodeTensor(name string, dt understudy.DType, shape []int64, data json.RawMessage) (*understudy.Tensor, error) {
	if len(data) == 0 || string(data) == "null" {
		return &understudy.Tensor{DType: dt, Shape: shape}, nil
	}
	empty := false
	for _, d := range shape {
		empty = empty || d == 0
	}
	if empty {
		// A nested array cannot carry the dimensions after a zero one, and
		// DecodeTensor refuses empty inputs; the stored shape says it all.
		return understudy.NewTensor(dt, shape)
	}
	if dt.IsFloat() && bytes.IndexByte(data, '"') >= 0 {
		return decodeSpecialFloats(dt, shape, data)
	}
	return understudy.DecodeTensor(data, understudy.TensorInfo{Name: name, DType: dt, Dims: shape})
}

// decodeSpecialFloats decodes a float tensor holding the strings "NaN",
// "Infinity" or "-Infinity", which DecodeTensor refuses in client input.
func decodeSpecialFloats(dt understudy.DType, shape []int64, data []byte) (*understudy.Tensor, error) {
	t, err := understudy.NewTensor(dt, shape)
	if err != nil {
		return nil, err
	}
	bits := 32
	if dt == understudy.Float64 {
		bits = 64
	}
	i := 0
	for _, tok := range bytes.FieldsFunc(data, func(r rune) bool {
		return r == '[' || r == ']' || r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r'
	}) {
		var f float64
		switch string(tok) {
		case `"NaN"`:
			f = math.NaN()
		case `"Infinity"`:
			f = math.Inf(1)
		case `"-Infinity"`:
			f = math.Inf(-1)
		default:
			if f, err = strconv.ParseFloat(string(tok), bits); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		if i >= t.Len() {
			return nil, fmt.Errorf("more elements than shape %s holds", understudy.FormatShape(shape))
		}
		switch d := t.Data.(type) {
		case []float32:
			d[i] = float32(f)
		case []float64:
			d[i] = f
		case []uint16:
			d[i] = understudy.Float32ToHalf(float32(f))
		}
		i++
	}
	if i != t.Len() {
		return nil, fmt.Errorf("%d elements, shape %s holds %d", i, understudy.FormatShape(shape), t.Len())
	}
	return t, nil
}

// MarshalComparison encodes c as the JSON stored with a shadow result.
// JSON has no NaN or infinity, so a comparison holding one is written with
// those fields left out; a backend's numeric columns still hold them.
func MarshalComparison(c *understudy.Comparison) []byte {
	if b, err := json.Marshal(c); err == nil {
		return b
	}
	finite := func(f *float64) *float64 {
		if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
			return nil
		}
		return f
	}
	cc := *c
	cc.Agreement, cc.MaxAbsDiff, cc.MeanAbsDiff = finite(c.Agreement), finite(c.MaxAbsDiff), finite(c.MeanAbsDiff)
	cc.Outputs = slices.Clone(c.Outputs)
	for i := range cc.Outputs {
		o := &cc.Outputs[i]
		o.MaxAbsDiff, o.MeanAbsDiff = finite(o.MaxAbsDiff), finite(o.MeanAbsDiff)
	}
	b, err := json.Marshal(&cc)
	if err != nil {
		return []byte("null")
	}
	return b
}

// HeadlineOutputs returns the names of the first class output and the first
// float output of c: the outputs its Agreement, classes and differences
// come from.
func HeadlineOutputs(c *understudy.Comparison) (class, float string) {
	for _, o := range c.Outputs {
		if class == "" && o.Kind == understudy.KindClass && o.Rows > 0 {
			class = o.Name
		}
		if float == "" && o.MaxAbsDiff != nil {
			float = o.Name
		}
	}
	return class, float
}

// The stored form of a tensor map, since migration 00004, is binary. It is
// what AppendStoredTensors writes, what backends keep in their inputs and
// outputs columns, and what DecodeTensors and TensorsJSON read, together
// with the JSON form of EncodeTensors that older rows hold. The first byte
// tells them apart: JSON text starts with '{' (or "null"), the binary form
// with StoredTensorsV1, which is never the first byte of UTF-8 text.
//
// Layout, version 1 (all integers are unsigned LEB128 varints, "uvarint",
// unless said otherwise; dimensions are zigzag varints, as Go's
// binary.AppendVarint writes them):
//
//	byte     0xB1: StoredTensorsV1, the format and its version
//	uvarint  number of tensors, then each tensor, names in ascending byte order:
//	  uvarint  name length, then the name's UTF-8 bytes
//	  byte     element type, ONNX's TensorProto number as understudy.DType
//	           (1 float32, 2 uint8, 3 int8, 4 uint16, 5 int16, 6 int32,
//	           7 int64, 8 string, 9 bool, 10 float16, 11 float64, 12 uint32,
//	           13 uint64); 0 for a nil tensor, which ends the tensor here
//	  byte     flags: bit 0 set when the data follows; clear when the data
//	           did not match the shape and was not stored (JSON "data": null)
//	  uvarint  rank, then rank dimensions as zigzag varints
//	  data     the elements in row-major order, as many as the shape holds:
//	           little-endian, 1 byte each for int8, uint8 and bool (0 or 1),
//	           2 for int16, uint16 and float16 (IEEE half bits), 4 for
//	           int32, uint32 and float32, 8 for int64, uint64 and float64;
//	           each string element is a uvarint byte length and its bytes
//
// Floats keep their exact bits, NaN payloads and infinities included. The
// JSON form (EncodeTensors) is still what consumers see: the store contract's
// records carry tensors as JSON, and backends convert with TensorsJSON. The
// hash and size of inputs kept over the input cap are those of the JSON form.
const StoredTensorsV1 byte = 0xB1

// IsStoredBinary reports whether raw is in the binary stored form rather
// than the JSON of older rows.
func IsStoredBinary(raw []byte) bool { return len(raw) > 0 && raw[0] == StoredTensorsV1 }

// littleEndian is whether this machine stores numbers as the format does,
// so that their bytes can be copied as they are.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// StoredTensorsSize returns an upper bound of the bytes AppendStoredTensors
// adds for m, for sizing a buffer.
func StoredTensorsSize(m map[string]*understudy.Tensor) int {
	n := 1 + binary.MaxVarintLen64
	for name, t := range m {
		n += 2*binary.MaxVarintLen64 + len(name) + 2
		if t == nil {
			continue
		}
		n += binary.MaxVarintLen64 * len(t.Shape)
		if s, ok := t.Data.([]string); ok {
			for _, e := range s {
				n += binary.MaxVarintLen64 + len(e)
			}
			continue
		}
		n += 8 * lenOf(t.Data)
	}
	return n
}

// EncodeStoredTensors returns the binary stored form of m.
func EncodeStoredTensors(m map[string]*understudy.Tensor) []byte {
	return AppendStoredTensors(make([]byte, 0, StoredTensorsSize(m)), m)
}

// AppendStoredTensors appends the binary stored form of m to b (see
// StoredTensorsV1 for the layout). Like EncodeTensors it never panics: a
// tensor whose data does not match its shape is stored without its data.
func AppendStoredTensors(b []byte, m map[string]*understudy.Tensor) []byte {
	b = append(b, StoredTensorsV1)
	b = binary.AppendUvarint(b, uint64(len(m)))
	var one [1]string
	names := one[:0]
	if len(m) > 1 {
		names = make([]string, 0, len(m))
	}
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		t := m[name]
		if t == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, byte(t.DType))
		ok := consistent(t) && dataMatches(t)
		if ok {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.AppendVarint(b, d)
		}
		if ok {
			b = appendData(b, t.Data)
		}
	}
	return b
}

// dataMatches reports whether t's Go data type is the one its DType
// stores, so that the elements are written at the size the reader expects.
func dataMatches(t *understudy.Tensor) bool {
	var ok bool
	switch t.Data.(type) {
	case []float32:
		ok = t.DType == understudy.Float32
	case []float64:
		ok = t.DType == understudy.Float64
	case []uint16:
		ok = t.DType == understudy.Uint16 || t.DType == understudy.Float16
	case []int8:
		ok = t.DType == understudy.Int8
	case []int16:
		ok = t.DType == understudy.Int16
	case []int32:
		ok = t.DType == understudy.Int32
	case []int64:
		ok = t.DType == understudy.Int64
	case []uint8:
		ok = t.DType == understudy.Uint8
	case []uint32:
		ok = t.DType == understudy.Uint32
	case []uint64:
		ok = t.DType == understudy.Uint64
	case []bool:
		ok = t.DType == understudy.Bool
	case []string:
		ok = t.DType == understudy.String
	}
	return ok
}

func appendData(b []byte, data any) []byte {
	switch d := data.(type) {
	case []float32:
		return appendLE(b, d)
	case []float64:
		return appendLE(b, d)
	case []uint16:
		return appendLE(b, d)
	case []int8:
		return appendLE(b, d)
	case []int16:
		return appendLE(b, d)
	case []int32:
		return appendLE(b, d)
	case []int64:
		return appendLE(b, d)
	case []uint8:
		return append(b, d...)
	case []uint32:
		return appendLE(b, d)
	case []uint64:
		return appendLE(b, d)
	case []bool:
		for _, v := range d {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
		return b
	case []string:
		for _, s := range d {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		return b
	}
	return b
}

type fixed interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// appendLE appends d's elements little-endian.
func appendLE[T fixed](b []byte, d []T) []byte {
	if len(d) == 0 {
		return b
	}
	size := int(unsafe.Sizeof(d[0]))
	if littleEndian {
		return append(b, unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*size)...)
	}
	for _, v := range d {
		switch size {
		case 1:
			b = append(b, byte(v))
		case 2:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.LittleEndian.AppendUint32(b, bitsOf32(v))
		default:
			b = binary.LittleEndian.AppendUint64(b, bitsOf64(v))
		}
	}
	return b
}

func bitsOf32[T fixed](v T) uint32 { return *(*uint32)(unsafe.Pointer(&v)) }
func bitsOf64[T fixed](v T) uint64 { return *(*uint64)(unsafe.Pointer(&v)) }

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

func lenOf(data any) int {
	switch d := data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []uint16:
		return len(d)
	case []int8:
		return len(d)
	case []int16:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []uint8:
		return len(d)
	case []uint32:
		return len(d)
	case []uint64:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return -1
}

// elemSize is the bytes of one element of dt in the binary form; 0 for
// strings, whose elements carry their own length.
func elemSize(dt understudy.DType) int {
	switch dt {
	case understudy.Int8, understudy.Uint8, understudy.Bool:
		return 1
	case understudy.Int16, understudy.Uint16, understudy.Float16:
		return 2
	case understudy.Int32, understudy.Uint32, understudy.Float32:
		return 4
	case understudy.Int64, understudy.Uint64, understudy.Float64:
		return 8
	}
	return 0
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
		if size := elemSize(dt); size > 0 {
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

// TensorsJSON returns a stored tensor map, in either stored form, as the
// JSON of EncodeTensors: what the store contract's records carry. JSON rows
// come back as they are, without a copy.
func TensorsJSON(raw []byte) ([]byte, error) {
	if !IsStoredBinary(raw) {
		return raw, nil
	}
	m, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	return EncodeTensors(m), nil
}

// StoredInputs turns a prediction's stored inputs columns into the store
// contract's fields (StoredPrediction's Inputs, InputsSHA256, InputsSize):
// the inputs as JSON, and the sha256 and size of that JSON. Since 00004 a
// backend stores inputs within the cap in the binary form with an empty
// hash, and the hash and size are computed here, on read, from the stored
// copy; older rows and rows over the cap keep theirs. raw is nil when the
// inputs were not stored.
func StoredInputs(raw []byte, sha256Hex string, size int) (inputs, sum string, n int, err error) {
	if raw == nil {
		return "", sha256Hex, size, nil
	}
	j, err := TensorsJSON(raw)
	if err != nil {
		return "", sha256Hex, size, err
	}
	if sha256Hex == "" || IsStoredBinary(raw) {
		sha256Hex, size = InputsDigest(j), len(j)
	}
	return string(j), sha256Hex, size, nil
}

// InputsDigest is the hex sha256 of a tensor map's JSON form, the
// inputs_sha256 of the store contract.
func InputsDigest(json []byte) string {
	sum := sha256.Sum256(json)
	return hex.EncodeToString(sum[:])
}
