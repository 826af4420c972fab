package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
)

var guardTable = capture.Table{Schema: "public", Name: "outbox"}

func good(version string) capture.PublicationState {
	return capture.PublicationState{Exists: true, PublishesInserts: true, IncludesTable: true, Version: version}
}

func TestPubGuard_Observe(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		wal     capture.LSN
		st      capture.PublicationState
		ceiling capture.LSN
		gap     bool
	}{
		{100, good("v1"), 0, false},   // the first check proves nothing yet
		{200, good("v1"), 100, false}, // the second proves the first's position
		{300, good("v1"), 200, false},
		{400, good("v2"), 200, true}, // changed and back in between: a new version
	}
	g := &pubGuard{}
	for i, s := range steps {
		ceiling, err := g.observe(s.wal, s.st, t0.Add(time.Duration(i)*time.Second), "pub", guardTable)
		if ceiling != s.ceiling || (err != nil) != s.gap {
			t.Fatalf("step %d: observe = %v, %v; want ceiling %v, gap %v", i, ceiling, err, s.ceiling, s.gap)
		}
		if s.gap {
			if !errors.Is(err, ErrPublicationGap) {
				t.Fatalf("step %d: %v does not wrap ErrPublicationGap", i, err)
			}
			for _, want := range []string{"after 0/C8", "up to 0/190", "pgoutbox recover --apply"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("gap error lacks %q: %v", want, err)
				}
			}
		}
	}
}

func TestPubGuard_Observe_StateProblems(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		st   capture.PublicationState
		want string
	}{
		{"table dropped from the publication", capture.PublicationState{Exists: true, PublishesInserts: true, Version: "v1"}, "does not include"},
		{"inserts no longer published", capture.PublicationState{Exists: true, IncludesTable: true, Version: "v1"}, "does not publish inserts"},
		{"publication dropped", capture.PublicationState{Version: "x"}, "re-create the publication (`pgoutbox setup`)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &pubGuard{}
			if _, err := g.observe(100, good("v1"), time.Now(), "pub", guardTable); err != nil {
				t.Fatal(err)
			}
			_, err := g.observe(200, tt.st, time.Now(), "pub", guardTable)
			if !errors.Is(err, ErrPublicationGap) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("observe = %v, want a gap naming %q", err, tt.want)
			}
		})
	}
}

// fakePublication returns its readings in order, then repeats the last.
type fakePublication struct {
	mu       sync.Mutex
	readings []capture.PublicationState
	wal      capture.LSN
	n        int
}

func (f *fakePublication) ReadPublication(context.Context) (capture.LSN, capture.PublicationState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.readings[min(f.n, len(f.readings)-1)]
	f.n++
	f.wal += 1000
	return f.wal, st, nil
}

func (f *fakePublication) Close() {}

