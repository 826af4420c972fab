package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// Defaults of the relay's settings; pgoutbox's flags and the benchmark use these.
const (
	DefaultMaxInflightEvents = 20000
	DefaultMaxInflightBytes  = 64 << 20
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultReconnectFirst    = 500 * time.Millisecond
	DefaultReconnectMax      = 30 * time.Second
	DefaultStandbyPoll       = 2 * time.Second
	DefaultMonitorInterval   = 5 * time.Second
	DefaultPublicationCheck  = time.Second
	DefaultJanitorBatch      = 1000
)

// Config is what the pipeline needs of pgoutbox's configuration. Durations left at zero take
// the defaults named on each field; Window has no default (the command sets it).
type Config struct {
	// Slot names the replication slot, in log lines and alarm advice.
	Slot string
	// Publication and Table name what the publication guard verifies.
	Publication string
	Table       capture.Table
	// PublicationInterval is how often the publication is checked. Confirmation trails the
	// stream by one to two intervals (see pubGuard). Default 1s.
	PublicationInterval time.Duration
	// Window bounds the rows and bytes in flight between PostgreSQL and Kafka. No default
	// here (DefaultMaxInflightEvents and DefaultMaxInflightBytes are the command's).
	Window checkpoint.Limits
	// ShutdownTimeout is how long a shutdown waits for in-flight writes. Zero: no wait.
	ShutdownTimeout time.Duration
	// ReconnectFirst is the first pause after a lost connection. Default 500ms.
	ReconnectFirst time.Duration
	// ReconnectMax is the longest pause between reconnection attempts. Default 30s.
	ReconnectMax time.Duration
	// StandbyPoll is how often an instance whose slot is streamed by another tries again.
	// Default 2s (at most ReconnectMax).
	StandbyPoll time.Duration
	// MonitorInterval is how often the slot is checked. Default 5s.
	MonitorInterval time.Duration
	// Thresholds decide the slot's alarm level.
	Thresholds capture.Thresholds
	// JanitorBatch is the most rows one DELETE removes, with a Deleter. Default 1000.
	JanitorBatch int
	// AtLeastOnce turns exactly-once off: every row after the slot's confirmed position is
	// sent again after a restart, even when Kafka already holds it. For a database restored
	// from a file-system copy, whose history went back (see sink's tail guards).
	AtLeastOnce bool
}

func (c *Config) fillDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReconnectFirst, DefaultReconnectFirst)
	def(&c.ReconnectMax, DefaultReconnectMax)
	def(&c.StandbyPoll, DefaultStandbyPoll)
	def(&c.MonitorInterval, DefaultMonitorInterval)
	def(&c.PublicationInterval, DefaultPublicationCheck)
	if c.JanitorBatch <= 0 {
		c.JanitorBatch = DefaultJanitorBatch
	}
}

// Deps are the relay's connections to the world. NewStream, Publisher and Slots are required.
type Deps struct {
	// NewStream returns the stream of a new session (one replication connection each).
	NewStream func() Stream
	Publisher Publisher
	Slots     SlotReader
	// Publication, when set, guards confirmation against a publication that stops covering
	// the outbox (the command always sets it; unit tests of other paths leave it out).
	Publication PublicationReader
	// Gaps, when set, records the stretch that the publication guard finds.
	Gaps GapRecorder
	// Verifier, when set, lets the publication guard verify from the WAL a change of the
	// publication's own row that leaves it covering the outbox inserts; without it, such a
	// change is a stretch.
	Verifier Verifier
	// Deleter, when set, turns on --retention=delete-after-publish.
	Deleter Deleter
	// AwaitSink, when set, runs before the first session and returns once the sink can publish
	// (nil), or with an error that stops the relay (ctx.Err() on shutdown). Meanwhile the slot
	// monitor and the publication guard run, and nothing is read or confirmed: a relay started
	// while Kafka is down waits for it, as a running one does.
	AwaitSink func(ctx context.Context) error
	Observer  Observer // default: NopObserver
	Clock     Clock    // default: the real clock
	// Log is the base logger; the relay adds component=relay, the janitor component=janitor
	// and the monitor component=monitor.
	Log zerolog.Logger
}

// Pipeline runs the pipeline. Build it with [New]; it is single-use.
type Pipeline struct {
	cfg   Config
	deps  Deps
	log   zerolog.Logger
	clock Clock
	obs   Observer

	current atomic.Pointer[session] // the streaming session, for Progress and the monitor
	ceiling atomic.Uint64           // the publication guard's proven position: confirm no further
	guard   guardState

	verifyAtStart bool // see VerifyPublicationAtStart
}

