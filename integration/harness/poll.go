package harness

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Eventually calls cond every interval until it returns nil, and then returns nil. A non-nil
// error from cond means "not yet": the last one is kept for the error Eventually returns when
// the timeout passes (or ctx ends) first, with the time waited. cond can end the polling at once by returning an
// error made with Stop (e.g. "the process exited"); Eventually returns that error unwrapped.
// cond gets a context that ends at the deadline.
//
// It is the one polling loop of the harness, the integration tests and the benchmark: a
// failure says what was last seen, and nothing sleeps once the condition holds.
func Eventually(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		if last == nil || ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			last = err // a query cut short by the deadline says less than the one before it
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", time.Since(start).Round(100*time.Millisecond), last)
		case <-tick.C:
		}
	}
}

// Stop wraps an error so that it ends Eventually's polling at once: there is no point in
// waiting any longer (e.g. the process being watched has exited).
func Stop(err error) error { return stopError{err} }

type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }
func (e stopError) Unwrap() error { return e.err }
