package checkpoint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Snapshot is a PostgreSQL MVCC snapshot as pg_current_snapshot() returns it: the text
// "xmin:xmax:xip,xip,..." of 64-bit transaction ids (xid8, the numbering of
// pg_current_xact_id() and of the pgoutbox-xid header).
//
// A client that read its state in a REPEATABLE READ transaction whose first statement took the
// snapshot has seen exactly the transactions Visible reports, and no other: it applies an event
// only if its transaction is not Visible. See docs/fan-out.md.
type Snapshot struct {
	Xmin uint64   // every transaction below it had ended (committed or aborted)
	Xmax uint64   // every transaction at or above it had not started (or not been assigned an id)
	Xip  []uint64 // transactions in [Xmin, Xmax) still in progress, sorted and without repeats
}

// ParseSnapshot reads the text of pg_current_snapshot() (or txid_current_snapshot()):
// "xmin:xmax:" with an empty in-progress list, or "xmin:xmax:xip1,xip2,...". It checks what
// PostgreSQL guarantees: xmin <= xmax, and each in-progress id in [xmin, xmax).
func ParseSnapshot(s string) (Snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip,...: %w", s, ErrBadSnapshot)
	}
	xmin, err := parseXID(parts[0])
	if err != nil {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmin: %w", s, err)
	}
	xmax, err := parseXID(parts[1])
	if err != nil {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", s, err)
	}
	if xmin > xmax {
		return Snapshot{}, fmt.Errorf("parse snapshot %q: xmin %d is above xmax %d: %w", s, xmin, xmax, ErrBadSnapshot)
	}
	snap := Snapshot{Xmin: xmin, Xmax: xmax}
	if parts[2] == "" {
		return snap, nil
	}
	for _, f := range strings.Split(parts[2], ",") {
		xid, err := parseXID(f)
		if err != nil {
			return Snapshot{}, fmt.Errorf("parse snapshot %q: in-progress id: %w", s, err)
		}
		if xid < xmin || xid >= xmax {
			return Snapshot{}, fmt.Errorf("parse snapshot %q: in-progress id %d is outside [xmin, xmax): %w", s, xid, ErrBadSnapshot)
		}
		snap.Xip = append(snap.Xip, xid)
	}
	slices.Sort(snap.Xip)
	snap.Xip = slices.Compact(snap.Xip)
	return snap, nil
}

// parseXID parses one decimal transaction id (digits only: no sign, no spaces).
func parseXID(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal transaction id: %w", s, ErrBadSnapshot)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range: %w", s, ErrBadSnapshot)
	}
	return v, nil
}

// Visible reports whether the transaction xid (a full 64-bit id, as in the pgoutbox-xid header)
// had committed before the snapshot was taken, so that a read in the snapshot saw its changes:
// xid < Xmin, or xid < Xmax and xid not in Xip. (An aborted transaction is never decoded, so
// its events never reach a consumer to ask.)
func (s Snapshot) Visible(xid uint64) bool {
	if xid < s.Xmin {
		return true
	}
	if xid >= s.Xmax {
		return false
	}
	_, inProgress := slices.BinarySearch(s.Xip, xid)
	return !inProgress
}

// String returns the snapshot in pg_current_snapshot()'s text form.
func (s Snapshot) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.Xmin, 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(s.Xmax, 10))
	b.WriteByte(':')
	for i, x := range s.Xip {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(x, 10))
	}
	return b.String()
}
