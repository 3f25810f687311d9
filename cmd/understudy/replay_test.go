package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Ensure a replay whose predictions fail exits with an error after its
// summary, so that scripts and CI notice, and a clean one does not.
func TestReplayFailsWhenPredictionsFail(t *testing.T) {
	m := startServer(t, demoDir(t), "--primary", "iris-v1", "--db", filepath.Join(t.TempDir(), "r.db"))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	bad := filepath.Join(dir, "bad.csv")
	// The demo takes 4 features: 3 get a 400 on every row.
	os.WriteFile(good, []byte("a,b,c,d\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n"), 0o644)
	os.WriteFile(bad, []byte("a,b,c\n5.1,3.5,1.4\n6.2,2.9,4.3\n"), 0o644)
	var out, errOut bytes.Buffer
	if err := runReplay(context.Background(), []string{"--url", m.URL(), "--rate", "0", "--quiet", good}, &out, &errOut); err != nil {
		t.Errorf("clean replay: %v\n%s%s", err, out.String(), errOut.String())
	}
	out.Reset()
	err := runReplay(context.Background(), []string{"--url", m.URL(), "--rate", "0", "--quiet", bad}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "2 of 2 predictions") {
		t.Errorf("replay of rows the model refuses: %v, want an error counting the failures\n%s", err, out.String())
	}
}