// Validate reports every problem of c at once: a window that admits nothing (a zero Window
// would stall the first row forever), a missing slot name, negative durations or batch size.
// Zero durations are fine: they take their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Slot == "" {
		errs = append(errs, errors.New("slot name is empty; set the replication slot's name"))
	}
	if err := c.Window.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("window: %w", err))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"publication check interval", c.PublicationInterval}, {"shutdown timeout", c.ShutdownTimeout},
		{"first reconnect pause", c.ReconnectFirst}, {"longest reconnect pause", c.ReconnectMax},
		{"standby poll", c.StandbyPoll}, {"monitor interval", c.MonitorInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %s; set it to 0 (the default) or more", d.name, d.v))
		}
	}
	if c.JanitorBatch < 0 {
		errs = append(errs, fmt.Errorf("janitor batch is %d; set it to 0 (the default) or more", c.JanitorBatch))
	}
	if len(errs) > 0 {
		return fmt.Errorf("pipeline config: %w", errors.Join(errs...))
	}
	return nil
}

// New returns a pipeline with cfg's defaults filled in, or every problem of cfg (see
// [Config.Validate]) and of deps at once.
func New(cfg Config, deps Deps) (*Pipeline, error) {
	errs := []error{cfg.Validate()}
	if deps.NewStream == nil || deps.Publisher == nil || deps.Slots == nil {
		errs = append(errs, errors.New("pipeline deps: NewStream, Publisher and Slots are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	if deps.Observer == nil {
		deps.Observer = NopObserver{}
	}
	if deps.Clock == nil {
		deps.Clock = realClock{}
	}
	r := &Pipeline{cfg: cfg, deps: deps, log: deps.Log.With().Str("component", "relay").Logger(),
		clock: deps.Clock, obs: deps.Observer}
	if deps.Publication == nil {
		r.ceiling.Store(math.MaxUint64) // no guard: the ledger alone decides
	}
	return r, nil
}

// Run streams sessions and monitors the slot until ctx is cancelled, which is a clean exit
// (nil), or until something a retry cannot fix happens: a lost slot, a bad row under
// --on-bad-row=stop, a ledger or retention failure. That error is returned; the process must
// exit non-zero so that a supervisor notices.
func (r *Pipeline) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.monitor(gctx) })
	g.Go(func() error { return r.guardPublication(gctx) })
	g.Go(func() error { return r.sessions(gctx) })
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, capture.ErrSlotLost) {
		r.recordLostSlot(ctx, err)
	}
	return err
}

// sessions runs one session after another until ctx is done (ctx.Err()) or a session fails
// in a way a retry cannot fix.
func (r *Pipeline) sessions(ctx context.Context) error {
	if r.deps.AwaitSink != nil {
		if err := r.deps.AwaitSink(ctx); err != nil {
			return err
		}
	}
	b := newBackoff(r.cfg.ReconnectFirst, r.cfg.ReconnectMax, r.cfg.StandbyPoll)
	for {
		started := r.clock.Now()
		err := r.session(ctx)
		if errors.Is(err, capture.ErrNoSlot) && r.current.Load() != nil {
			// The slot existed when a session opened: it was dropped under the relay, and what
			// was committed after the last confirmed position may never reach Kafka. That is
			// the lost alarm, not a first start's "create it with setup".
			err = capture.SlotLostError(capture.Slot{Name: r.cfg.Slot}, r.Progress().Confirmed)
			r.lost(err)
		}
		r.obs.SessionEnded(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pause, retry := b.after(err, r.clock.Now().Sub(started))
		if !retry {
			if err == nil {
				// A session ends without error only on shutdown; anything else is a bug that
				// must not pass as a clean exit.
				err = errors.New("pipeline: streaming stopped without an error or a shutdown")
			}
			return err
		}
		pause = jitter(pause, rand.Float64()) //nolint:gosec // jitter needs no cryptographic randomness
		if errors.Is(err, capture.ErrSlotInUse) {
			r.log.Info().Err(err).Stringer("retry_in", pause).Msg("standing by: another instance streams the slot")
		} else {
			r.log.Warn().Err(err).Stringer("retry_in", pause).Msg("replication connection lost; reconnecting")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.clock.After(pause):
		}
	}
}

// Progress is where the current session stands, for metrics.
type Progress struct {
	Confirmed     capture.LSN   // the position last made safe to confirm
	Received      capture.LSN   // the newest position received from the server
	InFlightRows  int           // rows read and not yet acknowledged by Kafka
	InFlightBytes int64         // their approximate bytes
	OldestUnacked time.Duration // age of the oldest commit not acknowledged; 0 when none
}

// Progress reports the current (or last) session's figures; zero before the first session.
// It is safe to call from any goroutine.
func (r *Pipeline) Progress() Progress {
	s := r.current.Load()
	if s == nil {
		return Progress{}
	}
	p := Progress{Confirmed: max(s.out.Confirmed(), s.start), Received: s.stream.Received()}
	p.InFlightRows, p.InFlightBytes = s.out.tracker.InFlight()
	if t, ok := s.out.tracker.OldestUnacked(); ok {
		p.OldestUnacked = r.clock.Now().Sub(t)
	}
	return p
}
