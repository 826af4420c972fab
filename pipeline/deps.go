package pipeline

import (
	"context"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
)

// Stream is one replication session ([capture.Stream]): Open connects and returns the slot's
// confirmed position, Source then identifies the stream (system, timeline and its history,
// slot, routing), Run hands transactions to the Output until ctx is done, Close sends the final
// status update.
type Stream interface {
	Open(ctx context.Context) (capture.LSN, error)
	Source() record.Source
	Run(ctx context.Context, out capture.Output) error
	Close(ctx context.Context) error
	Received() capture.LSN
}

// Publisher writes messages to Kafka in order and calls acked for each acknowledged batch
// ([sink.Publisher]). Run returns when in is closed and drained, or ctx is done. BeginSession
// tells it which stream the next Run publishes, so that it can find, partition by partition,
// what an earlier session already wrote (exactly-once); the zero Source turns that off.
type Publisher interface {
	BeginSession(src record.Source)
	Run(ctx context.Context, in <-chan sink.Message, acked func([]sink.Message)) error
}

// SlotReader reads the slot's figures for the monitor, over a normal connection that it opens
// on first use and reopens after a failure.
type SlotReader interface {
	ReadSlotStatus(ctx context.Context) (capture.Slot, error)
	Close()
}

// PublicationReader checks the publication for the relay's guard: it reads the WAL position
// first, then, in a later statement, the publication's state. It keeps its own connection.
type PublicationReader interface {
	ReadPublication(ctx context.Context) (capture.LSN, capture.PublicationState, error)
	Close()
}

// GapRecorder persists a publication stretch ([capture.RecordGap]) where every later start of
// the relay finds it.
type GapRecorder interface {
	RecordGap(ctx context.Context, g capture.Gap) error
}

// Verifier reads a stretch of WAL again through a publication that nothing alters (the
// recovery publication), for the publication guard to tell a harmless ALTER PUBLICATION from
// one that stopped covering the outbox inserts for a moment.
type Verifier interface {
	// ReadStretch returns the outbox events committed from the slot's confirmed position up to
	// end, a WAL position past every transaction running when it was called, in commit order.
	ReadStretch(ctx context.Context) (end capture.LSN, events []capture.Event, err error)
	// Missing returns the events whose positions Kafka does not hold (bad rows: their
	// dead-letter topic's).
	Missing(ctx context.Context, events []capture.Event) ([]capture.Event, error)
}

// Deleter deletes published outbox rows ([capture.OutboxDeleter]); with one, the relay
// confirms a row only after its DELETE committed (--retention=delete-after-publish).
type Deleter interface {
	Prepare(ctx context.Context) error
	Delete(ctx context.Context, ids []string) ([]string, error)
	Close()
}

// Clock is the time the relay waits on; tests replace it to check waits without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Observer is told what the relay does, for metrics and health. Its methods are called from
// the relay's goroutines and must be quick.
type Observer interface {
	// SessionStarted: a replication session is streaming.
	SessionStarted()
	// SessionEnded: the session ended; err says why (nil on shutdown).
	SessionEnded(err error)
	// Received: a transaction with outbox rows arrived from PostgreSQL; commitTime is its
	// commit's. Together with Published it tells where a row waits: before the relay has it
	// (server, network) or after (Kafka).
	Received(commitTime time.Time)
	// Published: Kafka acknowledged these messages.
	Published(msgs []sink.Message)
	// SlotChecked: one reading of the slot monitor and the alarm it raises.
	SlotChecked(st capture.Slot, level capture.Level, reasons []string)
	// Lost: events may be missing from Kafka (the lost alarm): the publication stopped
	// covering the outbox inserts, or the slot was dropped under the relay. It stops next.
	Lost(err error)
}

// NopObserver observes nothing; embed it to implement only some of Observer's methods.
type NopObserver struct{}

// The methods of NopObserver do nothing.

// SessionStarted implements Observer.
func (NopObserver) SessionStarted() {}

// SessionEnded implements Observer.
func (NopObserver) SessionEnded(error) {}

// Received implements Observer.
func (NopObserver) Received(time.Time) {}

// Published implements Observer.
func (NopObserver) Published([]sink.Message) {}

// SlotChecked implements Observer.
func (NopObserver) SlotChecked(capture.Slot, capture.Level, []string) {}

// Lost implements Observer.
func (NopObserver) Lost(error) {}
