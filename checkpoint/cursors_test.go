package checkpoint

import (
	"math/rand/v2"
	"testing"

	"github.com/pgoutbox/pgoutbox/record"
)

func TestCursors_Apply(t *testing.T) {
	t.Parallel()
	p := func(lsn LSN, i uint32) record.Position { return record.Position{LSN: lsn, Index: i} }
	var c Cursors
	steps := []struct {
		channel string
		pos     record.Position
		want    bool
	}{
		{"a", p(10, 0), true},
		{"a", p(10, 0), false}, // duplicate
		{"a", p(10, 1), true},
		{"b", p(5, 0), true},  // channels are independent: older than a's, still new on b
		{"a", p(9, 7), false}, // before the last applied: a replay
		{"a", p(11, 0), true},
		{"b", p(5, 0), false},
		{"a", p(10, 1), false},
	}
	for i, s := range steps {
		if got := c.Apply(s.channel, s.pos); got != s.want {
			t.Errorf("step %d: Apply(%q, %v) = %v, want %v", i, s.channel, s.pos, got, s.want)
		}
	}
	if last, ok := c.Last("a"); !ok || last != p(11, 0) {
		t.Errorf("Last(a) = %v, %v", last, ok)
	}
	if _, ok := c.Last("c"); ok {
		t.Error("Last(c) reports a position for a channel never applied")
	}
	c.Set("c", p(20, 0))
	if c.Apply("c", p(19, 0)) || !c.Apply("c", p(20, 1)) {
		t.Error("Set did not make the position the channel's last applied one")
	}
}

// TestCursors_Property feeds each channel's events in commit order with random duplicates and
// replays of earlier events mixed in, and checks that Apply accepts each event exactly once, in
// order.
func TestCursors_Property(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		var c Cursors
		sent := map[string][]record.Position{} // per channel, in commit order
		applied := map[string][]record.Position{}
		var lsn LSN
		for range 300 {
			ch := string(rune('a' + rng.IntN(4)))
			if len(sent[ch]) > 0 && rng.IntN(3) == 0 { // replay an earlier event
				old := sent[ch][rng.IntN(len(sent[ch]))]
				if c.Apply(ch, old) {
					t.Fatalf("run %d: replay of %v on %s applied", run, old, ch)
				}
				continue
			}
			lsn += LSN(1 + rng.IntN(100))
			pos := record.Position{LSN: lsn, Index: uint32(rng.IntN(3))}
			sent[ch] = append(sent[ch], pos)
			if !c.Apply(ch, pos) {
				t.Fatalf("run %d: new event %v on %s dropped", run, pos, ch)
			}
			applied[ch] = append(applied[ch], pos)
		}
		for ch, want := range sent {
			if len(applied[ch]) != len(want) {
				t.Fatalf("run %d: channel %s applied %d of %d events", run, ch, len(applied[ch]), len(want))
			}
		}
	}
}
