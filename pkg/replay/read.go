package replay

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxIDLen is the longest id the server accepts.
const maxIDLen = 128

// Row is one prediction request read from a file.
type Row struct {
	// Line is where the row starts in its file, counting from 1.
	Line int
	// Body is the request body without "id": a compact JSON object.
	Body []byte
	// ID is the row's own id (JSON lines only), or "" to generate one.
	ID string
	// Label is the ground truth to post to /feedback, or nil.
	Label *float64
}

// BadRow is a row that was skipped, with where it is and what is wrong.
type BadRow struct {
	// File and Line say where the row is; Msg what is wrong with it.
	File string
	Line int
	Msg  string
}

// String reads like a compiler message: file:line: what is wrong.
func (b BadRow) String() string {
	return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Msg)
}

// File is the rows of a replay file and the rows that could not be used.
type File struct {
	// Name is the path the rows were read from, for messages.
	Name string
	// Rows are the usable rows, in file order.
	Rows []Row
	// Bad are the rows that were skipped, in file order.
	Bad []BadRow
}

// HasLabels reports whether any row carries a label.
func (f *File) HasLabels() bool {
	for _, r := range f.Rows {
		if r.Label != nil {
			return true
		}
	}
	return false
}

// ReadOptions says how to turn rows into requests.
type ReadOptions struct {
	// LabelColumn is the CSV column, or the JSON-lines key, that holds the
	// label (default "label").
	LabelColumn string
	// InputName, for CSV, sends {"inputs": {InputName: [[…]]}} instead of
	// the {"input": [[…]]} shorthand for single-input models.
	InputName string
	// MaxRows stops reading after this many usable rows, so that a short
	// replay of a large file reads only its start; 0 reads every row.
	MaxRows int
}

func (o ReadOptions) full(f *File) bool {
	return o.MaxRows > 0 && len(f.Rows) >= o.MaxRows
}

func (o ReadOptions) labelColumn() string {
	if o.LabelColumn == "" {
		return "label"
	}
	return o.LabelColumn
}

// ReadFile reads a CSV or JSON-lines file. The format comes from the
// extension (.csv; .jsonl, .ndjson or .json), else from the first byte.
func ReadFile(path string, opts ReadOptions) (*File, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	// Streamed, not read whole: with MaxRows only the rows used are read.
	br := bufio.NewReaderSize(file, 64<<10)
	var jsonl bool
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
	case ".jsonl", ".ndjson", ".json":
		jsonl = true
	default:
		head, err := br.Peek(br.Size())
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		trimmed := bytes.TrimLeft(head, " \t\r\n\ufeff")
		jsonl = len(trimmed) > 0 && trimmed[0] == '{'
	}
	if jsonl {
		return ReadJSONL(br, path, opts)
	}
	return ReadCSV(br, path, opts)
}

// ReadCSV reads a CSV file with a header row. Every column except the label
// column is a float feature, in order, and each row becomes one request with
// a batch of one. An empty label cell leaves that row unlabelled. Rows that
// cannot be used are collected in File.Bad; only a missing or unusable header
// is an error.
func ReadCSV(r io.Reader, name string, opts ReadOptions) (*File, error) {
	f := &File{Name: name}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the file is empty; want a header row such as sepal_length,sepal_width,label", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	headerLine, _ := cr.FieldPos(0)
	header[0] = strings.TrimPrefix(header[0], "\ufeff")
	labelCol := -1
	numeric := 0
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if _, err := strconv.ParseFloat(h, 64); err == nil {
			numeric++
		}
		if h == opts.labelColumn() {
			if labelCol >= 0 {
				return nil, fmt.Errorf("%s:%d: the label column %q appears twice in the header", name, headerLine, h)
			}
			labelCol = i
		}
	}
	if numeric == len(header) {
		return nil, fmt.Errorf("%s:%d: the first row looks like data, but a header row naming the columns is required", name, headerLine)
	}
	nFeatures := len(header)
	if labelCol >= 0 {
		nFeatures--
	}
	if nFeatures == 0 {
		return nil, fmt.Errorf("%s:%d: no feature columns: the only column is the label %q", name, headerLine, opts.labelColumn())
	}
	prefix := []byte(`{"input":[[`)
	if opts.InputName != "" {
		prefix = append([]byte(`{"inputs":{`), jsonString(opts.InputName)...)
		prefix = append(prefix, `:[[`...)
	}
	suffix := "]]}"
	if opts.InputName != "" {
		suffix = "]]}}"
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			f.Bad = append(f.Bad, BadRow{name, pe.StartLine, pe.Err.Error()})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			f.Bad = append(f.Bad, BadRow{name, line, fmt.Sprintf("%d fields, want %d as in the header", len(rec), len(header))})
			continue
		}
		row := Row{Line: line}
		body := append(make([]byte, 0, len(prefix)+len(suffix)+12*nFeatures), prefix...)
		var msg string
		first := true
		for i, cell := range rec {
			cell = strings.TrimSpace(cell)
			if i == labelCol {
				if cell == "" {
					continue
				}
				v, ok := parseFinite(cell)
				if !ok {
					msg = fmt.Sprintf("label %q is not a number", cell)
					break
				}
				row.Label = &v
				continue
			}
			if cell == "" {
				msg = fmt.Sprintf("column %q is empty", header[i])
				break
			}
			v, ok := parseFinite(cell)
			if !ok {
				msg = fmt.Sprintf("column %q: %q is not a finite number", header[i], cell)
				break
			}
			if !first {
				body = append(body, ',')
			}
			first = false
			body = strconv.AppendFloat(body, v, 'g', -1, 64)
		}
		if msg != "" {
			f.Bad = append(f.Bad, BadRow{name, line, msg})
			continue
		}
		row.Body = append(body, suffix...)
		f.Rows = append(f.Rows, row)
		if opts.full(f) {
			break
		}
	}
	return f, nil
}

