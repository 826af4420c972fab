package sink

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"
)

// failureLogEvery is how often a request that keeps failing is logged again.
const failureLogEvery = 10 * time.Second

// backoff returns the wait before attempt+1: min doubled attempt-1 times, at most max, of
// which the upper half is random (so that retries of many partitions spread out).
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1) //nolint:gosec // jitter needs no cryptographic randomness
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryLog logs a request that keeps failing without flooding the log: a warning at the first
// failure, then at most one every failureLogEvery, and one info line when it succeeds again.
type retryLog struct {
	log      zerolog.Logger
	what     string
	now      func() time.Time
	failures int       // in a row
	since    time.Time // first of them
	logged   time.Time // last warning
}

func newRetryLog(log zerolog.Logger, what string, now func() time.Time) *retryLog {
	return &retryLog{log: log, what: what, now: now}
}

func (r *retryLog) failed(err error, attempt int, wait time.Duration) {
	now := r.now()
	r.failures++
	if r.failures == 1 {
		r.since = now
	} else if now.Sub(r.logged) < failureLogEvery {
		return
	}
	r.logged = now
	r.log.Warn().Err(err).Str("class", classify(err).String()).Int("attempt", attempt).
		Dur("failing_for", now.Sub(r.since)).Stringer("retry_in", wait).
		Msg(r.what + " failed; retrying until it succeeds (nothing is acknowledged meanwhile)")
}

func (r *retryLog) recovered(attempts int) {
	if r.failures == 0 {
		return
	}
	r.log.Info().Int("attempts", attempts).Stringer("failed_for", r.now().Sub(r.since)).
		Msg(r.what + " succeeded again")
	r.failures = 0
}
