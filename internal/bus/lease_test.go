package bus

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A desired-state write fenced by a lease revision lands only while the
// lease is at that revision: once another writer took the lease, the
// deposed holder's writes fail, whatever it believes.
func TestLeaseFencesDesiredWrites(t *testing.T) {
	b := newBus(t)
	ctx := t.Context()
	free, err := b.GetLease(ctx)
	if err != nil || free.Record != nil || free.Revision != 0 {
		t.Fatalf("a new bus's lease = %+v, %v; want free at revision 0", free, err)
	}
	first, err := b.PutLease(ctx, []byte(`{"holder":"hub-0"}`), 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutLease(ctx, []byte(`{"holder":"hub-1"}`), 0, time.Minute); !errors.Is(err, ErrLeaseTaken) {
		t.Fatalf("taking a held lease as if it were free: %v, want ErrLeaseTaken", err)
	}
	put := func(lease uint64, id uint64) error {
		_, err := b.PublishDesiredFenced(ctx, lease, []DesiredPut{{Cluster: "prod-eu", App: "api", State: state(t, "prod-eu", "api", id)}})
		return err
	}
	if err := put(first, 1); err != nil {
		t.Fatalf("the holder's fenced write: %v", err)
	}
	second, err := b.PutLease(ctx, []byte(`{"holder":"hub-1"}`), first, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(first, 2); !errors.Is(err, ErrLeaseTaken) {
		t.Fatalf("a write fenced by the superseded lease revision: %v, want ErrLeaseTaken", err)
	}
	if err := put(second, 2); err != nil {
		t.Fatalf("the new holder's fenced write: %v", err)
	}
	latest, err := b.LatestDesired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || historyID(t, latest[0]) != 2 {
		t.Fatalf("LatestDesired = %+v; want the one app at history id 2 (and never the lease)", latest)
	}
	var scanned int
	if err := b.EachRetainedDesired(ctx, func(DesiredEntry) { scanned++ }); err != nil || scanned != 2 {
		t.Fatalf("EachRetainedDesired saw %d entries (%v); want the 2 desired states, not the lease", scanned, err)
	}
}

// A lease whose holder stops renewing it expires on the server, and the
// next writer takes it with the revision of what the expiry left.
func TestLeaseExpires(t *testing.T) {
	b := newBus(t)
	ctx := t.Context()
	if _, err := b.PutLease(ctx, []byte(`{"holder":"hub-0"}`), 0, time.Second); err != nil {
		t.Fatal(err)
	}
	var expired Lease
	eventually(t, 10*time.Second, func() error {
		var err error
		if expired, err = b.GetLease(ctx); err != nil {
			return err
		}
		if expired.Record != nil {
			return errors.New("still held")
		}
		return nil
	})
	if _, err := b.PutLease(ctx, []byte(`{"holder":"hub-1"}`), expired.Revision, time.Minute); err != nil {
		t.Fatalf("taking the expired lease: %v", err)
	}
	got, err := b.GetLease(ctx)
	if err != nil || string(got.Record) != `{"holder":"hub-1"}` {
		t.Fatalf("lease = %s, %v; want hub-1's record", got.Record, err)
	}
}

// A fan-out larger than one atomic batch is written batch after batch,
// each fenced, and every put's revision is the one the bucket holds.
func TestFencedFanOutSpansBatches(t *testing.T) {
	b := newBus(t)
	ctx := t.Context()
	lease, err := b.PutLease(ctx, []byte(`{"holder":"hub-0"}`), 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	puts := make([]DesiredPut, 2*maxBatch+500)
	for i := range puts {
		cluster := fmt.Sprintf("c%04d", i)
		puts[i] = DesiredPut{Cluster: cluster, App: "api", State: state(t, cluster, "api", 1)}
	}
	revisions, err := b.PublishDesiredFenced(ctx, lease, puts)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := b.LatestDesired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]uint64{}
	for _, e := range latest {
		stored[e.Cluster] = e.Revision
	}
	if len(stored) != len(puts) {
		t.Fatalf("%d keys stored, want %d", len(stored), len(puts))
	}
	for i, p := range puts {
		if revisions[i] == 0 || revisions[i] != stored[p.Cluster] {
			t.Fatalf("put %d (%s): revision %d, the bucket holds it at %d", i, p.Cluster, revisions[i], stored[p.Cluster])
		}
	}
}
