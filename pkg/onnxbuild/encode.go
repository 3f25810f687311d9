package onnxbuild

import (
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers from onnx.proto (checked against onnx 1.12's onnx-ml.proto).
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDomain          = 4
	modelModelVersion    = 5
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14

	opsetDomain  = 1
	opsetVersion = 2

	entryKey   = 1
	entryValue = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphDocString   = 10
	graphInput       = 11
	graphOutput      = 12
	graphValueInfo   = 13

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName    = 1
	attrF       = 2
	attrI       = 3
	attrS       = 4
	attrT       = 5
	attrG       = 6
	attrFloats  = 7
	attrInts    = 8
	attrStrings = 9
	attrType    = 20

	tensorDims       = 1
	tensorDataType   = 2
	tensorFloatData  = 4
	tensorInt32Data  = 5
	tensorStringData = 6
	tensorInt64Data  = 7
	tensorName       = 8
	tensorRawData    = 9
	tensorDoubleData = 10
	tensorUint64Data = 11

	valueInfoName = 1
	valueInfoType = 2

	typeTensor   = 1
	typeSequence = 4
	typeMap      = 5

	tensorTypeElemType = 1
	tensorTypeShape    = 2

	sequenceElemType = 1

	mapKeyType   = 1
	mapValueType = 2

	shapeDim = 1

	dimValue = 1
	dimParam = 2
)

func (m *Model) encode() []byte {
	var b []byte
	ir := m.IRVersion
	if ir == 0 {
		ir = DefaultIRVersion
	}
	b = appendVarint(b, modelIRVersion, uint64(ir))
	b = appendString(b, modelProducerName, m.ProducerName)
	b = appendString(b, modelProducerVersion, m.ProducerVersion)
	b = appendString(b, modelDomain, m.Domain)
	if m.ModelVersion != 0 {
		b = appendVarint(b, modelModelVersion, uint64(m.ModelVersion))
	}
	b = appendString(b, modelDocString, m.Doc)
	b = appendMessage(b, modelGraph, encodeGraph(&m.Graph))

	opsets := map[string]int64{"": DefaultOpset}
	for domain, v := range m.Opsets {
		opsets[domain] = v
	}
	for _, domain := range slices.Sorted(maps.Keys(opsets)) {
		var o []byte
		// The default domain is written as an explicit empty string, as onnx's own helpers do.
		o = protowire.AppendTag(o, opsetDomain, protowire.BytesType)
		o = protowire.AppendString(o, domain)
		o = appendVarint(o, opsetVersion, uint64(opsets[domain]))
		b = appendMessage(b, modelOpsetImport, o)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Metadata)) {
		var e []byte
		e = appendString(e, entryKey, k)
		e = appendString(e, entryValue, m.Metadata[k])
		b = appendMessage(b, modelMetadataProps, e)
	}
	return b
}

func encodeGraph(g *Graph) []byte {
	var b []byte
	for i := range g.Nodes {
		b = appendMessage(b, graphNode, encodeNode(&g.Nodes[i]))
	}
	b = appendString(b, graphName, g.Name)
	for i := range g.Initializers {
		b = appendMessage(b, graphInitializer, encodeTensor(&g.Initializers[i]))
	}
	b = appendString(b, graphDocString, g.Doc)
	for i := range g.Inputs {
		b = appendMessage(b, graphInput, encodeValueInfo(&g.Inputs[i]))
	}
	for i := range g.Outputs {
		b = appendMessage(b, graphOutput, encodeValueInfo(&g.Outputs[i]))
	}
	for i := range g.ValueInfo {
		b = appendMessage(b, graphValueInfo, encodeValueInfo(&g.ValueInfo[i]))
	}
	return b
}

func encodeNode(n *Node) []byte {
	var b []byte
	// Empty names stay in place: an empty input is how ONNX skips an optional input.
	for _, in := range n.Inputs {
		b = appendRepeatedString(b, nodeInput, in)
	}
	for _, out := range n.Outputs {
		b = appendRepeatedString(b, nodeOutput, out)
	}
	b = appendString(b, nodeName, n.Name)
	b = appendString(b, nodeOpType, n.OpType)
	for i := range n.Attrs {
		b = appendMessage(b, nodeAttribute, encodeAttr(&n.Attrs[i]))
	}
	b = appendString(b, nodeDomain, n.Domain)
	return b
}

