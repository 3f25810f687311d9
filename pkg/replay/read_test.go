package replay_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/replay"
)

// testdata is the repository's testdata directory.
func testdata(tb testing.TB, name string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", name)
}

func readCSV(tb testing.TB, text string, opts replay.ReadOptions) *replay.File {
	tb.Helper()
	f, err := replay.ReadCSV(strings.NewReader(text), "t.csv", opts)
	if err != nil {
		tb.Fatalf("ReadCSV: %v", err)
	}
	return f
}

func readJSONL(tb testing.TB, text string) *replay.File {
	tb.Helper()
	f, err := replay.ReadJSONL(strings.NewReader(text), "t.jsonl", replay.ReadOptions{})
	if err != nil {
		tb.Fatalf("ReadJSONL: %v", err)
	}
	return f
}

// rowView is a Row with its label dereferenced, for comparisons.
type rowView struct {
	Line  int
	Body  string
	ID    string
	Label any
}

func view(rows []replay.Row) []rowView {
	out := make([]rowView, len(rows))
	for i, r := range rows {
		out[i] = rowView{Line: r.Line, Body: string(r.Body), ID: r.ID, Label: nil}
		if r.Label != nil {
			out[i].Label = *r.Label
		}
	}
	return out
}

// Ensure the two demo files read cleanly and give the same 45 requests.
func TestReadDemoFiles(t *testing.T) {
	csv, err := replay.ReadFile(testdata(t, "iris-holdout.csv"), replay.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jsonl, err := replay.ReadFile(testdata(t, "iris-holdout.jsonl"), replay.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*replay.File{csv, jsonl} {
		if got, want := len(f.Rows), 45; got != want {
			t.Errorf("%s: %d rows, want %d", f.Name, got, want)
		}
		if len(f.Bad) > 0 {
			t.Errorf("%s: bad rows %v", f.Name, f.Bad)
		}
		if !f.HasLabels() {
			t.Errorf("%s: no labels", f.Name)
		}
	}
	if len(csv.Rows) != len(jsonl.Rows) {
		t.FailNow()
	}
	for i := range csv.Rows {
		c, j := csv.Rows[i], jsonl.Rows[i]
		if got, want := string(c.Body), string(j.Body); got != want {
			t.Errorf("row %d: csv body %s, jsonl body %s", i, got, want)
		}
		if got, want := *c.Label, *j.Label; got != want {
			t.Errorf("row %d: csv label %v, jsonl label %v", i, got, want)
		}
	}
	if got, want := string(csv.Rows[0].Body), `{"input":[[5,3.4,1.5,0.2]]}`; got != want {
		t.Errorf("first body %s, want %s", got, want)
	}
}

// Ensure rows become the request bodies the server expects.
func TestReadRows(t *testing.T) {
	for _, tt := range []struct {
		name  string
		jsonl bool
		text  string
		opts  replay.ReadOptions
		want  []rowView
	}{
		{
			name: "csv shorthand",
			text: "a,b,label\n1,2.5,0\n-3,4e2,1\n",
			want: []rowView{
				{Line: 2, Body: `{"input":[[1,2.5]]}`, Label: 0.0},
				{Line: 3, Body: `{"input":[[-3,400]]}`, Label: 1.0},
			},
		},
		{
			name: "csv input name, label in the middle, blank lines, BOM, CRLF",
			text: "\ufeffa, y ,b\r\n\r\n1, 7 ,2\r\n3,,4\r\n",
			opts: replay.ReadOptions{LabelColumn: "y", InputName: `in"put`},
			want: []rowView{
				{Line: 3, Body: `{"inputs":{"in\"put":[[1,2]]}}`, Label: 7.0},
				{Line: 4, Body: `{"inputs":{"in\"put":[[3,4]]}}`},
			},
		},
		{
			name: "csv without a label column",
			text: "a,b\n1,2\n",
			want: []rowView{{Line: 2, Body: `{"input":[[1,2]]}`}},
		},
		{
			name:  "jsonl keeps keys and values, takes out label and id",
			jsonl: true,
			text: "{\"input\":[[5.10, 3]],\"label\":0}\n\n   \n" +
				"{ \"id\": \"mine\", \"inputs\": {\"x\": [[1]], \"y\": [[2]]}, \"label\": 2.5 }\r\n" +
				"{\"label\":null,\"input\":[[1]],\"extra\":{\"k\":[1, 2]}}",
			want: []rowView{
				{Line: 1, Body: `{"input":[[5.10,3]]}`, Label: 0.0},
				{Line: 4, Body: `{"inputs":{"x":[[1]],"y":[[2]]}}`, ID: "mine", Label: 2.5},
				{Line: 5, Body: `{"input":[[1]],"extra":{"k":[1,2]}}`},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f *replay.File
			if tt.jsonl {
				f = readJSONL(t, tt.text)
			} else {
				f = readCSV(t, tt.text, tt.opts)
			}
			if len(f.Bad) > 0 {
				t.Errorf("bad rows: %v", f.Bad)
			}
			if got, want := view(f.Rows), tt.want; !reflect.DeepEqual(got, want) {
				t.Errorf("rows\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// Ensure bad rows are skipped and reported with their line numbers, and the
// good rows around them are kept.
func TestReadBadRows(t *testing.T) {
	type bad struct {
		line int
		msg  string // a substring of the message
	}
	for _, tt := range []struct {
		name     string
		jsonl    bool
		text     string
		wantBad  []bad
		wantRows []int // lines of the rows kept
	}{
		{
			name: "csv",
			text: "a,b,label\n" +
				"1,2,0\n" + // 2 ok
				"1,x,0\n" + // 3
				"1,2\n" + // 4
				"1,2,zero\n" + // 5
				"1,,0\n" + // 6
				"1,NaN,0\n" + // 7
				"\"1,2,0\n3,4,1\n", // 8: the quote never closes
			wantBad: []bad{
				{3, `column "b": "x" is not a finite number`},
				{4, "2 fields, want 3"},
				{5, `label "zero" is not a number`},
				{6, `column "b" is empty`},
				{7, `"NaN" is not a finite number`},
				{8, "quote"},
			},
			wantRows: []int{2},
		},
		{
			name: "csv bare quote then a good row",
			text: "a,b\n1,2\n1,x\"y\n5,6\n",
			wantBad: []bad{
				{3, "quote"},
			},
			wantRows: []int{2, 4},
		},
		{
			name:  "jsonl",
			jsonl: true,
			text: `{"input":[[1]],"label":1}` + "\n" + // 1 ok
				`[1,2]` + "\n" + // 2
				`{"input":[[1]]` + "\n" + // 3
				`{"input":[[1]],"label":"cat"}` + "\n" + // 4
				`{"inputs":{"x":[[1]]}} {}` + "\n" + // 5
				`{"label":1}` + "\n" + // 6
				`{"input":[[1]],"id":7}` + "\n" + // 7
				`{"input":[[1]],"input":[[2]]}` + "\n" + // 8
				`{"input":[[1,]]}` + "\n" + // 9
				"\n" +
				`{"input":[[2]]}` + "\n", // 11 ok
			wantBad: []bad{
				{2, "want a JSON object"},
				{3, "the line ends before the object does"},
				{4, `"label" must be a number, got "cat"`},
				{5, "more than one JSON value"},
				{6, `no "input" or "inputs"`},
				{7, `"id" must be a non-empty string, got 7`},
				{8, `key "input" appears twice`},
				{9, "malformed JSON"},
			},
			wantRows: []int{1, 11},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f *replay.File
			if tt.jsonl {
				f = readJSONL(t, tt.text)
			} else {
				f = readCSV(t, tt.text, replay.ReadOptions{})
			}
			if got, want := len(f.Bad), len(tt.wantBad); got != want {
				t.Errorf("%d bad rows, want %d: %v", got, want, f.Bad)
			}
			for i := 0; i < min(len(f.Bad), len(tt.wantBad)); i++ {
				got, want := f.Bad[i], tt.wantBad[i]
				if got.Line != want.line || !strings.Contains(got.Msg, want.msg) {
					t.Errorf("bad row %d: got %s, want line %d with %q", i, got, want.line, want.msg)
				}
				if !strings.HasPrefix(got.String(), got.File+":") {
					t.Errorf("bad row %d: %q does not start with the file name", i, got)
				}
			}
			var lines []int
			for _, r := range f.Rows {
				lines = append(lines, r.Line)
			}
			if got, want := lines, tt.wantRows; !reflect.DeepEqual(got, want) {
				t.Errorf("kept lines %v, want %v", got, want)
			}
		})
	}
}

// Ensure a CSV file that cannot be used at all is an error, not a run of
// bad rows.
func TestReadCSVHeaderErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text, want string
	}{
		{"empty", "", "empty"},
		{"no header", "5.1,3.5,1.4,0.2,0\n", "header row"},
		{"label twice", "label,a,label\n0,1,0\n", "appears twice"},
		{"only a label", "label\n0\n", "no feature columns"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := replay.ReadCSV(strings.NewReader(tt.text), "t.csv", replay.ReadOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// failAfter yields text and then fails, as a file would whose rest is
// unreadable: whatever is read past text errors.
type failAfter struct{ r *strings.Reader }

func (f failAfter) Read(p []byte) (int, error) {
	if f.r.Len() == 0 {
		return 0, errors.New("read past the rows asked for")
	}
	return f.r.Read(p)
}

// Ensure MaxRows stops reading once it has that many usable rows, so that
// --limit on a large file reads only its start; bad rows before that point
// are still reported.
func TestReadStopsAtMaxRows(t *testing.T) {
	csvText := "a,b,label\n1,2,0\nx,2,0\n3,4,1\n"
	f, err := replay.ReadCSV(failAfter{strings.NewReader(csvText)}, "t.csv", replay.ReadOptions{MaxRows: 2})
	if err != nil {
		t.Fatalf("ReadCSV: %v", err)
	}
	if len(f.Rows) != 2 || f.Rows[1].Line != 4 || len(f.Bad) != 1 {
		t.Errorf("CSV: %d rows (last on line %d), %d bad; want 2 rows, the last on line 4, and 1 bad", len(f.Rows), f.Rows[len(f.Rows)-1].Line, len(f.Bad))
	}
	jsonText := "{\"input\": [[1]]}\n{\"input\": [[2]]}\n"
	f, err = replay.ReadJSONL(failAfter{strings.NewReader(jsonText)}, "t.jsonl", replay.ReadOptions{MaxRows: 2})
	if err != nil {
		t.Fatalf("ReadJSONL: %v", err)
	}
	if len(f.Rows) != 2 {
		t.Errorf("JSON lines: %d rows, want 2", len(f.Rows))
	}
}
