package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// refOf names the content a fake model file holds, and gives its digest.
func refOf(name, content string) (understudy.ModelRef, string) {
	sum := sha256.Sum256([]byte(content))
	h := hex.EncodeToString(sum[:])
	return understudy.ModelRef{Name: name, Version: h[:12]}, h
}

// deploying is the deployment a replica that promoted name's content would
// persist.
func deploying(name, content string, previous ...understudy.ModelRef) understudy.Deployment {
	ref, sha := refOf(name, content)
	return understudy.Deployment{Primary: ref, PrimarySHA256: sha, Previous: previous}
}

// recorder counts what a registry saves and records.
type recorder struct {
	deploys int
	events  []understudy.Event
}

func (rec *recorder) attach(r *Registry) {
	r.OnDeploy = func(understudy.Deployment) { rec.deploys++ }
	r.OnEvent = func(ev understudy.Event) { rec.events = append(rec.events, ev) }
}

func (rec *recorder) kinds(kind string) int {
	n := 0
	for _, ev := range rec.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// Ensure a replica follows a promote made elsewhere when it has the very
// same file, without saving the shared deployment back.
func TestFollowPromotesALoadedVersion(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"a": "A", "b": "B"}, "a")
	var rec recorder
	rec.attach(d.r)
	a, _ := refOf("a", "A")
	d.r.Follow(deploying("b", "B", a), "replica sync")
	if p, _ := d.r.Primary(); p.Name != "b" {
		t.Fatalf("primary %v after following b, want b", p)
	}
	if rec.deploys != 0 {
		t.Errorf("following saved the deployment %d times, want 0: it is the shared one already", rec.deploys)
	}
	if rec.kinds(understudy.EventPromoted) != 1 || d.r.SyncWarning() != "" {
		t.Errorf("events %+v, warning %q; want one promoted event and no warning", rec.events, d.r.SyncWarning())
	}
	if ref, err := d.r.Rollback("test"); err != nil || ref.Name != "a" {
		t.Errorf("rollback after following: %v %v, want a from the shared rollback stack", ref, err)
	}
}

// Ensure a replica that lacks the shared primary's file keeps serving its
// own, says why once, and switches as soon as the file arrives; a file of
// the same name with other content is not followed.
func TestFollowWaitsForTheFile(t *testing.T) {
	d := newFakeDir(t, 0, map[string]string{"a": "A"}, "a")
	var rec recorder
	rec.attach(d.r)
	want := deploying("b", "B2")
	for range 2 {
		d.r.Follow(want, "replica sync")
	}
	if p, _ := d.r.Primary(); p.Name != "a" {
		t.Fatalf("primary %v while b is missing, want a still serving", p)
	}
	if w := d.r.SyncWarning(); !strings.Contains(w, "b@"+want.Primary.Version) || !strings.Contains(w, "still serving a@") {
		t.Errorf("warning %q, want it to name the missing b and the serving a", w)
	}
	if n := rec.kinds(understudy.EventFallback); n != 1 {
		t.Errorf("%d fallback events after following twice, want 1", n)
	}
	d.write("b", "B1") // the same name, other content
	d.scan()
	if p, _ := d.r.Primary(); p.Name != "a" {
		t.Fatalf("primary %v after b arrived with other content, want a", p)
	}
	d.write("b", "B2")
	d.scan()
	if p, _ := d.r.Primary(); p.Name != "b" || p.Version != want.Primary.Version {
		t.Fatalf("primary %v after b's file arrived, want b@%s", p, want.Primary.Version)
	}
	if w := d.r.SyncWarning(); w != "" {
		t.Errorf("warning %q after following, want none", w)
	}
	if rec.deploys != 0 {
		t.Errorf("saved the deployment %d times, want 0", rec.deploys)
	}
}

// Ensure a replica starting on a shared deployment whose primary it lacks
// does not overwrite it with its own choice, and follows the shared
// settings.
func TestSharedStartKeepsTheDeployment(t *testing.T) {
	d := &fakeDir{t: t, dir: t.TempDir(), now: time.Now(), mtime: time.Now().Add(-time.Hour)}
	d.write("a", "A")
	r := New(d.dir, fakeLoad, zerolog.Nop())
	r.Warmup, r.Shared = false, true
	r.Now = func() time.Time { return d.now }
	d.r = r
	var rec recorder
	rec.attach(r)
	persisted := &understudy.Deployment{Primary: deploying("b", "B").Primary,
		Settings: map[string]understudy.ShadowSettings{"a": {Sampling: 0.25, TimeoutMS: 100}}}
	if err := r.LoadDir("", persisted); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	if rec.deploys != 0 {
		t.Errorf("a replica lacking the shared primary saved the deployment %d times, want 0", rec.deploys)
	}
	if p, _ := r.Primary(); p.Name != "a" {
		t.Errorf("primary %v, want a as the fallback", p)
	}
	if r.SyncWarning() == "" {
		t.Error("no warning that the shared primary is missing")
	}
	for _, m := range r.List() {
		if m.Name == "a" && (m.Sampling == nil || *m.Sampling != 0.25) {
			t.Errorf("a's sampling %v, want the shared 0.25", m.Sampling)
		}
	}
}

// Ensure a replica that starts with no model file on a shared deployment,
// then gets a file other than the shared primary's, serves it without
// saving it as everyone's primary.
func TestSharedReplicaNeverSavesItsFirstModel(t *testing.T) {
	d := &fakeDir{t: t, dir: t.TempDir(), now: time.Now(), mtime: time.Now().Add(-time.Hour)}
	r := New(d.dir, fakeLoad, zerolog.Nop())
	r.Warmup, r.Shared, r.Settle = false, true, 0
	r.Now = func() time.Time { return d.now }
	d.r = r
	var rec recorder
	rec.attach(r)
	shared := deploying("x", "X")
	if err := r.LoadDir("", &shared); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	d.write("b", "B")
	d.scan()
	if p, _ := r.Primary(); p.Name != "b" {
		t.Fatalf("primary %v, want b serving locally", p)
	}
	if rec.deploys != 0 {
		t.Errorf("the replica saved its own primary %d times over the shared deployment, want 0", rec.deploys)
	}
	if r.SyncWarning() == "" {
		t.Error("no warning that the shared primary x is missing")
	}
}
