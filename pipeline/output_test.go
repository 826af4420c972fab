package pipeline

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/sink"
)

// TestOutput_ConfirmsOnlyAckedTransactions drives the output as the stream and the sink do:
// the confirmed position moves over a transaction only once all its rows are acknowledged, in
// whatever order the sink hands them back.
func TestOutput_ConfirmsOnlyAckedTransactions(t *testing.T) {
	o := newOutput(100, checkpoint.Limits{MaxEvents: 10, MaxBytes: 1 << 20}, noCeiling())
	offer := func(txn uint64, ch string) {
		t.Helper()
		ok, err := o.Offer(txn, capture.Event{Channel: ch, Payload: []byte("{}")})
		if !ok || err != nil {
			t.Fatalf("offer: %v %v", ok, err)
		}
	}
	t1 := o.Begin(capture.Begin{CommitTime: time.Now()})
	offer(t1, "a")
	offer(t1, "b")
	if err := o.Commit(t1, capture.Commit{EndLSN: 200}); err != nil {
		t.Fatal(err)
	}
	t2 := o.Begin(capture.Begin{CommitTime: time.Now()})
	offer(t2, "a")
	if err := o.Commit(t2, capture.Commit{EndLSN: 300}); err != nil {
		t.Fatal(err)
	}
	var queued []sink.Message
	for range 3 {
		queued = append(queued, <-o.queue)
	}
	if string(queued[0].Key) != "a" || queued[0].Token != t1 || queued[2].Token != t2 {
		t.Fatalf("queue order/tokens wrong: %+v", queued)
	}

	// The sink acks t2's row and one of t1's first: nothing may be confirmed yet.
	if err := o.acked([]sink.Message{queued[2], queued[0]}); err != nil {
		t.Fatal(err)
	}
	if got := o.Confirmed(); got != 100 {
		t.Fatalf("confirmed %d with a row of the first transaction unacknowledged; want 100", got)
	}
	if err := o.acked(queued[1:2]); err != nil {
		t.Fatal(err)
	}
	if got := o.Confirmed(); got != 300 {
		t.Fatalf("confirmed %d after every ack; want 300", got)
	}
	if err := o.acked(queued[1:2]); err == nil {
		t.Error("acknowledging a row twice was accepted")
	}
}

func TestOutput_WindowFull(t *testing.T) {
	o := newOutput(100, checkpoint.Limits{MaxEvents: 2, MaxBytes: 1 << 20}, noCeiling())
	txn := o.Begin(capture.Begin{})
	for i, want := range []bool{true, true, false} {
		ok, err := o.Offer(txn, capture.Event{Channel: "c"})
		if err != nil || ok != want {
			t.Fatalf("offer %d = %v, %v; want %v", i, ok, err, want)
		}
	}
	if err := o.acked([]sink.Message{<-o.queue}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-o.Room():
	default:
		t.Fatal("no room signal after an ack")
	}
	if ok, _ := o.Offer(txn, capture.Event{Channel: "c"}); !ok {
		t.Fatal("offer refused after an ack freed room")
	}
}

func noCeiling() *atomic.Uint64 {
	var c atomic.Uint64
	c.Store(math.MaxUint64)
	return &c
}

// TestOutput_ConfirmedHeldAtTheCeiling: the publication guard's ceiling caps what is confirmed,
// whatever the ledger's watermark.
func TestOutput_ConfirmedHeldAtTheCeiling(t *testing.T) {
	var ceiling atomic.Uint64
	o := newOutput(100, checkpoint.Limits{MaxEvents: 2, MaxBytes: 1 << 20}, &ceiling)
	o.Idle(500)
	if got := o.Confirmed(); got != 0 {
		t.Fatalf("confirmed %v before any publication check, want 0 (the stream then sends its start)", got)
	}
	ceiling.Store(300)
	if got := o.Confirmed(); got != 300 {
		t.Fatalf("confirmed %v, want the ceiling 300", got)
	}
	ceiling.Store(900)
	if got := o.Confirmed(); got != 500 {
		t.Fatalf("confirmed %v, want the watermark 500 under a higher ceiling", got)
	}
}
