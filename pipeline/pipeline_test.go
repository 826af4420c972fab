package pipeline

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	monitorEvery = 5 * time.Second
	shutdownWait = 30 * time.Second
)

// testRelay builds a relay on fakes. Waits of the monitor interval and the shutdown timeout
// never fire unless fireShutdown; every other wait (reconnection pauses, retries) fires at once.
func testRelay(t *testing.T, ss *streams, pub *fakePublisher, slots *fakeSlots, del Deleter, fireShutdown bool) (*Pipeline, *fakeClock, *recordingObserver) {
	t.Helper()
	clock := newFakeClock(func(d time.Duration) bool {
		switch d {
		case monitorEvery:
			return false
		case shutdownWait:
			return fireShutdown
		}
		return true
	})
	obs := &recordingObserver{}
	deps := Deps{NewStream: ss.next, Publisher: pub, Slots: slots, Observer: obs, Clock: clock, Log: zerolog.Nop()}
	if del != nil {
		deps.Deleter = del
	}
	r, err := New(Config{
		Slot:            "s",
		Window:          checkpoint.Limits{MaxEvents: 4, MaxBytes: 1 << 20},
		ShutdownTimeout: shutdownWait,
		ReconnectMax:    4 * time.Second,
		MonitorInterval: monitorEvery,
		Thresholds:      capture.Thresholds{LagWarnBytes: 1 << 30},
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock, obs
}

// runAsync starts r.Run and returns a function that waits for its result.
func runAsync(ctx context.Context, r *Pipeline) func(t *testing.T) error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func(t *testing.T) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
			return nil
		}
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func connLost() error { return errors.Join(capture.ErrConnection, errors.New("connection refused")) }

func TestRelay_Run_ReconnectsWithBackoff(t *testing.T) {
	down := &fakeStream{openErr: connLost()}
	up := &fakeStream{start: 100}
	ss := &streams{list: []*fakeStream{down, down, down, down, down, up}}
	r, clock, obs := testRelay(t, ss, &fakePublisher{}, healthySlot(), nil, false)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "the sixth session", func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.started == 1 })
	cancel()
	if err := wait(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil (a clean exit)", err)
	}
	var pauses []time.Duration
	for _, d := range clock.recorded() {
		if d != monitorEvery && d != shutdownWait {
			pauses = append(pauses, d)
		}
	}
	// 500ms, 1s, 2s, 4s, then capped at ReconnectMax = 4s; each jittered into [w/2, w].
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	if len(pauses) != len(want) {
		t.Fatalf("pauses %v, want %d of them", pauses, len(want))
	}
	for i, w := range want {
		if pauses[i] < w/2 || pauses[i] > w {
			t.Errorf("pause %d = %v, want within [%v, %v]", i, pauses[i], w/2, w)
		}
	}
}

func TestRelay_Run_StandbyPollsAtASteadyPace(t *testing.T) {
	busy := &fakeStream{openErr: errors.Join(capture.ErrSlotInUse, errors.New("active for PID 7"))}
	up := &fakeStream{start: 100}
	ss := &streams{list: []*fakeStream{busy, busy, busy, busy, up}}
	r, clock, obs := testRelay(t, ss, &fakePublisher{}, healthySlot(), nil, false)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "the standby taking over", func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.started == 1 })
	cancel()
	if err := wait(t); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range clock.recorded() {
		if d == monitorEvery || d == shutdownWait {
			continue
		}
		n++
		if d < time.Second || d > 2*time.Second { // StandbyPoll 2s, jittered; no growth
			t.Errorf("standby pause %v, want within [1s, 2s]", d)
		}
	}
	if n != 4 {
		t.Errorf("%d standby pauses, want 4", n)
	}
}

