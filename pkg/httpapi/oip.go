package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/understudy-ml/understudy/pkg/oip"
	"github.com/understudy-ml/understudy/pkg/serving"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file serves the Open Inference Protocol v2 over REST, as KServe's
// spec and Triton define it: health, server and model metadata, and infer,
// with Triton's binary tensor data extension. Decoding and checking the
// tensors is package oip's; this file only reads and writes HTTP.

// binaryHeader carries the length of the JSON part of a body that has
// binary tensor data after it.
const binaryHeader = "Inference-Header-Content-Length"

// Version is the server's version in GET /v2; cmd sets it at start.
var Version = "dev"

func (s *Server) oipRoutes(r chi.Router) {
	r.Get("/v2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, oip.ServerMetadata{Name: oip.ServerName, Version: Version, Extensions: oip.Extensions})
	})
	r.Get("/v2/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]bool{"live": true})
	})
	r.Get("/v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		if s.Ready == nil || !s.Ready() {
			s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "not ready: no primary model is loaded; add a .onnx file to the models directory"))
			return
		}
		writeJSON(w, map[string]bool{"ready": true})
	})
	for _, base := range []string{"/v2/models/{name}", "/v2/models/{name}/versions/{version}"} {
		r.Get(base, s.handleModelMetadata)
		r.Get(base+"/ready", s.handleModelReady)
		r.Post(base+"/infer", s.handleInfer)
	}
}

// modelParams returns the model name and version of the path, unescaped.
func modelParams(r *http.Request) (name, version string, err error) {
	name, err = url.PathUnescape(chi.URLParam(r, "name"))
	if err == nil {
		version, err = url.PathUnescape(chi.URLParam(r, "version"))
	}
	if err != nil {
		return "", "", understudy.Errorf(understudy.EINVALID, "malformed model name or version in the path: %v", err)
	}
	if name == "" {
		return "", "", understudy.Errorf(understudy.EINVALID, "the model name in the path is empty; want /v2/models/<name>/...")
	}
	return name, version, nil
}

func (s *Server) handleModelMetadata(w http.ResponseWriter, r *http.Request) {
	name, version, err := modelParams(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	md, err := oip.Describe(s.Models.List(), name, version)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, md)
}

func (s *Server) handleModelReady(w http.ResponseWriter, r *http.Request) {
	name, version, err := modelParams(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	ready, err := oip.Ready(s.Models.List(), name, version)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !ready {
		s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "model %q is loaded as a shadow, not as the primary: it gets copies of the primary's traffic but does not answer inference requests", name))
		return
	}
	writeJSON(w, map[string]any{"name": name, "ready": true})
}

const inferShape = `{"id": "<optional>", "inputs": [{"name": "<input>", "datatype": "FP32", "shape": [1, 4], "data": [...]}], "outputs": [{"name": "<optional>"}]}`

// inferRequest is the JSON of an infer request. Parameters are free-form
// in the protocol; the ones the server acts on are read by name.
type inferRequest struct {
	ID         string         `json:"id"`
	Parameters map[string]any `json:"parameters"`
	Inputs     []inferInput   `json:"inputs"`
	Outputs    []inferOutput  `json:"outputs"`
}

type inferInput struct {
	Name       string          `json:"name"`
	Shape      *[]int64        `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters"`
	Data       json.RawMessage `json:"data"`
}

type inferOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
}

