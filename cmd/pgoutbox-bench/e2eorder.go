package main

// streamCheck follows what one subscriber received on its channel, whose events carry the
// values 1, 2, 3, … in commit order (one writer per channel, committing one after the other).
// It classifies each delivery and, at the end, counts what never came. Pure: no I/O, no clock.
type streamCheck struct {
	seen       map[int64]bool
	top        int64 // the highest value received
	duplicates int64 // a value received again
	outOfOrder int64 // a value received after a higher one (late, not lost)
}

func newStreamCheck() *streamCheck { return &streamCheck{seen: map[int64]bool{}} }

// observe records the delivery of value v.
func (s *streamCheck) observe(v int64) {
	switch {
	case s.seen[v]:
		s.duplicates++
		return
	case v < s.top:
		s.outOfOrder++
	default:
		s.top = v
	}
	s.seen[v] = true
}

// has reports whether every value up to committed has arrived.
func (s *streamCheck) has(committed int64) bool { return s.lost(committed) == 0 }

// lost is how many of the values 1..committed never arrived. A value above committed (which the
// writer never committed) cannot arrive; were it to, it would not make up for a missing one.
func (s *streamCheck) lost(committed int64) int64 {
	var got int64
	for v := range s.seen {
		if v >= 1 && v <= committed {
			got++
		}
	}
	return committed - got
}

// deliveryCounts are the correctness figures of one path: summed over subscribers, never
// averaged, so a single lost event shows.
type deliveryCounts struct {
	Delivered  int64 `json:"delivered"`
	Expected   int64 `json:"expected"` // committed events × the subscribers of their channel
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
}

// add counts one subscriber's stream against the channel's committed events.
func (c *deliveryCounts) add(s *streamCheck, committed int64) {
	c.Expected += committed
	c.Delivered += int64(len(s.seen)) + s.duplicates
	c.Lost += s.lost(committed)
	c.Duplicates += s.duplicates
	c.OutOfOrder += s.outOfOrder
}

// correct is true when every committed event reached every subscriber once, in order.
func (c deliveryCounts) correct() bool {
	return c.Lost == 0 && c.Duplicates == 0 && c.OutOfOrder == 0 && c.Delivered == c.Expected
}