// ReadJSONL reads one JSON object per line. Each object is the request body
// as it is, except that the label key is taken out (and used for feedback)
// and "id", if present, is kept aside so that repeats can make it unique.
// Blank lines are skipped; unusable lines are collected in File.Bad.
func ReadJSONL(r io.Reader, name string, opts ReadOptions) (*File, error) {
	f := &File{Name: name}
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\ufeff"))
		}
		if trimmed := bytes.TrimSpace(text); len(trimmed) > 0 {
			row, msg := parseJSONLine(trimmed, opts.labelColumn())
			if msg != "" {
				f.Bad = append(f.Bad, BadRow{name, line, msg})
			} else {
				row.Line = line
				f.Rows = append(f.Rows, row)
			}
		}
		if err != nil || opts.full(f) {
			break
		}
	}
	return f, nil
}

// parseJSONLine splits one object into body, id and label, keeping the order
// of the other keys. It returns a message instead of an error because every
// problem is the file's, not the program's.
func parseJSONLine(text []byte, labelKey string) (Row, string) {
	var row Row
	if !utf8.Valid(text) {
		return row, "not valid UTF-8"
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	if tok, err := dec.Token(); err != nil {
		return row, describeJSONError(err)
	} else if d, ok := tok.(json.Delim); !ok || d != '{' {
		return row, "want a JSON object such as {\"input\": [[5.1, 3.5, 1.4, 0.2]], \"label\": 0}"
	}
	body := []byte{'{'}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return row, describeJSONError(err)
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return row, describeJSONError(err)
		}
		if seen[key] {
			return row, fmt.Sprintf("key %q appears twice", key)
		}
		seen[key] = true
		switch key {
		case labelKey:
			if string(raw) == "null" {
				continue
			}
			var v float64
			if err := json.Unmarshal(raw, &v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				return row, fmt.Sprintf("%q must be a number, got %s", labelKey, clip(raw))
			}
			row.Label = &v
			continue
		case "id":
			if err := json.Unmarshal(raw, &row.ID); err != nil || row.ID == "" {
				return row, fmt.Sprintf(`"id" must be a non-empty string, got %s`, clip(raw))
			}
			if len(row.ID) > maxIDLen-8 {
				return row, fmt.Sprintf(`"id" is %d characters; at most %d leave room for a repeat suffix`, len(row.ID), maxIDLen-8)
			}
			continue
		}
		if len(body) > 1 {
			body = append(body, ',')
		}
		body = append(body, jsonString(key)...)
		body = append(body, ':')
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return row, describeJSONError(err)
		}
		body = append(body, buf.Bytes()...)
	}
	if _, err := dec.Token(); err != nil {
		return row, describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return row, "more than one JSON value on the line; want one object per line"
	}
	if !seen["input"] && !seen["inputs"] {
		return row, `no "input" or "inputs" key; want {"input": [[…]]} or {"inputs": {"<name>": [[…]]}}`
	}
	row.Body = append(body, '}')
	return row, ""
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at column %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: the line ends before the object does"
	}
	return "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

func parseFinite(s string) (float64, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
