package onnxbuild_test

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// These tests check the encoding: they decode what Marshal writes with the
// reader in wire_test.go and check each field against the numbers of
// onnx.proto, restated below.

// Field numbers from onnx.proto, restated here so the tests check the encoder against the
// spec rather than against its own constants.
const (
	fModelIR       = 1
	fModelProducer = 2
	fModelVersion  = 5
	fModelDoc      = 6
	fModelGraph    = 7
	fModelOpset    = 8
	fModelMeta     = 14

	fOpsetDomain  = 1
	fOpsetVersion = 2

	fGraphNode  = 1
	fGraphName  = 2
	fGraphInit  = 5
	fGraphIn    = 11
	fGraphOut   = 12
	fNodeIn     = 1
	fNodeOut    = 2
	fNodeName   = 3
	fNodeOp     = 4
	fNodeAttr   = 5
	fNodeDomain = 7

	fAttrName    = 1
	fAttrF       = 2
	fAttrI       = 3
	fAttrS       = 4
	fAttrT       = 5
	fAttrG       = 6
	fAttrFloats  = 7
	fAttrInts    = 8
	fAttrStrings = 9
	fAttrType    = 20

	fTensorDims    = 1
	fTensorType    = 2
	fTensorFloats  = 4
	fTensorInt32s  = 5
	fTensorStrings = 6
	fTensorInt64s  = 7
	fTensorName    = 8
	fTensorRaw     = 9
	fTensorDoubles = 10
	fTensorUint64s = 11

	fValueName = 1
	fValueType = 2

	fTypeTensor   = 1
	fTypeSequence = 4
	fTypeMap      = 5
	fTensorElem   = 1
	fTensorShape  = 2
	fShapeDim     = 1
	fDimValue     = 1
	fDimParam     = 2
	fSeqElem      = 1
	fMapKey       = 1
	fMapValue     = 2
)

func marshal(tb testing.TB, m *onnxbuild.Model) fields {
	tb.Helper()
	b, err := m.Marshal()
	if err != nil {
		tb.Fatalf("Marshal: %v", err)
	}
	return parse(tb, b)
}

