package capture

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

var testPolicy = statusPolicy{interval: time.Second, minInterval: 100 * time.Millisecond}

// t0 is the fake clock's origin.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestStatusPolicy_due(t *testing.T) {
	t.Parallel()
	sent := statusState{lastSent: t0, sentFlush: 0x100, flush: 0x100}
	moved := statusState{lastSent: t0, sentFlush: 0x100, flush: 0x200}
	tests := []struct {
		name  string
		now   time.Duration
		st    statusState
		reply bool
		want  bool
	}{
		{"nothing new, interval running", 999 * time.Millisecond, sent, false, false},
		{"interval over", time.Second, sent, false, true},
		{"never sent", 0, statusState{flush: 0x100, sentFlush: 0x100}, false, true},
		{"reply requested right after an update", 0, sent, true, true},
		{"confirmed moved, too soon", 99 * time.Millisecond, moved, false, false},
		{"confirmed moved, minInterval over", 100 * time.Millisecond, moved, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := testPolicy.due(at(tt.now), tt.st, tt.reply); got != tt.want {
				t.Errorf("due = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStatusPolicy_nextCheck(t *testing.T) {
	t.Parallel()
	sent := statusState{lastSent: t0, sentFlush: 0x100, flush: 0x100}
	moved := statusState{lastSent: t0, sentFlush: 0x100, flush: 0x200}
	tests := []struct {
		name string
		now  time.Duration
		st   statusState
		busy bool
		want time.Duration
	}{
		{"idle: the end of the interval", 300 * time.Millisecond, sent, false, time.Second},
		{"busy: minInterval from now", 300 * time.Millisecond, sent, true, 400 * time.Millisecond},
		{"busy near the end of the interval: the interval wins", 950 * time.Millisecond, sent, true, time.Second},
		{"moved while not busy (the last ack): minInterval from now", 300 * time.Millisecond, moved, false, 400 * time.Millisecond},
		{"overdue: now or earlier", 3 * time.Second, sent, false, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := testPolicy.nextCheck(at(tt.now), tt.st, tt.busy); !got.Equal(at(tt.want)) {
				t.Errorf("nextCheck = +%s, want +%s", got.Sub(t0), tt.want)
			}
		})
	}
}

func TestStatusPositions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		start, confirmed, recv pglogrepl.LSN
		wantWrite, wantFlush   pglogrepl.LSN
	}{
		{"confirmed behind received", 0x100, 0x200, 0x300, 0x300, 0x200},
		{"nothing confirmed yet: the start, never zero", 0x100, 0, 0x300, 0x300, 0x100},
		{"confirmed below start: the start", 0x100, 0x80, 0, 0x100, 0x100},
		{"idle: confirmed at the server's end", 0x100, 0x400, 0x400, 0x400, 0x400},
		{"write never below flush", 0x100, 0x500, 0x400, 0x500, 0x500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, f := statusPositions(tt.start, tt.confirmed, tt.recv)
			if w != tt.wantWrite || f != tt.wantFlush {
				t.Errorf("statusPositions = write %s flush %s, want %s %s", w, f, tt.wantWrite, tt.wantFlush)
			}
		})
	}
}

func TestReceiveDeadline_holds(t *testing.T) {
	t.Parallel()
	idle := receiveDeadline{at: at(time.Second), lastSent: t0}
	busy := receiveDeadline{at: at(200 * time.Millisecond), lastSent: t0, busy: true}
	tests := []struct {
		name     string
		d        receiveDeadline
		now      time.Duration
		lastSent time.Time
		offered  bool
		want     bool
	}{
		{"reused across messages", idle, 500 * time.Millisecond, t0, false, true},
		{"passed", idle, time.Second, t0, false, false},
		{"an update was sent since", idle, 500 * time.Millisecond, at(400 * time.Millisecond), false, false},
		{"a row was offered since it was chosen idle: minInterval applies now", idle, 500 * time.Millisecond, t0, true, false},
		{"chosen busy, rows offered since", busy, 150 * time.Millisecond, t0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.d.holds(at(tt.now), tt.lastSent, tt.offered); got != tt.want {
				t.Errorf("holds = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStatusPolicy_fakeClock drives the policy the way the Stream does while its window is full
// (it reads nothing and wakes at nextCheck or when an acknowledgement frees room), and while it
// idles on a reused receive deadline, on a fake clock with acknowledgements at random times. It
// checks the invariants: an update at least every interval; each move of the confirmed position
// sent within minInterval (plus the time until the next wake), and never two updates for moves
// closer than minInterval.
func TestStatusPolicy_fakeClock(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		now := t0
		st := statusState{flush: 0x100, sentFlush: 0x100}
		busy := true
		var sends []time.Time
		var movedAt time.Time // when flush moved past what was sent; zero when in sync
		var dl receiveDeadline
		offered := false
		send := func() {
			if !movedAt.IsZero() && now.Sub(movedAt) > testPolicy.minInterval {
				t.Fatalf("seed %d: a confirmed move waited %s, more than minInterval", seed, now.Sub(movedAt))
			}
			if n := len(sends); n > 0 && now.Sub(sends[n-1]) > testPolicy.interval {
				t.Fatalf("seed %d: %s without a status update", seed, now.Sub(sends[n-1]))
			}
			sends = append(sends, now)
			st.lastSent, st.sentFlush, movedAt = now, st.flush, time.Time{}
		}
		send() // streaming started
		// Events: while rows are in flight, acknowledgements that move the confirmed position
		// (sometimes the last one); while idle, a new row offered by the Stream.
		nextEvent := now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		for now.Before(t0.Add(time.Minute)) {
			// The Stream waits for its next check or an event, whichever comes first.
			var wake time.Time
			if dl.holds(now, st.lastSent, offered) {
				wake = dl.at // the reused receive deadline
			} else {
				wake = testPolicy.nextCheck(now, st, busy)
				dl, offered = receiveDeadline{at: wake, lastSent: st.lastSent, busy: busy}, false
			}
			if nextEvent.Before(wake) {
				wake = nextEvent
			}
			now = wake
			if now.Equal(nextEvent) {
				if busy {
					st.flush += pglogrepl.LSN(1 + rng.IntN(1000))
					if movedAt.IsZero() {
						movedAt = now
					}
					busy = rng.IntN(4) != 0
				} else {
					busy, offered = true, true
				}
				nextEvent = now.Add(time.Duration(1+rng.IntN(1500)) * time.Millisecond)
			}
			if testPolicy.due(now, st, false) {
				if n := len(sends); st.flush != st.sentFlush && now.Sub(sends[n-1]) < testPolicy.minInterval && now.Sub(sends[n-1]) < testPolicy.interval {
					t.Fatalf("seed %d: update %s after the previous one, below minInterval", seed, now.Sub(sends[n-1]))
				}
				send()
			}
		}
		if len(sends) < 60 {
			t.Errorf("seed %d: %d updates in a minute, want at least one a second", seed, len(sends))
		}
	}
}
