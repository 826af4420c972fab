package capture

import (
	"time"

	"github.com/jackc/pglogrepl"
)

// statusPolicy decides when the Stream sends a standby status update, and what it reports. It
// is pure — the caller passes the time and the state — so that its invariants are tested with a
// fake clock:
//
//   - an update goes out at least every interval, also while the Output's window is full and
//     the Stream reads nothing (so the walsender never times the connection out);
//   - the server's ReplyRequested is answered at once;
//   - a move of the confirmed position goes out within minInterval, and not more often;
//   - the flush position reported is never zero and never below the start position.
type statusPolicy struct {
	interval    time.Duration // StreamConfig.StatusInterval
	minInterval time.Duration // StreamConfig.MinStatusInterval
}

// statusState is what the policy decides on.
type statusState struct {
	lastSent  time.Time     // when the last update was sent (zero: never)
	sentFlush pglogrepl.LSN // the flush position it reported
	flush     pglogrepl.LSN // the flush position an update would report now (statusPositions)
}

// due reports whether an update must be sent now.
func (p statusPolicy) due(now time.Time, st statusState, replyRequested bool) bool {
	since := now.Sub(st.lastSent)
	return replyRequested || since >= p.interval || (st.flush != st.sentFlush && since >= p.minInterval)
}

// nextCheck is when due must be asked again if nothing else happens: when the interval runs out
// — or, while rows await acknowledgement (busy) or the confirmed position has moved, after
// minInterval, so that an acknowledgement is confirmed within minInterval instead of a whole
// interval later.
func (p statusPolicy) nextCheck(now time.Time, st statusState, busy bool) time.Time {
	next := st.lastSent.Add(p.interval)
	if busy || st.flush != st.sentFlush {
		if soon := now.Add(p.minInterval); soon.Before(next) {
			next = soon
		}
	}
	return next
}

// statusPositions returns the positions of an update: flush (and apply) = confirmed, but never
// below start — a zero flush position would make pglogrepl send the write position instead,
// confirming everything received — and write = received, never below flush.
func statusPositions(start, confirmed, received pglogrepl.LSN) (write, flush pglogrepl.LSN) {
	flush = max(confirmed, start)
	return max(received, flush), flush
}

// receiveDeadline is a deadline chosen by nextCheck for waiting on the server. The Stream keeps
// the context that carries it across messages — a new context per message cost about 15% of
// the relay's CPU on a backlog of small transactions — for as long as it holds.
type receiveDeadline struct {
	at       time.Time // the deadline
	lastSent time.Time // statusState.lastSent when it was chosen
	busy     bool      // whether rows awaited acknowledgement then
}

// holds reports whether the deadline is still no later than the one nextCheck would choose now:
// it has not passed, no update was sent since (an update moves the next check later: the old
// deadline would wake the Stream for nothing), and it was chosen while rows awaited
// acknowledgement or no row was offered since (a row makes the Output busy, which brings the
// deadline forward to minInterval).
func (d receiveDeadline) holds(now, lastSent time.Time, offered bool) bool {
	return now.Before(d.at) && d.lastSent.Equal(lastSent) && (d.busy || !offered)
}
