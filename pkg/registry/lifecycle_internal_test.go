package registry

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// nopRunner stands in for a session: these tests are about which models
// are loaded, not what they compute.
type nopRunner struct{}

func (nopRunner) Run(context.Context, map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	return nil, nil
}
func (nopRunner) Close() error { return nil }

// fakeLoad reads a model file written by writeModel as "content|inputs":
// the inputs, comma-separated, each float32 [-1,4].
func fakeLoad(data []byte) (*understudy.LoadedModel, error) {
	inputs := "x"
	if _, after, ok := strings.Cut(string(data), "|"); ok {
		inputs = after
	}
	var sig understudy.Signature
	for _, name := range strings.Split(inputs, ",") {
		sig.Inputs = append(sig.Inputs, understudy.TensorInfo{Name: name, DType: understudy.Float32, Dims: []int64{-1, 4}})
	}
	sig.Outputs = []understudy.TensorInfo{{Name: "y", DType: understudy.Float32, Dims: []int64{-1, 4}}}
	return &understudy.LoadedModel{Runner: nopRunner{}, Signature: sig}, nil
}

// fakeDir is a models directory with a registry over it and a clock the
// test moves.
type fakeDir struct {
	t     *testing.T
	dir   string
	now   time.Time
	mtime time.Time
	r     *Registry
}

func newFakeDir(t *testing.T, settle time.Duration, files map[string]string, primary string) *fakeDir {
	d := &fakeDir{t: t, dir: t.TempDir(), now: time.Now(), mtime: time.Now().Add(-time.Hour)}
	for name, content := range files {
		d.write(name, content)
	}
	d.r = New(d.dir, fakeLoad, zerolog.Nop())
	d.r.Settle, d.r.Warmup = settle, false
	d.r.Now = func() time.Time { return d.now }
	if err := d.r.LoadDir(primary, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.r.Close(context.Background()) })
	return d
}

// write gives every write a new mtime, as a copy would.
func (d *fakeDir) write(name, content string) {
	d.t.Helper()
	d.mtime = d.mtime.Add(time.Minute)
	d.writeAt(name, content, d.mtime)
}

func (d *fakeDir) writeAt(name, content string, mtime time.Time) {
	d.t.Helper()
	p := filepath.Join(d.dir, name+".onnx")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		d.t.Fatal(err)
	}
}

func (d *fakeDir) remove(name string) {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.dir, name+".onnx")); err != nil {
		d.t.Fatal(err)
	}
}

// scan scans and waits for the loads it started. The clock moves a
// millisecond first, so that versions loaded by different scans are
// ordered by load time.
func (d *fakeDir) scan() {
	d.now = d.now.Add(time.Millisecond)
	d.r.Scan()
	d.r.loads.Wait()
}

// loaded lists name's loaded versions as role:content, sorted.
func (d *fakeDir) loaded(name string) []string {
	var out []string
	for _, m := range d.r.List() {
		if m.Name == name {
			out = append(out, string(m.Role)+":"+m.Version)
		}
	}
	slices.Sort(out)
	return out
}

// Ensure a file restored to content already in memory unloads the version
// it held in between, as loading new content would.
func TestRestoredContentRetiresTheVersionInBetween(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"m": "A"}, "m")
	d.write("m", "B")
	d.scan()
	if got := d.loaded("m"); len(got) != 2 {
		t.Fatalf("after new content: %v, want the primary and a shadow", got)
	}
	d.write("m", "A")
	d.scan()
	if got := d.loaded("m"); len(got) != 1 || !strings.HasPrefix(got[0], "primary:") {
		t.Errorf("file restored to the primary's content, but loaded: %v", got)
	}
}

