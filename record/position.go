package record

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
)

// LSN is a PostgreSQL WAL position. It has the same bits as pglogrepl.LSN; this package keeps
// its own type so that it imports no driver.
type LSN uint64

// String formats l as PostgreSQL does ("16/B374D848"), so that logs and headers can be compared
// with pg_replication_slots and pg_current_wal_lsn().
func (l LSN) String() string { return string(l.Append(nil)) }

// Append appends l in PostgreSQL's form ("16/B374D848") to b.
func (l LSN) Append(b []byte) []byte {
	b = appendHex(b, uint64(l)>>32, 0)
	b = append(b, '/')
	return appendHex(b, uint64(l)&0xFFFF_FFFF, 0)
}

// Position is where a record stands in the commit order of one replication stream: the commit
// LSN of its transaction and its index among that transaction's outbox rows. Its text is the
// value of [HeaderPosition]: 16 upper-case hex digits of the LSN, a dash and 8 hex digits of
// the index ("0000001600B374D8-00000003"), so that the text sorts like the position.
type Position struct {
	LSN   LSN    // commit LSN of the record's transaction
	Index uint32 // 0-based index of the record among its transaction's outbox rows
}

// positionLen is the length of a position's text: 16 digits, a dash, 8 digits.
const positionLen = 16 + 1 + 8

// ErrBadPosition means a text is not a position in the form [Position.String] writes.
var ErrBadPosition = errors.New("record: malformed position")

// ParsePosition reads the text of a [HeaderPosition] header. It accepts the form capture writes
// (fixed width, 16 hex digits, '-', 8 hex digits), in upper- or lower-case hex, and nothing
// else, so that two texts compare as their positions do once upper-cased.
func ParsePosition(s string) (Position, error) { return parsePosition(s, false) }

// ParseExactPosition is [ParsePosition] that accepts upper-case hex only: exactly the text
// capture writes, so that positions accepted by it also compare as plain strings. The sink uses
// it to tell capture's records from another producer's.
func ParseExactPosition(s string) (Position, error) { return parsePosition(s, true) }

func parsePosition(s string, upperOnly bool) (Position, error) {
	if len(s) != positionLen || s[16] != '-' {
		return Position{}, fmt.Errorf("parse position %q: want 16 hex digits, '-', 8 hex digits: %w", s, ErrBadPosition)
	}
	lsn, ok := parseHex(s[:16], upperOnly)
	if !ok {
		return Position{}, fmt.Errorf("parse position %q: commit LSN: %w", s, ErrBadPosition)
	}
	idx, ok := parseHex(s[17:], upperOnly)
	if !ok {
		return Position{}, fmt.Errorf("parse position %q: index: %w", s, ErrBadPosition)
	}
	return Position{LSN: LSN(lsn), Index: uint32(idx)}, nil
}

// parseHex parses digits that are all hex (strconv alone would also take a sign or "0x").
func parseHex(s string, upperOnly bool) (uint64, bool) {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i], upperOnly) {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

func isHexDigit(c byte, upperOnly bool) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || !upperOnly && 'a' <= c && c <= 'f'
}

// String returns the position in the header's form.
func (p Position) String() string { return string(p.Append(make([]byte, 0, positionLen))) }

// Append appends the position in the header's form to b.
func (p Position) Append(b []byte) []byte {
	b = appendHex(b, uint64(p.LSN), 16)
	b = append(b, '-')
	return appendHex(b, uint64(p.Index), 8)
}

// Compare returns -1 if p comes before q in commit order, 0 if they are the same record's
// position, and +1 if p comes after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.LSN, q.LSN); c != 0 {
		return c
	}
	return cmp.Compare(p.Index, q.Index)
}

// RepublishedPosition is the position of the rank-th (0-based) record that `pgoutbox recover`
// republishes from the outbox table after the slot was lost, the new slot starting at start
// (its consistent point). The rows' commit LSNs are gone with the WAL, so the position is not a
// commit position: its LSN is start-1 and its index the rank in the republishing order. It
// sorts after every position of the lost slot's stream (each of its commits lies before start)
// and before every position the new slot streams (each of its commits lies at or after start),
// so consumers' rule — apply a channel's records in position order, drop any at or below the
// last applied — keeps working across the recovery. Such records carry [HeaderRepublished].
func RepublishedPosition(start LSN, rank uint32) Position {
	return Position{LSN: start - 1, Index: rank}
}

// IsZero reports whether p is the zero Position, which comes before every record's.
func (p Position) IsZero() bool { return p == Position{} }

// appendHex appends v in upper-case hex, zero-padded to width digits.
func appendHex(b []byte, v uint64, width int) []byte {
	const digits = "0123456789ABCDEF"
	var tmp [16]byte
	i := len(tmp)
	for v > 0 || i == len(tmp) {
		i--
		tmp[i] = digits[v&0xF]
		v >>= 4
	}
	for len(tmp)-i < width {
		i--
		tmp[i] = '0'
	}
	return append(b, tmp[i:]...)
}
