package checkpoint

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestParseSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Snapshot
		err  bool
	}{
		{in: "10:20:", want: Snapshot{Xmin: 10, Xmax: 20}},
		{in: "10:10:", want: Snapshot{Xmin: 10, Xmax: 10}},
		{in: "10:20:10,14,15", want: Snapshot{Xmin: 10, Xmax: 20, Xip: []uint64{10, 14, 15}}},
		{in: "10:20:15,10,15", want: Snapshot{Xmin: 10, Xmax: 20, Xip: []uint64{10, 15}}},
		{in: "4294967300:4294967310:4294967301", // past the first epoch
			want: Snapshot{Xmin: 4294967300, Xmax: 4294967310, Xip: []uint64{4294967301}}},
		{in: "", err: true},
		{in: "10:20", err: true},
		{in: "10:20:1:2", err: true},
		{in: "20:10:", err: true},                                     // xmin above xmax
		{in: "10:20:9", err: true},                                    // in-progress below xmin
		{in: "10:20:20", err: true},                                   // in-progress at xmax
		{in: "10:20:12,", err: true},                                  // empty id
		{in: "-1:20:", err: true},                                     // sign
		{in: " 10:20:", err: true},                                    // space
		{in: "10:20:0x11", err: true},                                 // not decimal
		{in: "18446744073709551616:18446744073709551617:", err: true}, // out of range
	} {
		got, err := ParseSnapshot(tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Errorf("ParseSnapshot(%q) = %v, %v; want ErrBadSnapshot", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.Xmin != tc.want.Xmin || got.Xmax != tc.want.Xmax || !slices.Equal(got.Xip, tc.want.Xip) {
			t.Errorf("ParseSnapshot(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSnapshot_Visible(t *testing.T) {
	t.Parallel()
	s, err := ParseSnapshot("100:110:100,105")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		xid  uint64
		want bool
	}{
		{1, true},
		{99, true},   // below xmin
		{100, false}, // xmin itself, in progress
		{101, true},  // committed between xmin and xmax
		{105, false}, // in progress
		{109, true},
		{110, false}, // xmax: not yet started when the snapshot was taken
		{1 << 40, false},
	} {
		if got := s.Visible(tc.xid); got != tc.want {
			t.Errorf("%v.Visible(%d) = %v, want %v", s, tc.xid, got, tc.want)
		}
	}
}

// TestSnapshot_Property models PostgreSQL's transaction bookkeeping: ids are handed out in
// order, transactions end (commit) in any order, and a snapshot taken at a moment has xmin =
// the lowest id still running (or the next id), xmax = the next id, xip = the running ones.
// Visible must then say exactly "committed before the snapshot" for every id ever handed out.
func TestSnapshot_Property(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for run := range 500 {
		next := uint64(1<<32 - 50 + rng.IntN(100)) // around an epoch boundary, for good measure
		first := next
		running := map[uint64]bool{}
		committed := map[uint64]bool{}
		for range 200 {
			switch {
			case rng.IntN(2) == 0 || len(running) == 0:
				running[next] = true
				next++
			default:
				ids := slices.Sorted(mapKeys(running))
				x := ids[rng.IntN(len(ids))]
				delete(running, x)
				committed[x] = true
			}
			if rng.IntN(10) != 0 {
				continue
			}
			snap := modelSnapshot(running, next)
			parsed, err := ParseSnapshot(snap.String())
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
			for x := first; x < next+5; x++ {
				if got := parsed.Visible(x); got != committed[x] {
					t.Fatalf("run %d: snapshot %v: Visible(%d) = %v, committed before it = %v", run, parsed, x, got, committed[x])
				}
			}
		}
	}
}

func modelSnapshot(running map[uint64]bool, next uint64) Snapshot {
	ids := slices.Sorted(mapKeys(running))
	s := Snapshot{Xmin: next, Xmax: next, Xip: ids}
	if len(ids) > 0 {
		s.Xmin = ids[0]
	}
	return s
}

func mapKeys(m map[uint64]bool) func(func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// FuzzParseSnapshot checks that every accepted text round-trips through String and that
// Visible agrees with its definition.
func FuzzParseSnapshot(f *testing.F) {
	f.Add("10:20:10,14,15", uint64(14))
	f.Add("10:20:", uint64(9))
	f.Add("4294967300:4294967310:4294967301", uint64(4294967305))
	f.Fuzz(func(t *testing.T, text string, xid uint64) {
		s, err := ParseSnapshot(text)
		if err != nil {
			return
		}
		again, err := ParseSnapshot(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("%q -> %v does not round-trip: %v, %v", text, s, again, err)
		}
		want := xid < s.Xmin || (xid < s.Xmax && !slices.Contains(s.Xip, xid))
		if got := s.Visible(xid); got != want {
			t.Fatalf("%v.Visible(%d) = %v, want %v", s, xid, got, want)
		}
	})
}