// TestRelay_Run_StopsOnAPublicationGap: with the guard, the stream's rows are confirmed only up
// to what the publication checks proved; a change stops the relay with the lost alarm, and the
// slot is never confirmed past the last proven position.
func TestRelay_Run_StopsOnAPublicationGap(t *testing.T) {
	st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1"}, end: 5000}}}
	pub := &fakePublisher{}
	r, _, obs := testRelay(t, &streams{list: []*fakeStream{st}}, pub, healthySlot(), nil, false)
	fp := &fakePublication{readings: []capture.PublicationState{good("v1"), good("v1"), good("v1"), good("v2")}}
	r.deps.Publication = fp
	r.ceiling.Store(0)
	r.cfg.Publication, r.cfg.Table = "pub", guardTable
	err := runAsync(context.Background(), r)(t)
	if !errors.Is(err, ErrPublicationGap) {
		t.Fatalf("Run = %v, want ErrPublicationGap", err)
	}
	// Checks read WAL 1000, 2000, 3000 (good) and 4000 (changed): proven up to 2000.
	if confirmed, _ := st.finalConfirmed(); confirmed > 2000 {
		t.Fatalf("final status confirmed %v, past the last proven position 2000", confirmed)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.lost == nil {
		t.Fatal("the observer was not told (no lost alarm)")
	}
}

// TestPubGuard_Observe_RowChange: a new version of the publication's own row alone, with the
// inserts covered, is a rowChange to verify (not a gap); accepted, the check that saw it counts
// as a good one; a change of the membership rows stays a gap.
func TestPubGuard_Observe_RowChange(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	row := func(version, rowVersion string) capture.PublicationState {
		st := good(version)
		st.RowVersion = rowVersion
		return st
	}
	g := &pubGuard{}
	for i, st := range []capture.PublicationState{row("v1", "r1"), row("v1", "r1")} {
		if _, err := g.observe(capture.LSN(100*(i+1)), st, t0.Add(time.Duration(i)*time.Second), "pub", guardTable); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	ceiling, err := g.observe(300, row("v1", "r2"), t0.Add(2*time.Second), "pub", guardTable)
	var change *rowChange
	if !errors.As(err, &change) || errors.Is(err, ErrPublicationGap) || ceiling != 100 {
		t.Fatalf("row change: ceiling %v, err %v; want ceiling 100 and a rowChange that is no gap", ceiling, err)
	}
	if lost := change.lost("it did not cover them throughout"); !errors.Is(lost, ErrPublicationGap) ||
		!strings.Contains(lost.Error(), "after 0/64") || !strings.Contains(lost.Error(), "did not cover them throughout") {
		t.Errorf("lost() = %v", lost)
	}
	g.accept(change)
	if ceiling, err = g.observe(400, row("v1", "r2"), t0.Add(3*time.Second), "pub", guardTable); err != nil || ceiling != 300 {
		t.Fatalf("after accept: ceiling %v, err %v; want 300 (the verified check's position)", ceiling, err)
	}
	if _, err = g.observe(500, row("v2", "r2"), t0.Add(4*time.Second), "pub", guardTable); !errors.Is(err, ErrPublicationGap) {
		t.Fatalf("membership change: %v, want a gap", err)
	}
}

// fakeVerifier reads a stretch ending at end and reports missing as not in Kafka.
type fakeVerifier struct {
	mu      sync.Mutex
	end     capture.LSN
	readErr error
	missing []capture.Event
	reads   int
}

func (f *fakeVerifier) ReadStretch(context.Context) (capture.LSN, []capture.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.end, []capture.Event{{ID: "1"}, {ID: "2"}}, f.readErr
}

func (f *fakeVerifier) Missing(context.Context, []capture.Event) ([]capture.Event, error) {
	return f.missing, nil
}

// TestRelay_Run_VerifiesARowChange: only the publication's own row changes (r1 → r2) while the
// inserts stay covered. Nothing missing: the relay streams on, no lost alarm, no gap. An event
// missing, or a stretch that cannot be read again mid-stream: the lost alarm, a gap naming why.
// The same at start (VerifyPublicationAtStart) when it cannot be read: a warning, streams on.
func TestRelay_Run_VerifiesARowChange(t *testing.T) {
	row := func(r string) capture.PublicationState { st := good("v1"); st.RowVersion = r; return st }
	for _, tt := range []struct {
		name    string
		atStart bool
		v       *fakeVerifier
		wantGap string // "" = streams on
	}{
		{"harmless", false, &fakeVerifier{end: 2500}, ""},
		{"an insert filtered", false, &fakeVerifier{end: 2500, missing: []capture.Event{{ID: "7", CommitLSN: 1500}}},
			"did not cover them throughout: 1 of the 2 events committed up to 0/9C4 were not sent (the first: id 7 at"},
		{"cannot read it again", false, &fakeVerifier{readErr: errors.New("no recovery publication")}, "no recovery publication"},
		{"at start, cannot read it again", true, &fakeVerifier{readErr: errors.New("no recovery publication")}, ""},
		{"at start, an insert filtered", true, &fakeVerifier{end: 2500, missing: []capture.Event{{ID: "7"}}}, "newer than the slot's catalog_xmin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1", "2"}, end: 5000}}}
			r, _, obs := testRelay(t, &streams{list: []*fakeStream{st}}, &fakePublisher{}, healthySlot(), nil, false)
			readings := []capture.PublicationState{row("r1"), row("r1"), row("r2")}
			if tt.atStart {
				readings = []capture.PublicationState{row("r1")}
				r.VerifyPublicationAtStart()
			}
			r.deps.Publication = &fakePublication{readings: readings}
			r.deps.Verifier = tt.v
			r.ceiling.Store(0)
			r.cfg.Publication, r.cfg.Table = "pub", guardTable
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait := runAsync(ctx, r)
			if tt.wantGap == "" {
				eventually(t, "the verification and later checks", func() bool {
					tt.v.mu.Lock()
					defer tt.v.mu.Unlock()
					return tt.v.reads == 1 && r.ceiling.Load() >= 2000
				})
				cancel()
				if err := wait(t); err != nil {
					t.Fatalf("Run = %v, want a clean exit", err)
				}
				obs.mu.Lock()
				defer obs.mu.Unlock()
				if obs.lost != nil {
					t.Fatalf("lost alarm for a harmless change: %v", obs.lost)
				}
				return
			}
			err := wait(t)
			if !errors.Is(err, ErrPublicationGap) || !strings.Contains(err.Error(), tt.wantGap) {
				t.Fatalf("Run = %v, want a gap naming %q", err, tt.wantGap)
			}
			if confirmed, _ := st.finalConfirmed(); confirmed > 2000 {
				t.Errorf("final status confirmed %v, past the last proven position", confirmed)
			}
		})
	}
}