func encodeAttr(a *Attr) []byte {
	var b []byte
	b = appendString(b, attrName, a.Name)
	switch a.Type {
	case AttrTypeFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.Float))
	case AttrTypeInt:
		b = protowire.AppendTag(b, attrI, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.Int))
	case AttrTypeString:
		b = appendRepeatedString(b, attrS, a.Str)
	case AttrTypeTensor:
		b = appendMessage(b, attrT, encodeTensor(a.Tensor))
	case AttrTypeGraph:
		b = appendMessage(b, attrG, encodeGraph(a.Graph))
	case AttrTypeFloats:
		// AttributeProto's repeated fields are not declared packed, so they are written one
		// tag per element like the reference serializer does.
		for _, f := range a.Floats {
			b = protowire.AppendTag(b, attrFloats, protowire.Fixed32Type)
			b = protowire.AppendFixed32(b, math.Float32bits(f))
		}
	case AttrTypeInts:
		for _, v := range a.Ints {
			b = protowire.AppendTag(b, attrInts, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	case AttrTypeStrings:
		for _, s := range a.Strings {
			b = appendRepeatedString(b, attrStrings, s)
		}
	}
	b = protowire.AppendTag(b, attrType, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(a.Type))
	return b
}

func encodeTensor(t *Tensor) []byte {
	var b []byte
	for _, d := range t.Dims {
		b = protowire.AppendTag(b, tensorDims, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, tensorDataType, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t.DType))
	switch {
	case len(t.Floats) > 0:
		p := make([]byte, 0, 4*len(t.Floats))
		for _, f := range t.Floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = appendMessage(b, tensorFloatData, p)
	case len(t.Int32s) > 0:
		var p []byte
		for _, v := range t.Int32s {
			// int32 is sign-extended to 64 bits on the wire, per the protobuf spec.
			p = protowire.AppendVarint(p, uint64(int64(v)))
		}
		b = appendMessage(b, tensorInt32Data, p)
	case len(t.Strings) > 0:
		for _, s := range t.Strings {
			b = appendRepeatedString(b, tensorStringData, s)
		}
	case len(t.Int64s) > 0:
		var p []byte
		for _, v := range t.Int64s {
			p = protowire.AppendVarint(p, uint64(v))
		}
		b = appendMessage(b, tensorInt64Data, p)
	}
	b = appendString(b, tensorName, t.Name)
	switch {
	case len(t.Raw) > 0:
		b = protowire.AppendTag(b, tensorRawData, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Raw)
	case len(t.Doubles) > 0:
		p := make([]byte, 0, 8*len(t.Doubles))
		for _, f := range t.Doubles {
			p = protowire.AppendFixed64(p, math.Float64bits(f))
		}
		b = appendMessage(b, tensorDoubleData, p)
	case len(t.Uint64s) > 0:
		var p []byte
		for _, v := range t.Uint64s {
			p = protowire.AppendVarint(p, v)
		}
		b = appendMessage(b, tensorUint64Data, p)
	}
	return b
}

func encodeValueInfo(v *ValueInfo) []byte {
	var b []byte
	b = appendString(b, valueInfoName, v.Name)
	b = appendMessage(b, valueInfoType, encodeType(v))
	return b
}

func encodeType(v *ValueInfo) []byte {
	var tensor []byte
	tensor = appendVarint(tensor, tensorTypeElemType, uint64(v.DType))
	// Map values carry no shape: ONNX-ML's map(int64, tensor(float)) is a map of scalars.
	if v.MapKey == 0 && (v.Scalar || v.Dims != nil) {
		var shape []byte
		for i, d := range v.Dims {
			var dim []byte
			if d < 0 {
				dim = appendString(dim, dimParam, DimParam(i))
			} else {
				dim = protowire.AppendTag(dim, dimValue, protowire.VarintType)
				dim = protowire.AppendVarint(dim, uint64(d))
			}
			shape = appendMessage(shape, shapeDim, dim)
		}
		// A present but empty shape is how ONNX says rank 0.
		tensor = appendMessage(tensor, tensorTypeShape, shape)
	}
	var t []byte
	t = appendMessage(t, typeTensor, tensor)
	if v.MapKey != 0 {
		var m []byte
		m = appendVarint(m, mapKeyType, uint64(v.MapKey))
		m = appendMessage(m, mapValueType, t)
		t = appendMessage(nil, typeMap, m)
	}
	if v.Sequence {
		var s []byte
		s = appendMessage(s, sequenceElemType, t)
		t = appendMessage(nil, typeSequence, s)
	}
	return t
}

// appendString writes an optional string field, leaving it out when empty as proto2 would
// for an unset field.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendRepeatedString(b, num, s)
}

func appendRepeatedString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage writes an embedded message or packed field even when empty, because presence
// can matter (an empty shape means rank 0).
func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}