func TestRelay_Run_StopsOnErrorsARetryCannotFix(t *testing.T) {
	badRow := &capture.BadRowError{ID: "7", Reason: "channel is NULL"}
	tests := []struct {
		name   string
		stream *fakeStream
		pub    *fakePublisher
		want   error
	}{
		{"a bad row under --on-bad-row=stop", &fakeStream{start: 100, runErr: badRow}, &fakePublisher{}, capture.ErrBadRow},
		{"the sink fails for good", &fakeStream{start: 100, txns: []txn{{ids: []string{"1", "2"}, end: 200}}},
			&fakePublisher{failAfter: 1, err: errBroker}, errBroker},
		{"the ledger rejects an acknowledgement", &fakeStream{start: 100, txns: []txn{{ids: []string{"1"}, end: 200}}},
			&fakePublisher{ackTwice: true}, checkpoint.ErrUnknownTxn},
		{"the slot is dropped under the relay", &fakeStream{start: 100, runErr: errors.Join(capture.ErrNoSlot, errors.New("42704"))},
			&fakePublisher{}, capture.ErrSlotLost},
		{"the slot is gone at start", &fakeStream{openErr: errors.Join(capture.ErrNoSlot, errors.New("no slot"))}, &fakePublisher{}, capture.ErrNoSlot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _ := testRelay(t, &streams{list: []*fakeStream{tt.stream}}, tt.pub, healthySlot(), nil, false)
			err := runAsync(context.Background(), r)(t)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run = %v, want an error wrapping %v (the process must exit non-zero)", err, tt.want)
			}
		})
	}
}

func TestRelay_Run_DrainsWithinTheShutdownTimeout(t *testing.T) {
	st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1", "2"}, end: 200}, {ids: []string{"3"}, end: 300}}}
	pub := &fakePublisher{hold: make(chan struct{})}
	r, _, _ := testRelay(t, &streams{list: []*fakeStream{st}}, pub, healthySlot(), nil, false)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "the rows in flight", func() bool { return r.Progress().InFlightRows == 3 })
	cancel() // shutdown while Kafka has acknowledged nothing
	for range 3 {
		pub.hold <- struct{}{} // Kafka acknowledges, one row at a time, after the shutdown began
	}
	if err := wait(t); err != nil {
		t.Fatal(err)
	}
	if got := pub.ackedIDs(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("acknowledged %v, want every row in flight", got)
	}
	if confirmed, closed := st.finalConfirmed(); !closed || confirmed != 300 {
		t.Fatalf("final status confirmed %v (closed %v), want 300: the drained rows' commits", confirmed, closed)
	}
}

func TestRelay_Run_GivesUpDrainingPastTheShutdownTimeout(t *testing.T) {
	st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1"}, end: 200}}}
	pub := &fakePublisher{hold: make(chan struct{})} // Kafka never acknowledges
	r, clock, _ := testRelay(t, &streams{list: []*fakeStream{st}}, pub, healthySlot(), nil, true)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "the row in flight", func() bool { return r.Progress().InFlightRows == 1 })
	cancel()
	if err := wait(t); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(clock.recorded(), shutdownWait) {
		t.Fatalf("waits %v: the drain did not wait for the shutdown timeout", clock.recorded())
	}
	if confirmed, _ := st.finalConfirmed(); confirmed != 100 {
		t.Fatalf("final status confirmed %v, want 100: an unacknowledged row must stay unconfirmed", confirmed)
	}
}

func TestRelay_Run_ConfirmsOnlyDeletedRowsWithRetention(t *testing.T) {
	st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1", "2"}, end: 200}}}
	del := &fakeDeleter{errs: []error{errors.New("connection reset")}} // one transient failure, retried
	r, _, _ := testRelay(t, &streams{list: []*fakeStream{st}}, &fakePublisher{}, healthySlot(), del, false)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "the commit confirmed", func() bool { return r.Progress().Confirmed == 200 })
	cancel()
	if err := wait(t); err != nil {
		t.Fatal(err)
	}
	if got := del.deletedIDs(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("deleted %v, want [1 2]", got)
	}
}

func TestRelay_Run_StopsWhenRetentionCannotDelete(t *testing.T) {
	st := &fakeStream{start: 100, txns: []txn{{ids: []string{"1"}, end: 200}}}
	del := &fakeDeleter{errs: []error{errors.Join(capture.ErrRetentionFixed, errors.New("permission denied"))}}
	r, _, _ := testRelay(t, &streams{list: []*fakeStream{st}}, &fakePublisher{}, healthySlot(), del, false)
	err := runAsync(context.Background(), r)(t)
	if !errors.Is(err, capture.ErrRetentionFixed) {
		t.Fatalf("Run = %v, want the retention failure", err)
	}
	if got := r.Progress().Confirmed; got != 100 {
		t.Fatalf("confirmed %v although the row was not deleted; want 100", got)
	}
}

