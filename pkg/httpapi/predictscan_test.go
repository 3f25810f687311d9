package httpapi

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// scanBodies are bodies the scan must take (true) or leave to decodeJSON
// (false). Every one of them is also a fuzzing seed.
var scanBodies = []struct {
	body string
	take bool
}{
	{`{"input": [[5.1, 3.5, 1.4, 0.2]]}`, true},
	{` {"id":"r-1","input":[[1,2],[3,4]]} `, true},
	{`{"input":[1e5,-0.5,0,-0,2E-3,1.5e+2]}`, true},
	{`{"inputs":{"a":[[1]],"b":[true,false]},"id":"x"}`, true},
	{`{"inputs":{}}`, true},
	{`{"input":7}`, true},
	{`{"input":[]}`, true},
	{`{"input":[[],[]]}`, true},
	{"{\n\t\"input\" :\r [ [ 1 , 2 ] ]\n}", true},
	{`{"id":"","input":[1]}`, true},
	{`{}`, false},
	{``, false},
	{`   `, false},
	{`{"Input":[1]}`, false},                      // the decoder matches keys case-insensitively
	{`{"input":[1],"input":[2]}`, false},          // the decoder keeps the last
	{`{"inputs":{"a":[1],"a":[2]}}`, false},       // likewise
	{`{"input":[1],"extra":1}`, false},            // refused by the decoder
	{`{"input":[01]}`, false},                     // not JSON
	{`{"input":[1.]}`, false},                     // not JSON
	{`{"input":[.5]}`, false},                     // not JSON
	{`{"input":[+1]}`, false},                     // not JSON
	{`{"input":[-Inf]}`, false},                   // not JSON, but ParseFloat's
	{`{"input":[0x10]}`, false},                   // likewise
	{`{"input":[NaN]}`, false},                    // likewise
	{`{"input":[1,]}`, false},                     // trailing comma
	{`{"input":[1 2]}`, false},                    // missing comma
	{`{"input":[[1],[2]}`, false},                 // unbalanced
	{`{"input":[1]]}`, false},                     // unbalanced
	{`{"input":[1]} x`, false},                    // trailing data
	{`{"input":[1]}{}`, false},                    // trailing data
	{`{"input":["a"]}`, false},                    // strings are left to the decoder
	{`{"input":{"shape":[1],"data":[1]}}`, false}, // the explicit form too
	{`{"input":null}`, false},
	{`{"input":[null]}`, false},
	{`{"input":[truex]}`, false},
	{`{"id":"a\"b","input":[1]}`, false},       // escapes
	{`{"id":"é","input":[1]}`, false},          // non-ASCII
	{"{\"id\":\"a\tb\",\"input\":[1]}", false}, // a control character
	{`{"id":7,"input":[1]}`, false},
	{`{"input":[1],}`, false},
	{`{,"input":[1]}`, false},
	{`{"input" [1]}`, false},
	{`["input"]`, false},
	{`{"input":` + strings.Repeat("[", 63) + "1" + strings.Repeat("]", 63) + `}`, true},
	{`{"input":` + strings.Repeat("[", 64) + "1" + strings.Repeat("]", 64) + `}`, false}, // checkDepth's limit
	{`{"inputs":{"a":` + strings.Repeat("[", 62) + "1" + strings.Repeat("]", 62) + `}}`, true},
	{`{"inputs":{"a":` + strings.Repeat("[", 63) + "1" + strings.Repeat("]", 63) + `}}`, false},
}

// Ensure the scan takes exactly the bodies listed as taken.
func TestScanPredictTakes(t *testing.T) {
	for _, tt := range scanBodies {
		var req predictRequest
		if got := scanPredict([]byte(tt.body), &req); got != tt.take {
			t.Errorf("scanPredict(%.60q) = %v, want %v", tt.body, got, tt.take)
		}
	}
}

// checkScan is the scan's contract: whatever it takes, decodeJSON decodes
// without error to the same request.
func checkScan(t *testing.T, body []byte) {
	var fast predictRequest
	if !scanPredict(body, &fast) {
		return
	}
	var slow predictRequest
	if err := decodeJSON(body, &slow, predictShape); err != nil {
		t.Fatalf("the scan took %q, which decodeJSON refuses: %v", body, err)
	}
	same := fast.ID == slow.ID && bytes.Equal(fast.Input, slow.Input) && (fast.Input == nil) == (slow.Input == nil) &&
		(fast.Inputs == nil) == (slow.Inputs == nil) && maps.EqualFunc(fast.Inputs, slow.Inputs, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) })
	if !same {
		t.Fatalf("body %q: scan gave %+v, decodeJSON %+v", body, fast, slow)
	}
}

func TestScanPredictAgreesWithDecoder(t *testing.T) {
	for _, tt := range scanBodies {
		checkScan(t, []byte(tt.body))
	}
}

func FuzzScanPredict(f *testing.F) {
	for _, tt := range scanBodies {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(checkScan)
}