// dims describes a TensorTypeProto's shape as written: "N" for a dim_param, digits for a
// dim_value, "?" for no shape at all.
func dims(tb testing.TB, tensorType fields) string {
	tb.Helper()
	if !tensorType.has(fTensorShape) {
		return "?"
	}
	var parts []string
	for _, d := range tensorType.msg(tb, fTensorShape).msgs(tb, fShapeDim) {
		if d.has(fDimParam) {
			parts = append(parts, d.str(fDimParam))
		} else {
			parts = append(parts, itoa(d.int(fDimValue)))
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// Ensure the model envelope carries IR 8, the sorted opsets, producer fields and metadata.
func TestMarshalModelFields(t *testing.T) {
	m := onnxbuild.Identity(onnxbuild.Float, []int64{-1, 3})
	m.Doc = "doc"
	m.ModelVersion = 7
	m.Metadata = map[string]string{"b": "2", "a": "1"}
	m.Opsets = map[string]int64{onnxbuild.MLDomain: 3}
	f := marshal(t, m)

	if got, want := f.int(fModelIR), int64(8); got != want {
		t.Errorf("ir_version = %d, want %d", got, want)
	}
	if got, want := f.str(fModelProducer), onnxbuild.Producer; got != want {
		t.Errorf("producer_name = %q, want %q", got, want)
	}
	if got, want := f.int(fModelVersion), int64(7); got != want {
		t.Errorf("model_version = %d, want %d", got, want)
	}
	if got, want := f.str(fModelDoc), "doc"; got != want {
		t.Errorf("doc_string = %q, want %q", got, want)
	}
	var opsets []string
	for _, o := range f.msgs(t, fModelOpset) {
		opsets = append(opsets, o.str(fOpsetDomain)+"="+itoa(o.int(fOpsetVersion)))
	}
	if got, want := opsets, []string{"=17", "ai.onnx.ml=3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("opset_import = %v, want %v", got, want)
	}
	var meta []string
	for _, e := range f.msgs(t, fModelMeta) {
		meta = append(meta, e.str(1)+"="+e.str(2))
	}
	if got, want := meta, []string{"a=1", "b=2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("metadata_props = %v, want %v", got, want)
	}

	g := f.msg(t, fModelGraph)
	if got, want := g.str(fGraphName), "identity_float32"; got != want {
		t.Errorf("graph name = %q, want %q", got, want)
	}
	nodes := g.msgs(t, fGraphNode)
	if len(nodes) != 1 {
		t.Fatalf("got %d nodes, want 1", len(nodes))
	}
	if got, want := nodes[0].str(fNodeOp), "Identity"; got != want {
		t.Errorf("op_type = %q, want %q", got, want)
	}
	if got, want := nodes[0].strs(fNodeIn), []string{"x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("node inputs = %v, want %v", got, want)
	}
	in := g.msgs(t, fGraphIn)
	if len(in) != 1 {
		t.Fatalf("got %d inputs, want 1", len(in))
	}
	if got, want := in[0].str(fValueName), "x"; got != want {
		t.Errorf("input name = %q, want %q", got, want)
	}
	tt := in[0].msg(t, fValueType).msg(t, fTypeTensor)
	if got, want := tt.int(fTensorElem), int64(onnxbuild.Float); got != want {
		t.Errorf("elem_type = %d, want %d", got, want)
	}
	if got, want := dims(t, tt), "[N,3]"; got != want {
		t.Errorf("input shape = %s, want %s", got, want)
	}
}

// Ensure every flavour of ValueInfo is written as the TypeProto ONNX Runtime expects.
func TestMarshalValueInfoTypes(t *testing.T) {
	tests := []struct {
		name string
		vi   onnxbuild.ValueInfo
		want string // shape as dims() prints it
	}{
		{"fixed", onnxbuild.ValueInfo{DType: onnxbuild.Int64, Dims: []int64{2, 3}}, "[2,3]"},
		{"dynamic batch", onnxbuild.ValueInfo{DType: onnxbuild.Float, Dims: []int64{-1, 4}}, "[N,4]"},
		{"two dynamic axes get distinct names", onnxbuild.ValueInfo{DType: onnxbuild.Float, Dims: []int64{-1, 2, -1}}, "[N,2,N2]"},
		{"zero-size dim", onnxbuild.ValueInfo{DType: onnxbuild.Float, Dims: []int64{0, 3}}, "[0,3]"},
		{"rank 0", onnxbuild.ValueInfo{DType: onnxbuild.Float, Scalar: true}, "[]"},
		{"unknown shape", onnxbuild.ValueInfo{DType: onnxbuild.String}, "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vi := tt.vi
			vi.Name = "x"
			m := &onnxbuild.Model{Graph: onnxbuild.Graph{
				Name:    "g",
				Nodes:   []onnxbuild.Node{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}},
				Inputs:  []onnxbuild.ValueInfo{vi},
				Outputs: []onnxbuild.ValueInfo{{Name: "y", DType: vi.DType}},
			}}
			g := marshal(t, m).msg(t, fModelGraph)
			tensor := g.msgs(t, fGraphIn)[0].msg(t, fValueType).msg(t, fTypeTensor)
			if got, want := tensor.int(fTensorElem), int64(vi.DType); got != want {
				t.Errorf("elem_type = %d, want %d", got, want)
			}
			if got := dims(t, tensor); got != tt.want {
				t.Errorf("shape = %s, want %s", got, tt.want)
			}
		})
	}
}

// Ensure ZipMap's output is typed sequence(map(int64, tensor(float))) under the ML opset.
func TestZipMapEncoding(t *testing.T) {
	f := marshal(t, onnxbuild.ZipMap())
	var domains []string
	for _, o := range f.msgs(t, fModelOpset) {
		domains = append(domains, o.str(fOpsetDomain)+"="+itoa(o.int(fOpsetVersion)))
	}
	if got, want := domains, []string{"=17", "ai.onnx.ml=3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("opsets = %v, want %v", got, want)
	}
	g := f.msg(t, fModelGraph)
	node := g.msgs(t, fGraphNode)[0]
	if got, want := node.str(fNodeDomain), "ai.onnx.ml"; got != want {
		t.Errorf("node domain = %q, want %q", got, want)
	}
	attr := node.msg(t, fNodeAttr)
	if got, want := attr.ints(t, fAttrInts), []int64{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("classlabels_int64s = %v, want %v", got, want)
	}
	typ := g.msgs(t, fGraphOut)[0].msg(t, fValueType)
	m := typ.msg(t, fTypeSequence).msg(t, fSeqElem).msg(t, fTypeMap)
	if got, want := m.int(fMapKey), int64(onnxbuild.Int64); got != want {
		t.Errorf("map key = %d, want %d", got, want)
	}
	value := m.msg(t, fMapValue).msg(t, fTypeTensor)
	if got, want := value.int(fTensorElem), int64(onnxbuild.Float); got != want {
		t.Errorf("map value elem = %d, want %d", got, want)
	}
	if value.has(fTensorShape) {
		t.Errorf("map value has a shape, want none")
	}
}

// Ensure each attribute kind lands in its own field with the matching type tag.
func TestMarshalAttrs(t *testing.T) {
	sub := onnxbuild.Graph{
		Name:    "body",
		Nodes:   []onnxbuild.Node{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"z"}}},
		Outputs: []onnxbuild.ValueInfo{{Name: "z", DType: onnxbuild.Float}},
	}
	attrs := []onnxbuild.Attr{
		onnxbuild.AttrFloat("f", 1.5),
		onnxbuild.AttrInt("i", -3),
		onnxbuild.AttrString("s", "hi"),
		onnxbuild.AttrTensor("t", onnxbuild.FloatTensor("", []int64{2}, []float32{1, 2})),
		onnxbuild.AttrGraph("g", sub),
		onnxbuild.AttrFloats("fs", 0.5, -1),
		onnxbuild.AttrInts("is", 1, -2, 3),
		onnxbuild.AttrStrings("ss", "a", "", "c"),
	}
	m := &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name:    "g",
		Nodes:   []onnxbuild.Node{{OpType: "Custom", Domain: "test", Inputs: []string{"x", ""}, Outputs: []string{"y"}, Attrs: attrs}},
		Inputs:  []onnxbuild.ValueInfo{{Name: "x", DType: onnxbuild.Float, Dims: []int64{1}}},
		Outputs: []onnxbuild.ValueInfo{{Name: "y", DType: onnxbuild.Float}},
	}}
	node := marshal(t, m).msg(t, fModelGraph).msgs(t, fGraphNode)[0]
	if got, want := node.strs(fNodeIn), []string{"x", ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("inputs = %q, want %q (an empty name skips an optional input)", got, want)
	}
	got := node.msgs(t, fNodeAttr)
	if len(got) != len(attrs) {
		t.Fatalf("got %d attributes, want %d", len(got), len(attrs))
	}
	for i, a := range got {
		if got, want := a.str(fAttrName), attrs[i].Name; got != want {
			t.Errorf("attr %d name = %q, want %q", i, got, want)
		}
		if got, want := a.int(fAttrType), int64(attrs[i].Type); got != want {
			t.Errorf("attr %q type = %d, want %d", attrs[i].Name, got, want)
		}
	}
	if got, want := got[0].floats(t, fAttrF), []float32{1.5}; !reflect.DeepEqual(got, want) {
		t.Errorf("f = %v, want %v", got, want)
	}
	if got, want := got[1].int(fAttrI), int64(-3); got != want {
		t.Errorf("i = %d, want %d", got, want)
	}
	if got, want := got[2].str(fAttrS), "hi"; got != want {
		t.Errorf("s = %q, want %q", got, want)
	}
	if got, want := got[3].msg(t, fAttrT).floats(t, fTensorFloats), []float32{1, 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("t = %v, want %v", got, want)
	}
	if got, want := got[4].msg(t, fAttrG).str(fGraphName), "body"; got != want {
		t.Errorf("g name = %q, want %q", got, want)
	}
	if got, want := got[5].floats(t, fAttrFloats), []float32{0.5, -1}; !reflect.DeepEqual(got, want) {
		t.Errorf("floats = %v, want %v", got, want)
	}
	if got, want := got[6].ints(t, fAttrInts), []int64{1, -2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("ints = %v, want %v", got, want)
	}
	if got, want := got[7].strs(fAttrStrings), []string{"a", "", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("strings = %q, want %q", got, want)
	}
}

