package checkpoint

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParsePosition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Position
		err  bool
	}{
		{in: "0000001600B374D8-00000003", want: Position{LSN: 0x1600B374D8, Index: 3}},
		{in: "0000000000000000-00000000", want: Position{}},
		{in: "FFFFFFFFFFFFFFFF-FFFFFFFF", want: Position{LSN: ^LSN(0), Index: ^uint32(0)}},
		{in: "0000001600b374d8-0000000a", want: Position{LSN: 0x1600B374D8, Index: 10}},
		{in: "", err: true},
		{in: "16/B374D848", err: true},
		{in: "0000001600B374D8-0000003", err: true},   // short index
		{in: "0000001600B374D8-000000003", err: true}, // long index
		{in: "0000001600B374D8_00000003", err: true},  // wrong separator
		{in: "+000001600B374D8-00000003", err: true},  // sign
		{in: "0x00001600B374D8-00000003", err: true},  // prefix
		{in: "0000001600B374D8-0000000G", err: true},
	} {
		got, err := ParsePosition(tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadPosition) {
				t.Errorf("ParsePosition(%q) = %v, %v; want ErrBadPosition", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != strings.ToUpper(tc.in) {
			t.Errorf("ParsePosition(%q).String() = %q", tc.in, s)
		}
	}
}

func TestPosition_Compare(t *testing.T) {
	t.Parallel()
	a := Position{LSN: 0x100, Index: 5}
	for _, tc := range []struct {
		q    Position
		want int
	}{
		{Position{LSN: 0x100, Index: 5}, 0},
		{Position{LSN: 0x100, Index: 6}, -1},
		{Position{LSN: 0x100, Index: 4}, 1},
		{Position{LSN: 0xFF, Index: 9}, 1},   // lower LSN wins over a higher index
		{Position{LSN: 0x101, Index: 0}, -1}, // higher LSN wins over a lower index
	} {
		if got := a.Compare(tc.q); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", a, tc.q, got, tc.want)
		}
	}
}

func TestCursors_Apply(t *testing.T) {
	t.Parallel()
	p := func(lsn LSN, i uint32) Position { return Position{LSN: lsn, Index: i} }
	var c Cursors
	steps := []struct {
		channel string
		pos     Position
		want    bool
	}{
		{"a", p(10, 0), true},
		{"a", p(10, 0), false}, // duplicate
		{"a", p(10, 1), true},
		{"b", p(5, 0), true},  // channels are independent: older than a's, still new on b
		{"a", p(9, 7), false}, // before the last applied: a replay
		{"a", p(11, 0), true},
		{"b", p(5, 0), false},
		{"a", p(10, 1), false},
	}
	for i, s := range steps {
		if got := c.Apply(s.channel, s.pos); got != s.want {
			t.Errorf("step %d: Apply(%q, %v) = %v, want %v", i, s.channel, s.pos, got, s.want)
		}
	}
	if last, ok := c.Last("a"); !ok || last != p(11, 0) {
		t.Errorf("Last(a) = %v, %v", last, ok)
	}
	if _, ok := c.Last("c"); ok {
		t.Error("Last(c) reports a position for a channel never applied")
	}
	c.Set("c", p(20, 0))
	if c.Apply("c", p(19, 0)) || !c.Apply("c", p(20, 1)) {
		t.Error("Set did not make the position the channel's last applied one")
	}
}

// TestCursors_Property feeds each channel's events in commit order with random duplicates and
// replays of earlier events mixed in, and checks that Apply accepts each event exactly once, in
// order.
func TestCursors_Property(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		var c Cursors
		sent := map[string][]Position{} // per channel, in commit order
		applied := map[string][]Position{}
		var lsn LSN
		for range 300 {
			ch := string(rune('a' + rng.IntN(4)))
			if len(sent[ch]) > 0 && rng.IntN(3) == 0 { // replay an earlier event
				old := sent[ch][rng.IntN(len(sent[ch]))]
				if c.Apply(ch, old) {
					t.Fatalf("run %d: replay of %v on %s applied", run, old, ch)
				}
				continue
			}
			lsn += LSN(1 + rng.IntN(100))
			pos := Position{LSN: lsn, Index: uint32(rng.IntN(3))}
			sent[ch] = append(sent[ch], pos)
			if !c.Apply(ch, pos) {
				t.Fatalf("run %d: new event %v on %s dropped", run, pos, ch)
			}
			applied[ch] = append(applied[ch], pos)
		}
		for ch, want := range sent {
			if len(applied[ch]) != len(want) {
				t.Fatalf("run %d: channel %s applied %d of %d events", run, ch, len(applied[ch]), len(want))
			}
		}
	}
}

// FuzzParsePosition checks that every accepted text round-trips, and that positions compare as
// their texts do (the header's promise: it sorts lexicographically in commit order).
func FuzzParsePosition(f *testing.F) {
	f.Add("0000001600B374D8-00000003", "0000001600B374D8-00000004")
	f.Add("FFFFFFFFFFFFFFFF-FFFFFFFF", "0000000000000000-00000000")
	f.Add("16/B374D848", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, errA := ParsePosition(a)
		pb, errB := ParsePosition(b)
		if errA != nil || errB != nil {
			return
		}
		if pa.String() != strings.ToUpper(a) {
			t.Fatalf("%q parsed to %v", a, pa)
		}
		if again, err := ParsePosition(pa.String()); err != nil || again != pa {
			t.Fatalf("%v does not round-trip: %v, %v", pa, again, err)
		}
		if got, want := pa.Compare(pb), strings.Compare(pa.String(), pb.String()); got != want {
			t.Fatalf("Compare(%v, %v) = %d, text order %d", pa, pb, got, want)
		}
	})
}
