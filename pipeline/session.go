package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
	"golang.org/x/sync/errgroup"
)

// session is one replication connection with its own ledger and queue. A new session starts
// from the slot's confirmed position: rows after it are sent again, never skipped.
type session struct {
	stream Stream
	out    *output
	start  capture.LSN

	mu    sync.Mutex
	fatal error // the first failure that must stop the relay (ledger, retention)
	stop  func()
}

// fail records err as the session's result and stops both the stream and the sink: nothing
// more can be confirmed, so reading on would only fill the window.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.fatal == nil {
		s.fatal = err
	}
	s.mu.Unlock()
	s.stop()
}

func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// session streams over one replication connection. On return, the sink has drained (or given
// up after the shutdown timeout) and the last confirmed position was sent to the server. It
// returns nil only when ctx was cancelled and nothing failed.
func (r *Pipeline) session(ctx context.Context) error {
	stream := r.deps.NewStream()
	var result error // what session returns, for the final status update
	defer func() {
		// Let the final status reach what Kafka acknowledged — also when the session stops on
		// an error a restart must start right after (a bad row, a schema change) — unless the
		// connection is gone (no status can be sent).
		if !errors.Is(result, capture.ErrConnection) {
			r.settlePublication()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stream.Close(cctx); err != nil {
			r.log.Warn().Err(err).Msg("final status update failed; the next start resends what was not confirmed")
		}
	}()
	start, err := stream.Open(ctx)
	if err != nil {
		result = capture.ErrConnection // nothing to confirm
		return err
	}
	if r.cfg.AtLeastOnce {
		r.deps.Publisher.BeginSession(record.Source{})
	} else {
		r.deps.Publisher.BeginSession(stream.Source())
	}
	// The sink runs on a context of its own: a shutdown stops the stream at once, but lets the
	// sink deliver what is in flight for up to ShutdownTimeout.
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSink()

	s := &session{stream: stream, out: newOutput(start, r.cfg.Window, &r.ceiling), start: start,
		stop: func() { stopStream(); stopSink() }}
	s.out.onReceived = r.obs.Received
	r.current.Store(s)
	r.obs.SessionStarted()

	// The session's two goroutines, the sink and the stream, in one errgroup so that neither
	// outlives the session. A plain Group, not WithContext: each side is stopped in its own
	// order (the stream at once, the sink after draining), so their results come back on
	// channels and Wait only joins them.
	var g errgroup.Group
	defer func() { _ = g.Wait() }()
	sinkDone := make(chan error, 1)
	g.Go(func() error { sinkDone <- r.deliver(sinkCtx, s); return nil })
	streamDone := make(chan error, 1)
	g.Go(func() error { streamDone <- stream.Run(streamCtx, s.out); return nil })

	var streamErr, sinkErr error
	sinkFinished := false
	select {
	case streamErr = <-streamDone:
	case sinkErr = <-sinkDone:
		sinkFinished = true
		stopStream()
		streamErr = <-streamDone
	}
	// The stream was the only sender: closing the queue lets the sink drain and return.
	close(s.out.queue)
	if !sinkFinished {
		sinkErr = r.drain(sinkDone, stopSink)
	}
	result = sessionResult(ctx, s.failure(), sinkErr, streamErr)
	return result
}

// sessionResult is what a session returns: a failure first, then the sink's error, then the
// stream's; nil when the stream was cancelled by a shutdown.
func sessionResult(ctx context.Context, failure, sinkErr, streamErr error) error {
	switch {
	case failure != nil:
		return failure
	case sinkErr != nil && !errors.Is(sinkErr, context.Canceled):
		return sinkErr
	case errors.Is(streamErr, context.Canceled) && ctx.Err() != nil:
		return nil
	}
	return streamErr
}

// drain waits for the sink to deliver what is in flight, at most the shutdown timeout.
func (r *Pipeline) drain(sinkDone <-chan error, stopSink context.CancelFunc) error {
	select {
	case err := <-sinkDone:
		return err
	case <-r.clock.After(r.cfg.ShutdownTimeout):
		r.log.Warn().Stringer("timeout", r.cfg.ShutdownTimeout).
			Msg("in-flight writes not acknowledged in time; they stay unconfirmed and are sent again at the next start")
		stopSink()
		return <-sinkDone
	}
}

// deliver runs the sink — and, with a Deleter, the janitor between the sink's
// acknowledgements and the ledger — until the queue is drained or ctx is done.
func (r *Pipeline) deliver(ctx context.Context, s *session) error {
	confirm := func(msgs []sink.Message) error {
		if err := s.out.acked(msgs); err != nil {
			r.log.Error().Err(err).Msg("ledger rejected an acknowledgement; stopping")
			s.fail(err)
			return err
		}
		return nil
	}
	if r.deps.Deleter == nil {
		return r.deps.Publisher.Run(ctx, s.out.queue, func(msgs []sink.Message) {
			r.obs.Published(msgs)
			_ = confirm(msgs) // a failure stops the session through s.fail
		})
	}
	j := r.newJanitor(confirm)
	if err := j.prepare(ctx); err != nil {
		s.fail(err)
		return err
	}
	var g errgroup.Group // the janitor: joined below, whatever the sink returns
	g.Go(func() error {
		err := j.run(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			r.log.Error().Err(err).Msg("retention failed; stopping")
			s.fail(err) // nothing more can be confirmed: stop reading
		}
		return err
	})
	sinkErr := r.deps.Publisher.Run(ctx, s.out.queue, func(msgs []sink.Message) {
		r.obs.Published(msgs)
		j.acked(msgs)
	})
	close(j.in) // the sink was its only sender: the janitor finishes what it holds and returns
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return sinkErr
}