// Ensure every stale version of a name is unloaded when new content loads,
// not every other one.
func TestEveryStaleVersionIsRetired(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"m": "A1"}, "m")
	for _, v := range []string{"A2", "A3"} {
		d.write("m", v)
		d.scan()
		if _, err := d.r.Promote("m", "", false, "test"); err != nil {
			t.Fatal(err)
		}
	}
	// Rolling back twice leaves A1 primary and A2, A3 as plain shadows.
	for range 2 {
		if _, err := d.r.Rollback("test"); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.loaded("m"); len(got) != 3 {
		t.Fatalf("before new content: %v, want A1 primary and two shadows", got)
	}
	d.write("m", "A4")
	d.scan()
	if got := d.loaded("m"); len(got) != 2 {
		t.Errorf("after new content: %v, want only the primary and the new shadow", got)
	}
}

// Ensure a model is promoted over the current primary only if it takes
// every input clients send now: /predict refuses inputs a model lacks.
func TestPromoteNeedsEveryInputClientsSend(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"p": "P|a,b", "q": "Q|a"}, "p")
	// q takes a subset of p's inputs: a fine shadow, but clients sending b
	// would get errors from it as the primary.
	if got := d.loaded("q"); len(got) != 1 || !strings.HasPrefix(got[0], "shadow:") {
		t.Fatalf("q loaded as %v, want a shadow", got)
	}
	_, err := d.r.Promote("q", "", false, "test")
	if understudy.ErrorCode(err) != understudy.ECONFLICT || !strings.Contains(err.Error(), `input "b", which clients send now, does not exist`) {
		t.Fatalf("promote without force: %v, want a conflict naming input b", err)
	}
	if _, err := d.r.Promote("q", "", true, "test"); err != nil {
		t.Fatalf("promote with force: %v", err)
	}
}

// Ensure a file deleted and created again within the settle interval, as
// tar and many editors do, keeps its models, and with them what there is
// to roll back to; a file that stays away is unloaded after the interval.
func TestFileBackWithinSettleKeepsItsModels(t *testing.T) {
	const settle = time.Second
	d := newFakeDir(t, settle, map[string]string{"v1": "A", "v2": "B", "other": "C"}, "v1")
	if _, err := d.r.Promote("v2", "", false, "test"); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(filepath.Join(d.dir, "v1.onnx"))
	d.remove("v1")
	d.scan()
	d.now = d.now.Add(settle / 2)
	d.writeAt("v1", "A", info.ModTime())
	d.scan()
	d.now = d.now.Add(settle)
	d.scan()
	if got := d.loaded("v1"); len(got) != 1 {
		t.Fatalf("v1 after its file came back: %v, want it still loaded", got)
	}
	if ref, err := d.r.Rollback("test"); err != nil || ref.Name != "v1" {
		t.Fatalf("rollback: %v %v, want v1 back as the primary", ref, err)
	}

	d.remove("other")
	d.scan()
	if got := d.loaded("other"); len(got) != 1 {
		t.Fatalf("other right after its file went: %v, want it loaded until the interval passes", got)
	}
	d.now = d.now.Add(settle)
	d.scan()
	if got := d.loaded("other"); len(got) != 0 {
		t.Errorf("other a settle interval after its file went: %v, want it unloaded", got)
	}
}

// Ensure the primary's removed-file warning is given once, and is gone
// when the file is back.
func TestPrimaryFileWarningEndsWhenTheFileIsBack(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"m": "A"}, "m")
	warnings := func() []string {
		for _, m := range d.r.List() {
			if m.Name == "m" {
				return m.Warnings
			}
		}
		t.Fatal("m is not loaded")
		return nil
	}
	for range 3 {
		d.remove("m")
		d.scan()
		d.scan()
		if w := warnings(); len(w) != 1 || w[0] != fileRemovedWarning {
			t.Fatalf("with the file gone: warnings %q, want the removed-file warning once", w)
		}
		d.write("m", "A")
		d.scan()
		if w := warnings(); len(w) != 0 {
			t.Fatalf("with the file back: warnings %q, want none", w)
		}
	}
}
