package report_test

import (
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/understudy-ml/understudy/pkg/report"
)

// Ensure text a client chose cannot run as a formula when the CSV is opened
// in a spreadsheet, and plain text is left alone.
func TestCSVCellsAreNotFormulas(t *testing.T) {
	var buf bytes.Buffer
	ids := []string{`=HYPERLINK("http://evil/","x")`, "+1", "-2", "@SUM(1)", "\tx", "plain-1"}
	var pairs []report.Pair
	for _, id := range ids {
		pairs = append(pairs, report.Pair{RequestID: id})
	}
	if err := report.WriteCSV(&buf, pairs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		want := "'" + id
		if id == "plain-1" {
			want = id
		}
		if got := rows[i+1][0]; got != want {
			t.Errorf("request id %q written as %q, want %q", id, got, want)
		}
	}
}
