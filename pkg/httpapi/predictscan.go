package httpapi

import (
	"encoding/json"
	"unsafe"
)

// scanPredict fills req from the bodies nearly every client sends: an
// object whose keys are "input", "inputs" and "id", each at most once and
// spelled exactly so, whose input values are arrays and numbers, and whose
// id is printable ASCII. It checks their JSON syntax as strictly as the
// decoder, in one pass and without it: decodeJSON's depth check and its
// general decoder were 1.2 µs of a 60 µs request on the tiny MLP
// (docs/perf/request-cost.md).
//
// It reports false for anything else: other keys or spellings, escapes,
// strings or objects inside the inputs, non-ASCII bytes, malformed JSON.
// decodeJSON then decodes the body and gives the answer or the error, so
// the scan never changes what a body means or how it is refused.
func scanPredict(body []byte, req *predictRequest) bool {
	s := scanner{buf: body}
	s.ws()
	if !s.eat('{') {
		return false
	}
	var seenID, seenInput, seenInputs bool
	for first := true; ; first = false {
		s.ws()
		if first && s.eat('}') {
			return false // {}: let decodeJSON and decodeInputs say what is missing
		}
		key, ok := s.plainString()
		if !ok {
			return false
		}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		switch string(key) {
		case "id":
			if seenID {
				return false
			}
			seenID = true
			id, ok := s.plainString()
			if !ok {
				return false
			}
			// Pointing into body, as decodeJSON's ZeroCopy strings do:
			// bodyID copies the id it keeps.
			req.ID = unsafe.String(unsafe.SliceData(id), len(id))
		case "input":
			if seenInput {
				return false
			}
			seenInput = true
			// The object is one level of checkDepth's count.
			v, ok := s.numbers(maxDepth - 1)
			if !ok {
				return false
			}
			req.Input = v
		case "inputs":
			if seenInputs {
				return false
			}
			seenInputs = true
			if !s.inputs(req) {
				return false
			}
		default:
			return false
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return false
		}
	}
	s.ws()
	return s.pos == len(s.buf)
}

type scanner struct {
	buf []byte
	pos int
}

func (s *scanner) ws() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.pos < len(s.buf) && s.buf[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// plainString reads a string of printable ASCII without escapes and returns
// its contents.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.pos
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.buf[start : s.pos-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
		s.pos++
	}
	return nil, false
}

// inputs reads {"name": numbers, ...} with plain, distinct names.
func (s *scanner) inputs(req *predictRequest) bool {
	if !s.eat('{') {
		return false
	}
	req.Inputs = map[string]json.RawMessage{}
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		s.ws()
		name, ok := s.plainString()
		if !ok {
			return false
		}
		if _, dup := req.Inputs[string(name)]; dup {
			return false
		}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		v, ok := s.numbers(maxDepth - 2)
		if !ok {
			return false
		}
		req.Inputs[string(name)] = v
		s.ws()
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// numbers reads a JSON number, true, false, or arrays of them nested up to
// limit, and returns its bytes.
func (s *scanner) numbers(limit int) (json.RawMessage, bool) {
	start := s.pos
	depth := 0
	for {
		// A value, or the ']' of an empty array.
		s.ws()
		if s.eat('[') {
			depth++
			if depth > limit {
				return nil, false
			}
			s.ws()
			if !s.eat(']') {
				continue
			}
			depth--
		} else if !s.scalar() {
			return nil, false
		}
		// After a value: ',' and the next, or ']' closing arrays.
		for {
			if depth == 0 {
				return s.buf[start:s.pos], true
			}
			s.ws()
			if s.eat(',') {
				break
			}
			if !s.eat(']') {
				return nil, false
			}
			depth--
		}
	}
}

// scalar reads a JSON number (RFC 8259's grammar, no more), true or false.
func (s *scanner) scalar() bool {
	for _, lit := range []string{"true", "false"} {
		if len(s.buf)-s.pos >= len(lit) && string(s.buf[s.pos:s.pos+len(lit)]) == lit {
			s.pos += len(lit)
			return true
		}
	}
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.digits() == 0:
		return false
	}
	if s.eat('.') && s.digits() == 0 {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.buf) && s.buf[s.pos] >= '0' && s.buf[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}
