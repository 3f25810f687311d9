package sqlite_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure the deployment state survives a reopen exactly, and a fresh
// database has none.
func TestDeploymentRoundTrip(t *testing.T) {
	ctx := context.Background()
	db, path := openDB(t, sqlite.Options{})
	if d, err := db.LoadDeployment(ctx); err != nil || d != nil {
		t.Fatalf("fresh database: %+v, %v; want nil", d, err)
	}
	want := understudy.Deployment{
		Primary:  understudy.ModelRef{Name: "iris-v2", Version: "872a8a469673"},
		Previous: []understudy.ModelRef{{Name: "iris-v1", Version: "783aec65f792"}},
		Settings: map[string]understudy.ShadowSettings{"iris-v1": {Sampling: 0.25, TimeoutMS: 200, Paused: true}},
	}
	if err := db.SaveDeployment(ctx, understudy.Deployment{Primary: understudy.ModelRef{Name: "old"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveDeployment(ctx, want); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.LoadDeployment(ctx)
	if err != nil || !reflect.DeepEqual(*got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}
