package checkpoint

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLimits_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lim  Limits
		want []string // substrings of the error; none means valid
	}{
		{"both set", Limits{MaxEvents: 1, MaxBytes: 1}, nil},
		{"no events", Limits{MaxEvents: 0, MaxBytes: 1}, []string{"event limit is 0"}},
		{"negative bytes", Limits{MaxEvents: 1, MaxBytes: -1}, []string{"byte limit is -1"}},
		{"all problems at once", Limits{}, []string{"event limit is 0", "byte limit is 0"}},
	} {
		err := tc.lim.Validate()
		if (err != nil) != (len(tc.want) > 0) {
			t.Errorf("%s: Validate() = %v", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Validate() = %q, want it to mention %q", tc.name, err, w)
			}
		}
	}
}

func TestTracker_TryAdd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		lim     Limits
		before  []int // bytes of the rows already in flight
		id      TxnID // 0: the open transaction
		bytes   int
		want    bool
		wantErr error
	}{
		{name: "room on both counts", lim: Limits{3, 100}, before: []int{10, 10}, bytes: 80, want: true},
		{name: "full at MaxEvents", lim: Limits{2, 100}, before: []int{10, 10}, bytes: 1},
		{name: "full at MaxBytes", lim: Limits{10, 100}, before: []int{60}, bytes: 41},
		{name: "exactly MaxBytes fits", lim: Limits{10, 100}, before: []int{60}, bytes: 40, want: true},
		{name: "oversized row admitted when empty", lim: Limits{10, 100}, bytes: 1000, want: true},
		{name: "oversized row waits behind others", lim: Limits{10, 100}, before: []int{1}, bytes: 1000},
		{name: "limits at zero admit one row", lim: Limits{}, bytes: 1, want: true},
		{name: "limits at zero admit only one row", lim: Limits{}, before: []int{1}, bytes: 1},
		{name: "bad call reported when full", lim: Limits{1, 100}, before: []int{1}, id: 9, bytes: 1,
			wantErr: ErrUnknownTxn},
		{name: "bad call reported", lim: Limits{10, 100}, bytes: -1, wantErr: ErrInvalidCount},
	} {
		tr := NewTracker(100, tc.lim)
		id := tr.Begin(time.Time{})
		for _, b := range tc.before {
			if ok, err := tr.TryAdd(id, b); !ok || err != nil {
				t.Fatalf("%s: setup TryAdd = %v, %v", tc.name, ok, err)
			}
		}
		if tc.id != 0 {
			id = tc.id
		}
		rows, bytes := tr.InFlight()
		ok, err := tr.TryAdd(id, tc.bytes)
		if ok != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: TryAdd = %v, %v, want %v, %v", tc.name, ok, err, tc.want, tc.wantErr)
		}
		// Admitted: one more row in flight. Refused: nothing changed.
		if ok {
			rows, bytes = rows+1, bytes+int64(tc.bytes)
		}
		if r, b := tr.InFlight(); r != rows || b != bytes {
			t.Errorf("%s: InFlight() = %d, %d, want %d, %d", tc.name, r, b, rows, bytes)
		}
	}
}

