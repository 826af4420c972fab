package capture

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSortRows: with commit times, the commit order (then xid, then id); rows without a time
// (committed before tracking was turned on) first, by id; without times, by id, numerically.
func TestSortRows(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time { return time.Unix(1_700_000_000, int64(ms)*int64(time.Millisecond)) }
	rows := []TableRow{
		{ID: "10", FullXID: 7, Commit: at(5)},
		{ID: "3", FullXID: 9, Commit: at(1)}, // a lower xid commits later: by time, it comes first
		{ID: "4", FullXID: 9, Commit: at(1)},
		{ID: "12", FullXID: 8, Commit: at(1)}, // same time, lower xid first
		{ID: "9"},                             // no commit time
		{ID: "100"},
	}
	SortRows(rows)
	var got []string
	for _, r := range rows {
		got = append(got, r.ID)
	}
	if want := "9 100 12 3 4 10"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

// TestUnrecoveredGapError_Lost: a recorded lost slot refuses a start as a lost slot, naming the
// command that fixes it.
func TestUnrecoveredGapError_Lost(t *testing.T) {
	t.Parallel()
	err := error(&UnrecoveredGapError{Gaps: []Gap{{Slot: "s", Kind: GapSlotLost, From: 0x100, Reason: `replication slot "s" was dropped`}}})
	if !errors.Is(err, ErrSlotLost) || errors.Is(err, ErrNoPublication) {
		t.Errorf("matches ErrSlotLost %v, ErrNoPublication %v; want only ErrSlotLost", errors.Is(err, ErrSlotLost), errors.Is(err, ErrNoPublication))
	}
	for _, want := range []string{"slot s lost after 0/100", "was dropped", "pgoutbox recover --apply"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not say %q", err, want)
		}
	}
	pub := error(&UnrecoveredGapError{Gaps: []Gap{{Slot: "s", From: 0x100, To: 0x200, Reason: "dropped"}}})
	if !errors.Is(pub, ErrUnrecoveredGap) || errors.Is(pub, ErrSlotLost) {
		t.Errorf("a publication stretch matches ErrUnrecoveredGap %v, ErrSlotLost %v", errors.Is(pub, ErrUnrecoveredGap), errors.Is(pub, ErrSlotLost))
	}
}
