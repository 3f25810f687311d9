package sqlite_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
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

// Ensure events come back newest first, filtered by model.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t, sqlite.Options{})
	base := time.UnixMicro(1_700_000_000_000_000)
	evs := []understudy.Event{
		{Time: base, Kind: understudy.EventLoaded, Model: "a", Version: "v1", Actor: "startup", Detail: "load 1 ms"},
		{Time: base.Add(time.Second), Kind: understudy.EventLoaded, Model: "b", Version: "v2", Actor: "watcher"},
		{Time: base.Add(2 * time.Second), Kind: understudy.EventPromoted, Model: "b", Version: "v2", Actor: "admin", Detail: "replaces a@v1"},
	}
	for _, ev := range evs {
		if err := db.RecordEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	all, err := db.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Kind != understudy.EventPromoted || all[2].Model != "a" || all[0].Detail != "replaces a@v1" || !all[0].Time.Equal(evs[2].Time) {
		t.Errorf("events = %+v", all)
	}
	onlyB, _ := db.Events(ctx, store.EventFilter{Model: "b", Limit: 1})
	if len(onlyB) != 1 || onlyB[0].Kind != understudy.EventPromoted {
		t.Errorf("filtered = %+v", onlyB)
	}
}