// Ensure each tensor data field is encoded where onnx.proto puts it, with negative int32
// values surviving the sign extension.
func TestMarshalTensors(t *testing.T) {
	tests := []struct {
		name   string
		tensor onnxbuild.Tensor
		check  func(t *testing.T, f fields)
	}{
		{"floats", onnxbuild.FloatTensor("t", []int64{2}, []float32{1, -2}), func(t *testing.T, f fields) {
			if got, want := f.floats(t, fTensorFloats), []float32{1, -2}; !reflect.DeepEqual(got, want) {
				t.Errorf("float_data = %v, want %v", got, want)
			}
		}},
		{"int64s scalar", onnxbuild.Int64Tensor("t", nil, []int64{-5}), func(t *testing.T, f fields) {
			if f.has(fTensorDims) {
				t.Errorf("rank-0 tensor has dims")
			}
			if got, want := f.ints(t, fTensorInt64s), []int64{-5}; !reflect.DeepEqual(got, want) {
				t.Errorf("int64_data = %v, want %v", got, want)
			}
		}},
		{"int32s", onnxbuild.Tensor{Name: "t", DType: onnxbuild.Int8, Dims: []int64{3}, Int32s: []int32{-128, 0, 127}}, func(t *testing.T, f fields) {
			var got []int32
			for _, v := range f.ints(t, fTensorInt32s) {
				got = append(got, int32(v))
			}
			if want := []int32{-128, 0, 127}; !reflect.DeepEqual(got, want) {
				t.Errorf("int32_data = %v, want %v", got, want)
			}
		}},
		{"strings", onnxbuild.Tensor{Name: "t", DType: onnxbuild.String, Dims: []int64{2}, Strings: []string{"", "b"}}, func(t *testing.T, f fields) {
			if got, want := f.strs(fTensorStrings), []string{"", "b"}; !reflect.DeepEqual(got, want) {
				t.Errorf("string_data = %q, want %q", got, want)
			}
		}},
		{"doubles", onnxbuild.Tensor{Name: "t", DType: onnxbuild.Double, Dims: []int64{1}, Doubles: []float64{math.Pi}}, func(t *testing.T, f fields) {
			b := f.all(fTensorDoubles)[0].b
			if got, want := math.Float64frombits(leUint64(b)), math.Pi; got != want {
				t.Errorf("double_data = %v, want %v", got, want)
			}
		}},
		{"uint64s", onnxbuild.Tensor{Name: "t", DType: onnxbuild.Uint64, Dims: []int64{1}, Uint64s: []uint64{math.MaxUint64}}, func(t *testing.T, f fields) {
			if got, want := uint64(f.ints(t, fTensorUint64s)[0]), uint64(math.MaxUint64); got != want {
				t.Errorf("uint64_data = %d, want %d", got, want)
			}
		}},
		{"raw", onnxbuild.Tensor{Name: "t", DType: onnxbuild.Float16, Dims: []int64{2}, Raw: []byte{0, 0x3c, 0, 0xc0}}, func(t *testing.T, f fields) {
			if got, want := f.all(fTensorRaw)[0].b, []byte{0, 0x3c, 0, 0xc0}; !bytes.Equal(got, want) {
				t.Errorf("raw_data = %v, want %v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := onnxbuild.Identity(tt.tensor.DType, []int64{-1})
			m.Graph.Initializers = []onnxbuild.Tensor{tt.tensor}
			f := marshal(t, m).msg(t, fModelGraph).msg(t, fGraphInit)
			if got, want := f.str(fTensorName), "t"; got != want {
				t.Errorf("name = %q, want %q", got, want)
			}
			if got, want := f.int(fTensorType), int64(tt.tensor.DType); got != want {
				t.Errorf("data_type = %d, want %d", got, want)
			}
			if got, want := f.ints(t, fTensorDims), tt.tensor.Dims; len(tt.tensor.Dims) > 0 && !reflect.DeepEqual(got, want) {
				t.Errorf("dims = %v, want %v", got, want)
			}
			tt.check(t, f)
		})
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
