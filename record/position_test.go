package record

import (
	"errors"
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

// TestParseExactPosition: upper-case hex of fixed width only (the cases the sink's own parser
// had), so that accepted texts compare as strings in commit order.
func TestParseExactPosition(t *testing.T) {
	t.Parallel()
	if p, err := ParseExactPosition("00000016B374D848-00000003"); err != nil || p != (Position{LSN: 0x16B374D848, Index: 3}) {
		t.Errorf("ParseExactPosition = %v, %v", p, err)
	}
	for _, bad := range []string{"", "16/B374D848", "00000016b374d848-00000003", "00000016B374D848_00000003", "00000016B374D848-0000003", "00000016B374D848-0000000a"} {
		if p, err := ParseExactPosition(bad); !errors.Is(err, ErrBadPosition) {
			t.Errorf("ParseExactPosition(%q) = %v, %v; want ErrBadPosition", bad, p, err)
		}
	}
}

func TestLSN_String(t *testing.T) {
	t.Parallel()
	for lsn, want := range map[LSN]string{0: "0/0", 0x16B374D848: "16/B374D848", ^LSN(0): "FFFFFFFF/FFFFFFFF", 0x1_0000_0000: "1/0"} {
		if got := lsn.String(); got != want {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(lsn), got, want)
		}
	}
}

func TestRepublishedPosition(t *testing.T) {
	t.Parallel()
	start := LSN(0x1_6B374D848)
	lost := Position{LSN: start - 24, Index: 1 << 31} // the last commit before the new slot's start
	streamed := Position{LSN: start}                  // the first commit the new slot can stream
	first, last := RepublishedPosition(start, 0), RepublishedPosition(start, 1<<32-1)
	if lost.Compare(first) >= 0 || first.Compare(last) >= 0 || last.Compare(streamed) >= 0 {
		t.Errorf("want %s < %s < %s < %s", lost, first, last, streamed)
	}
	if lost.String() >= first.String() || last.String() >= streamed.String() {
		t.Errorf("texts do not sort like the positions: %s %s %s %s", lost, first, last, streamed)
	}
}
