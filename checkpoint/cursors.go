package checkpoint

import "github.com/pgoutbox/pgoutbox/record"

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
	last map[string]record.Position
}

// Apply reports whether the event at p on channel is new (after the channel's last applied
// position) and, if so, records p as the channel's last applied position. The caller applies
// the event exactly when Apply returns true.
func (c *Cursors) Apply(channel string, p record.Position) bool {
	if last, ok := c.last[channel]; ok && p.Compare(last) <= 0 {
		return false
	}
	if c.last == nil {
		c.last = make(map[string]record.Position)
	}
	c.last[channel] = p
	return true
}

// Last returns the position of the last event applied on channel, and false if none was.
func (c *Cursors) Last(channel string) (record.Position, bool) {
	p, ok := c.last[channel]
	return p, ok
}

// Set makes p the last applied position of channel, for a consumer that restores its state
// (for example from a bootstrap that returned the channel's state as of p).
func (c *Cursors) Set(channel string, p record.Position) {
	if c.last == nil {
		c.last = make(map[string]record.Position)
	}
	c.last[channel] = p
}
