package pipeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/record"
	"github.com/pgoutbox/pgoutbox/sink"
)

// txn is a scripted transaction: its rows' ids and its end LSN.
type txn struct {
	ids []string
	end capture.LSN
}

// fakeStream plays a script into the Output, then waits for ctx (or fails with runErr).
type fakeStream struct {
	start   capture.LSN
	openErr error
	txns    []txn
	runErr  error // returned once the script is played; nil = wait for ctx

	mu        sync.Mutex
	closed    bool
	confirmed capture.LSN // Output.Confirmed() at Close: the final status update
	out       capture.Output
}

func (s *fakeStream) Open(context.Context) (capture.LSN, error) { return s.start, s.openErr }

func (s *fakeStream) Run(ctx context.Context, out capture.Output) error {
	s.mu.Lock()
	s.out = out
	s.mu.Unlock()
	for _, t := range s.txns {
		tok := out.Begin(capture.Begin{CommitTime: time.Now()})
		for i, id := range t.ids {
			ev := capture.Event{ID: id, Channel: "ch", Index: i, Payload: []byte(`{}`)}
			for {
				ok, err := out.Offer(tok, ev)
				if err != nil {
					return err
				}
				if ok {
					break
				}
				select {
				case <-out.Room():
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if err := out.Commit(tok, capture.Commit{EndLSN: t.end}); err != nil {
			return err
		}
	}
	if s.runErr != nil {
		return s.runErr
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *fakeStream) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.out != nil {
		s.confirmed = s.out.Confirmed()
	}
	return nil
}

func (s *fakeStream) Received() capture.LSN { return 0 }

func (s *fakeStream) Source() record.Source {
	return record.Source{SystemID: "7000000000000000001", Timeline: 1, Slot: "s", Routing: "00000000"}
}

func (s *fakeStream) finalConfirmed() (capture.LSN, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed, s.closed
}

// streams hands out scripted streams in order; after the last it repeats it.
type streams struct {
	mu   sync.Mutex
	list []*fakeStream
	used int
}

func (s *streams) next() Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.list[min(s.used, len(s.list)-1)]
	s.used++
	return st
}

// fakePublisher acknowledges what it reads, one message at a time. hold, when set, blocks each
// acknowledgement until a value arrives on it (or the publisher's ctx ends). failAfter > 0
// makes the publisher return err after that many acknowledgements; ackTwice acknowledges the
// first message twice (a ledger contract violation).
type fakePublisher struct {
	hold      chan struct{}
	failAfter int
	err       error
	ackTwice  bool

	mu       sync.Mutex
	acked    []string
	sessions []record.Source
}

func (p *fakePublisher) BeginSession(src record.Source) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sessions = append(p.sessions, src)
}

func (p *fakePublisher) Run(ctx context.Context, in <-chan sink.Message, acked func([]sink.Message)) error {
	for {
		var m sink.Message
		var ok bool
		select {
		case m, ok = <-in:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.hold != nil {
			select {
			case <-p.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p.mu.Lock()
		p.acked = append(p.acked, m.ID)
		n := len(p.acked)
		p.mu.Unlock()
		acked([]sink.Message{m})
		if p.ackTwice && n == 1 {
			acked([]sink.Message{m})
		}
		if p.failAfter > 0 && n >= p.failAfter {
			return p.err
		}
	}
}

func (p *fakePublisher) ackedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

// fakeSlots returns status (or err) on every read.
type fakeSlots struct {
	mu     sync.Mutex
	status capture.Slot
	err    error
	reads  int
}

func (f *fakeSlots) ReadSlotStatus(context.Context) (capture.Slot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.status, f.err
}

func (f *fakeSlots) Close() {}

func healthySlot() *fakeSlots {
	return &fakeSlots{status: capture.Slot{Exists: true, WALStatus: "reserved", Active: true, SafeWALBytes: -1, MaxSlotWALKeepSize: -1}}
}

// fakeDeleter records deleted ids; errs are returned by the first calls, in order.
type fakeDeleter struct {
	mu      sync.Mutex
	errs    []error
	deleted []string
	calls   int
}

func (d *fakeDeleter) Prepare(context.Context) error { return nil }

func (d *fakeDeleter) Delete(_ context.Context, ids []string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if len(d.errs) > 0 {
		err := d.errs[0]
		d.errs = d.errs[1:]
		return nil, err
	}
	d.deleted = append(d.deleted, ids...)
	return ids, nil
}

func (d *fakeDeleter) Close() {}

func (d *fakeDeleter) deletedIDs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.deleted...)
}

// fakeClock records every wait. The waits listed in fire (by duration) fire at once; any other
// wait fires only when the test's context ends, so a test never sleeps.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	fire  func(d time.Duration) bool
	waits []time.Duration
}

func newFakeClock(fire func(time.Duration) bool) *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), fire: fire}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if c.fire(d) {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch
}

func (c *fakeClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// recordingObserver counts what the relay reports.
type recordingObserver struct {
	NopObserver
	mu       sync.Mutex
	started  int
	ended    []error
	levels   []capture.Level
	messages int
	lost     error
}

func (o *recordingObserver) Lost(err error) { o.mu.Lock(); o.lost = err; o.mu.Unlock() }

func (o *recordingObserver) SessionStarted() { o.mu.Lock(); o.started++; o.mu.Unlock() }
func (o *recordingObserver) SessionEnded(err error) {
	o.mu.Lock()
	o.ended = append(o.ended, err)
	o.mu.Unlock()
}
func (o *recordingObserver) Published(msgs []sink.Message) {
	o.mu.Lock()
	o.messages += len(msgs)
	o.mu.Unlock()
}
func (o *recordingObserver) SlotChecked(_ capture.Slot, l capture.Level, _ []string) {
	o.mu.Lock()
	o.levels = append(o.levels, l)
	o.mu.Unlock()
}

var errBroker = errors.New("kafka: topic authorization failed")
