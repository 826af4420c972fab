package checkpoint

import (
	"cmp"
	"fmt"
	"strconv"
)

// Position is where an event stands in the commit order of one replication stream: the commit
// LSN of its transaction and its index among that transaction's outbox rows. It is the value of
// the pgoutbox-position header, which the relay writes as 16 upper-case hex digits of the LSN, a
// dash and 8 hex digits of the index ("0000001600B374D8-00000003"), so that the text sorts like
// the position.
type Position struct {
	LSN   LSN    // commit LSN of the event's transaction
	Index uint32 // 0-based index of the event among its transaction's outbox rows
}

// positionLen is the length of a position's text: 16 digits, a dash, 8 digits.
const positionLen = 16 + 1 + 8

// ParsePosition reads the text of a pgoutbox-position header. It accepts exactly the form the
// relay writes (upper- or lower-case hex, fixed width) and nothing else, so that two texts
// compare as their positions do.
func ParsePosition(s string) (Position, error) {
	if len(s) != positionLen || s[16] != '-' {
		return Position{}, fmt.Errorf("parse position %q: want 16 hex digits, '-', 8 hex digits: %w", s, ErrBadPosition)
	}
	lsn, err := parseHex(s[:16])
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: commit LSN: %w", s, ErrBadPosition)
	}
	idx, err := parseHex(s[17:])
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: index: %w", s, ErrBadPosition)
	}
	return Position{LSN: LSN(lsn), Index: uint32(idx)}, nil
}

// parseHex parses digits that are all hex (strconv alone would also take a sign or "0x").
func parseHex(s string) (uint64, error) {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return 0, ErrBadPosition
		}
	}
	return strconv.ParseUint(s, 16, 64)
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}

// String returns the position in the header's form.
func (p Position) String() string {
	return fmt.Sprintf("%016X-%08X", uint64(p.LSN), p.Index)
}

// Compare returns -1 if p comes before q in commit order, 0 if they are the same event's
// position, and +1 if p comes after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.LSN, q.LSN); c != 0 {
		return c
	}
	return cmp.Compare(p.Index, q.Index)
}

// IsZero reports whether p is the zero Position, which comes before every event's.
func (p Position) IsZero() bool { return p == Position{} }

// Cursors holds, per channel, the position of the last event a consumer applied, and decides
// which events to apply: the de-duplication rule for consumers of one relay's stream.
//
// Kafka holds each channel's events in commit order, so a consumer that applies an event only
// when its position is after the last one it applied on that channel applies every event once:
// a duplicate (a re-sent record after a produce whose outcome was unknown, a Kafka consumer that
// re-reads after a restart, a fan-out server that replays history) carries a position at or
// before the last applied one and is dropped. Positions of different channels are never
// compared. The zero value is ready to use; a Cursors is not safe for concurrent use.
type Cursors struct {
	last map[string]Position
}

// Apply reports whether the event at p on channel is new (after the channel's last applied
// position) and, if so, records p as the channel's last applied position. The caller applies
// the event exactly when Apply returns true.
func (c *Cursors) Apply(channel string, p Position) bool {
	if last, ok := c.last[channel]; ok && p.Compare(last) <= 0 {
		return false
	}
	if c.last == nil {
		c.last = make(map[string]Position)
	}
	c.last[channel] = p
	return true
}

// Last returns the position of the last event applied on channel, and false if none was.
func (c *Cursors) Last(channel string) (Position, bool) {
	p, ok := c.last[channel]
	return p, ok
}

// Set makes p the last applied position of channel, for a consumer that restores its state
// (for example from a bootstrap that returned the channel's state as of p).
func (c *Cursors) Set(channel string, p Position) {
	if c.last == nil {
		c.last = make(map[string]Position)
	}
	c.last[channel] = p
}
