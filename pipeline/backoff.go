package pipeline

import (
	"errors"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
)

// backoff decides what the relay does after a session ended: retry after a pause, or stop.
// It is pure (no clock, no randomness) so that its rules are tested directly.
type backoff struct {
	min, max time.Duration // first and longest pause after a lost connection
	standby  time.Duration // pause of an instance whose slot another one streams
	wait     time.Duration // the next pause after a lost connection
}

// healthyRun is how long a session must have streamed for the backoff to start over.
const healthyRun = time.Minute

func newBackoff(lo, hi, standby time.Duration) *backoff {
	return &backoff{min: lo, max: hi, standby: min(standby, hi), wait: lo}
}

// after returns the pause before the next session, or retry=false when err is one a retry
// cannot fix (it is then the relay's result). ran is how long the session lasted.
func (b *backoff) after(err error, ran time.Duration) (pause time.Duration, retry bool) {
	if ran > healthyRun {
		b.wait = b.min // it worked for a while: start the backoff over
	}
	switch {
	case errors.Is(err, capture.ErrSlotInUse):
		// A hot standby polls at a steady pace instead of backing off: when the active
		// instance dies, its slot is free at once and should be taken over within seconds.
		return b.standby, true
	case errors.Is(err, capture.ErrConnection):
		pause = b.wait
		b.wait = min(b.wait*2, b.max)
		return pause, true
	}
	return 0, false
}

// jitter spreads a pause over [pause/2, pause] with r in [0, 1), so that instances restarted
// together do not reconnect together, and --reconnect-max really is the longest wait.
func jitter(pause time.Duration, r float64) time.Duration {
	return pause/2 + time.Duration(r*float64(pause/2))
}