func (s *Server) handleInfer(w http.ResponseWriter, r *http.Request) {
	flight := s.Serving.Begin()
	defer flight.End()
	received := s.Now()
	name, version, err := modelParams(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	header, binary, err := splitBinary(r, body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var req inferRequest
	if err := decodeJSON(header, &req, inferShape); err != nil {
		s.error(w, r, err)
		return
	}
	id, ok := s.bodyID(w, r, req.ID, RequestID(r), `"id"`)
	if !ok {
		return
	}
	inputs, err := oipInputs(req.Inputs, binary)
	if err != nil {
		s.error(w, r, err)
		return
	}
	outs, err := outputRequests(&req)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var names []string
	ans, err := s.Serving.Infer(r.Context(), serving.Call{ID: id, Model: name, Version: version, Received: received, BodySize: len(body), Flight: flight,
		Key: headerValue(r.Header, keyHeader),
		Decode: func(sig *understudy.Signature) (map[string]*understudy.Tensor, error) {
			var err error
			if names, err = oip.OutputNames(outs.names, sig); err != nil {
				return nil, err
			}
			return oip.DecodeInputs(inputs, sig)
		}})
	if err != nil {
		s.inferError(w, r, id, err)
		return
	}
	buf, bin := encodeInfer(&ans, id, oip.Present(names, ans.Outputs), outs)
	h := w.Header()
	if bin != nil {
		h[binaryHeader] = []string{strconv.Itoa(len(buf))}
		h["Content-Type"] = octetContentType
		buf = append(buf, bin...)
	} else {
		h["Content-Type"] = jsonContentType
	}
	h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	h[modelHeader] = s.modelHeaderValue(ans.Model)
	_, _ = w.Write(buf)
}

// splitBinary separates the JSON header of a body from the binary tensor
// data after it, as Inference-Header-Content-Length says.
func splitBinary(r *http.Request, body []byte) (header, binary []byte, err error) {
	v := r.Header.Get(binaryHeader)
	if v == "" {
		return body, nil, nil
	}
	n, perr := strconv.Atoi(v)
	if perr != nil || n <= 0 || n > len(body) {
		return nil, nil, understudy.Errorf(understudy.EINVALID, "%s is %q, but the body is %d bytes; want the length of the JSON part, from 1 to the body's length", binaryHeader, v, len(body))
	}
	return body[:n], body[n:], nil
}

// oipInputs turns the request's inputs into the protocol's form, handing
// out the binary data in order to the inputs that claim it.
func oipInputs(in []inferInput, binary []byte) ([]oip.Input, error) {
	out := make([]oip.Input, len(in))
	for i := range in {
		x := &in[i]
		if x.Name == "" {
			return nil, understudy.Errorf(understudy.EINVALID, `inputs[%d] has no "name"`, i)
		}
		if x.Shape == nil {
			return nil, understudy.Errorf(understudy.EINVALID, `input %q has no "shape"; want the tensor's dimensions, e.g. [1, 4]`, x.Name)
		}
		if x.Datatype == "" {
			return nil, understudy.Errorf(understudy.EINVALID, `input %q has no "datatype"; want one such as FP32 or INT64`, x.Name)
		}
		o := oip.Input{Name: x.Name, Datatype: x.Datatype, Shape: *x.Shape}
		if len(x.Data) > 0 && string(x.Data) != "null" {
			o.JSON = x.Data
		}
		for k := range x.Parameters {
			if err := oip.InputParameter(x.Name, k); err != nil {
				return nil, err
			}
		}
		if v, ok := x.Parameters["binary_data_size"]; ok {
			size, ok := wholeNumber(v)
			if !ok {
				return nil, understudy.Errorf(understudy.EINVALID, "input %q: binary_data_size is %v; want a whole number of bytes", x.Name, v)
			}
			if binary == nil {
				return nil, understudy.Errorf(understudy.EINVALID, "input %q: binary_data_size is given, but the request has no %s header saying where the binary data starts", x.Name, binaryHeader)
			}
			if size > int64(len(binary)) {
				return nil, understudy.Errorf(understudy.EINVALID, "input %q: binary_data_size is %d, but only %d bytes of binary data are left", x.Name, size, len(binary))
			}
			o.Raw, o.HasRaw, binary = binary[:size], true, binary[size:]
		}
		out[i] = o
	}
	if len(binary) > 0 {
		return nil, understudy.Errorf(understudy.EINVALID, "%d bytes of binary data are not claimed by any input's binary_data_size", len(binary))
	}
	return out, nil
}

// wholeNumber reads a JSON number parameter that must be a whole,
// non-negative number.
func wholeNumber(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// outputChoice is what the client asked of the outputs.
type outputChoice struct {
	names []string
	// binary names outputs to send as binary data; all says every output.
	binary map[string]bool
	all    bool
}

func outputRequests(req *inferRequest) (outputChoice, error) {
	var c outputChoice
	if v, ok := req.Parameters["binary_data_output"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return c, understudy.Errorf(understudy.EINVALID, "parameter binary_data_output is %v; want true or false", v)
		}
		c.all = b
	}
	for i, o := range req.Outputs {
		if o.Name == "" {
			return c, understudy.Errorf(understudy.EINVALID, `outputs[%d] has no "name"`, i)
		}
		c.names = append(c.names, o.Name)
		for k, v := range o.Parameters {
			if err := oip.OutputParameter(o.Name, k); err != nil {
				return c, err
			}
			switch k {
			case "binary_data":
				b, isBool := v.(bool)
				if !isBool {
					return c, understudy.Errorf(understudy.EINVALID, "output %q: binary_data is %v; want true or false", o.Name, v)
				}
				if c.binary == nil {
					c.binary = map[string]bool{}
				}
				c.binary[o.Name] = b
			}
		}
	}
	return c, nil
}

func (c *outputChoice) isBinary(name string) bool {
	if b, ok := c.binary[name]; ok {
		return b
	}
	return c.all
}

// encodeInfer writes the response's JSON, and the binary data of the
// outputs sent that way (nil if none).
func encodeInfer(ans *serving.Answer, id string, names []string, c outputChoice) (js, bin []byte) {
	js = make([]byte, 0, 256)
	js = append(js, `{"model_name":`...)
	js = understudy.AppendJSONString(js, ans.Model.Name)
	js = append(js, `,"model_version":`...)
	js = understudy.AppendJSONString(js, ans.Model.Version)
	js = append(js, `,"id":`...)
	js = understudy.AppendJSONString(js, id)
	js = append(js, `,"outputs":[`...)
	for i, n := range names {
		t := ans.Outputs[n]
		if i > 0 {
			js = append(js, ',')
		}
		js = append(js, `{"name":`...)
		js = understudy.AppendJSONString(js, n)
		js = append(js, `,"datatype":"`...)
		js = append(js, oip.Datatype(t.DType)...)
		js = append(js, `","shape":[`...)
		for k, d := range t.Shape {
			if k > 0 {
				js = append(js, ',')
			}
			js = strconv.AppendInt(js, d, 10)
		}
		js = append(js, ']')
		if c.isBinary(n) {
			if bin == nil {
				bin = make([]byte, 0, understudy.RawSize(t))
			}
			js = append(js, `,"parameters":{"binary_data_size":`...)
			js = strconv.AppendInt(js, int64(understudy.RawSize(t)), 10)
			js = append(js, '}')
			bin = understudy.AppendRaw(bin, t)
		} else {
			js = append(js, `,"data":`...)
			js = understudy.AppendJSONFlat(js, t)
		}
		js = append(js, '}')
	}
	js = append(js, "]}"...)
	return js, bin
}

// octetContentType marks a response with binary tensor data.
var octetContentType = []string{"application/octet-stream"}