func TestRelay_Run_StopsWhenTheSlotIsLost(t *testing.T) {
	slots := &fakeSlots{status: capture.Slot{Exists: true, WALStatus: "lost", ConfirmedFlushLSN: 0x64}}
	r, _, obs := testRelay(t, &streams{list: []*fakeStream{{start: 100}}}, &fakePublisher{}, slots, nil, false)
	err := runAsync(context.Background(), r)(t)
	if !errors.Is(err, capture.ErrSlotLost) {
		t.Fatalf("Run = %v, want ErrSlotLost", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Contains(obs.levels, capture.LevelLost) {
		t.Fatalf("observer saw levels %v, want lost", obs.levels)
	}
}

func TestBackoff_After(t *testing.T) {
	b := newBackoff(500*time.Millisecond, 3*time.Second, 2*time.Second)
	steps := []struct {
		err   error
		ran   time.Duration
		pause time.Duration
		retry bool
	}{
		{connLost(), 0, 500 * time.Millisecond, true},
		{connLost(), 0, time.Second, true},
		{connLost(), 0, 2 * time.Second, true},
		{connLost(), 0, 3 * time.Second, true}, // capped
		{capture.ErrSlotInUse, 0, 2 * time.Second, true},
		{connLost(), 2 * time.Minute, 500 * time.Millisecond, true}, // a long healthy run resets it
		{errors.New("anything else"), 0, 0, false},
		{nil, 0, 0, false},
	}
	for i, s := range steps {
		pause, retry := b.after(s.err, s.ran)
		if pause != s.pause || retry != s.retry {
			t.Errorf("step %d (%v): after = %v, %v; want %v, %v", i, s.err, pause, retry, s.pause, s.retry)
		}
	}
}

func TestJitter(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		if got := jitter(time.Second, r); got < 500*time.Millisecond || got > time.Second {
			t.Errorf("jitter(1s, %v) = %v, want within [500ms, 1s]", r, got)
		}
	}
}

// TestRelay_Run_TellsThePublisherEachSessionsSource: every session, including one after a
// reconnection, starts the publisher's tail checks with that stream's identity; AtLeastOnce
// hands it the zero Source (no tail reads, no skips).
func TestRelay_Run_TellsThePublisherEachSessionsSource(t *testing.T) {
	for _, atLeastOnce := range []bool{false, true} {
		first := &fakeStream{start: 100, runErr: connLost()}
		second := &fakeStream{start: 100}
		pub := &fakePublisher{}
		r, _, obs := testRelay(t, &streams{list: []*fakeStream{first, second}}, pub, healthySlot(), nil, false)
		r.cfg.AtLeastOnce = atLeastOnce
		ctx, cancel := context.WithCancel(context.Background())
		wait := runAsync(ctx, r)
		eventually(t, "the second session", func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.started == 2 })
		cancel()
		if err := wait(t); err != nil {
			t.Fatal(err)
		}
		pub.mu.Lock()
		got := pub.sessions
		pub.mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("AtLeastOnce=%v: BeginSession called %d times, want once per session (2)", atLeastOnce, len(got))
		}
		for _, src := range got {
			if want := !atLeastOnce; (src.SystemID != "" && src.Slot == "s") != want {
				t.Errorf("AtLeastOnce=%v: BeginSession(%+v)", atLeastOnce, src)
			}
		}
	}
}

// TestRelay_Run_AwaitSink: no session opens while AwaitSink waits (the monitor runs
// meanwhile); it opens once AwaitSink returns; an error of AwaitSink is the relay's result.
func TestRelay_Run_AwaitSink(t *testing.T) {
	ss := &streams{list: []*fakeStream{{start: 100}}}
	slots := healthySlot()
	r, _, obs := testRelay(t, ss, &fakePublisher{}, slots, nil, false)
	release := make(chan struct{})
	r.deps.AwaitSink = func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(ctx, r)
	eventually(t, "a slot check while waiting", func() bool { slots.mu.Lock(); defer slots.mu.Unlock(); return slots.reads > 0 })
	ss.mu.Lock()
	opened := ss.used
	ss.mu.Unlock()
	if opened != 0 {
		t.Fatalf("%d sessions opened while AwaitSink waited", opened)
	}
	close(release)
	eventually(t, "the session", func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.started == 1 })
	cancel()
	if err := wait(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}

	refused := errors.New("kafka refused the client")
	r, _, obs = testRelay(t, &streams{list: []*fakeStream{{start: 100}}}, &fakePublisher{}, healthySlot(), nil, false)
	r.deps.AwaitSink = func(context.Context) error { return refused }
	if err := runAsync(context.Background(), r)(t); !errors.Is(err, refused) {
		t.Errorf("Run = %v, want AwaitSink's error", err)
	}
	if obs.started != 0 {
		t.Errorf("%d sessions started after AwaitSink failed", obs.started)
	}
}