func TestTracker_Room(t *testing.T) {
	t.Parallel()
	signalled := func(tr *Tracker) bool {
		select {
		case <-tr.Room():
			return true
		default:
			return false
		}
	}
	tr := NewTracker(100, Limits{MaxEvents: 1, MaxBytes: 100})
	id := tr.Begin(time.Time{})
	if ok, err := tr.TryAdd(id, 1); !ok || err != nil {
		t.Fatalf("TryAdd = %v, %v", ok, err)
	}
	if ok, _ := tr.TryAdd(id, 1); ok || signalled(tr) {
		t.Fatalf("full window: TryAdd admitted = %v, Room signalled before any Ack", ok)
	}
	if err := tr.Ack(id, 2, 2); err == nil || signalled(tr) {
		t.Fatalf("failed Ack = %v; it must not signal Room", err)
	}
	if err := tr.Ack(id, 1, 1); err != nil || !signalled(tr) {
		t.Fatalf("Ack = %v; Room must be signalled", err)
	}
	if ok, err := tr.TryAdd(id, 1); !ok || err != nil {
		t.Fatalf("TryAdd after Room = %v, %v", ok, err)
	}
	if err := tr.Commit(id, 200); err != nil {
		t.Fatal(err)
	}
	if err := tr.Ack(id, 1, 1); err != nil {
		t.Fatal(err)
	}
	if got := tr.Confirmed(); got != 200 {
		t.Errorf("Confirmed() = %d, want 200", got)
	}

	// Two acks before the waiter looks leave one wake-up, and neither Ack blocks.
	tr = NewTracker(100, Limits{MaxEvents: 10, MaxBytes: 100})
	ids := []TxnID{tr.Begin(time.Time{}), tr.Begin(time.Time{})}
	for _, id := range ids {
		if ok, err := tr.TryAdd(id, 1); !ok || err != nil {
			t.Fatalf("TryAdd = %v, %v", ok, err)
		}
	}
	for _, id := range ids {
		if err := tr.Ack(id, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if !signalled(tr) || signalled(tr) {
		t.Error("two acks: want exactly one pending wake-up")
	}
}

// TestTracker_concurrent runs a capture goroutine and an ack goroutine against one Tracker
// with a small window, under -race. The ack goroutine acks in random order and batches, and
// checks that the window holds and that Confirmed never reaches an unacked transaction's end.
// A lost wake-up would hang it: the context's deadline turns that into a failure.
func TestTracker_concurrent(t *testing.T) {
	t.Parallel()
	const (
		txns  = 2000
		start = LSN(1000)
	)
	lim := Limits{MaxEvents: 8, MaxBytes: 400}
	endOf := func(id TxnID) LSN { return start + 100*LSN(id) }
	tr := NewTracker(start, lim)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	type row struct {
		id    TxnID
		bytes int
	}
	sent := make(chan row, 4)
	waits := 0 // how often capture found the window full
	var wg sync.WaitGroup
	wg.Go(func() { // capture
		defer close(sent)
		rng := rand.New(rand.NewPCG(1, 2))
		for range txns {
			id := tr.Begin(time.Now())
			for range rng.IntN(6) {
				r := row{id, rng.IntN(150)}
				if !admit(ctx, t, tr, r.id, r.bytes, &waits) {
					return
				}
				select {
				case sent <- r:
				case <-ctx.Done():
					return
				}
			}
			if err := tr.Commit(id, endOf(id)); err != nil {
				t.Error(err)
				return
			}
			tr.Idle(endOf(id) + 50) // takes effect only when nothing is held
		}
	})
	wg.Go(func() { // Kafka's ack callback
		defer cancel() // on failure, release capture
		rng := rand.New(rand.NewPCG(3, 4))
		var held []row
		last := start
		for open := true; open || len(held) > 0; {
			if open && len(held) == 0 {
				r, ok := <-sent
				if open = ok; ok {
					held = append(held, r)
				}
				continue
			}
			if open && rng.IntN(2) == 0 {
				select { // never block here: capture may be waiting for room
				case r, ok := <-sent:
					if open = ok; ok {
						held = append(held, r)
					}
					continue
				default:
				}
			}
			// Ack a random row and, by chance, other held rows of its transaction.
			pick := rng.IntN(len(held))
			id, n, bytes, rest := held[pick].id, 0, 0, held[:0]
			for i, r := range held {
				if i == pick || r.id == id && rng.IntN(2) == 0 {
					n, bytes = n+1, bytes+r.bytes
					continue
				}
				rest = append(rest, r)
			}
			held = rest
			if rows, b := tr.InFlight(); rows > lim.MaxEvents || (rows > 1 && b > lim.MaxBytes) {
				t.Errorf("window exceeded: %d rows, %d bytes in flight", rows, b)
			}
			if err := tr.Ack(id, n, bytes); err != nil {
				t.Error(err)
				return
			}
			c := tr.Confirmed()
			if c < last {
				t.Errorf("Confirmed() went back from %s to %s", last, c)
			}
			last = c
			for _, r := range held {
				if c >= endOf(r.id) {
					t.Errorf("Confirmed() = %d reached the end of txn %d with an unacked row", c, r.id)
					return
				}
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	if waits == 0 {
		t.Error("capture never found the window full: the test does not exercise Room")
	}
	if rows, bytes := tr.InFlight(); rows != 0 || bytes != 0 {
		t.Errorf("InFlight() = %d, %d at the end", rows, bytes)
	}
	if _, ok := tr.OldestUnacked(); ok || tr.Pending() != 0 {
		t.Errorf("OldestUnacked() reports a txn, Pending() = %d at the end", tr.Pending())
	}
	tr.Idle(endOf(txns) + 50)
	if got, want := tr.Confirmed(), endOf(txns)+50; got != want {
		t.Errorf("Confirmed() = %s, want %s", got, want)
	}
}

// admit is capture's wait for room: TryAdd, and on a full window wait for Room (counted in
// waits). It reports false when the call failed or the context ended first (a lost wake-up would end here).
func admit(ctx context.Context, t *testing.T, tr *Tracker, id TxnID, bytes int, waits *int) bool {
	for {
		ok, err := tr.TryAdd(id, bytes)
		if err != nil {
			t.Error(err)
			return false
		}
		if ok {
			return true
		}
		*waits++
		select {
		case <-tr.Room():
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Error("capture waited for room until the deadline: lost wake-up")
			}
			return false
		}
	}
}
