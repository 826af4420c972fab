package checkpoint

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("checkpoint.seed", 0, "run TestLedger_Property with this seed only")

// TestLedger_Property drives a Ledger with random streams (transactions of 0-5 rows, acks in
// random order and batches, interleaved with later Begins and Commits, Idle with random
// positions, and wrong calls) and checks it against model after every step. Each run is
// deterministic per seed; a failure names its seed, replay it with -checkpoint.seed=N.
func TestLedger_Property(t *testing.T) {
	t.Parallel()
	runs := 2000
	if testing.Short() {
		runs = 200
	}
	base := uint64(time.Now().UnixNano())
	if *seedFlag != 0 {
		base, runs = *seedFlag, 1
	}
	t.Logf("seeds %d..%d", base, base+uint64(runs)-1)
	for i := range runs {
		if err := simulate(base + uint64(i)); err != nil {
			t.Fatalf("seed %d: %v", base+uint64(i), err)
		}
	}
}

// mtxn is the model's view of a planned transaction.
type mtxn struct {
	id      TxnID
	end     LSN   // planned; the ledger learns it at Commit
	rows    int   // planned
	added   int   // rows added so far
	unacked []int // bytes of each row added and not acked
	closed  bool
	// stale: the watermark had already reached end when the transaction began (only an Idle
	// past the future, which a real server never sends). Such a transaction was confirmed
	// before it was seen; the invariant cannot and need not hold for it.
	stale bool
}

func (x *mtxn) done() bool { return x.closed && len(x.unacked) == 0 }

// model is the obviously correct version: it rescans every transaction from the first.
type model struct {
	start, wm, maxIdle LSN
	idleEnd            LSN     // the newest idle position offered while transactions were held
	plan               []*mtxn // all planned transactions, in WAL order
	begun              int     // plan[:begun] have begun
}

// prefix is how many transactions from the first are committed and fully acked.
func (m *model) prefix() int {
	n := 0
	for n < m.begun && m.plan[n].done() {
		n++
	}
	return n
}

func (m *model) settle() {
	for _, x := range m.plan[:m.prefix()] {
		m.wm = max(m.wm, x.end)
	}
	if m.prefix() == m.begun { // drained: the idle position kept meanwhile applies
		m.wm = max(m.wm, m.idleEnd)
		m.maxIdle = max(m.maxIdle, m.idleEnd)
	}
}

func (m *model) idle(lsn LSN) {
	if m.prefix() == m.begun {
		m.wm = max(m.wm, lsn)
		m.maxIdle = max(m.maxIdle, lsn)
		return
	}
	m.idleEnd = max(m.idleEnd, lsn)
}

type sim struct {
	rng  *rand.Rand
	l    *Ledger
	m    model
	last LSN // the watermark at the previous check
}

func simulate(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x636b7074))
	start := []LSN{0, 1, LSN(rng.Uint32()), 0x16_B374D848}[rng.IntN(4)]
	s := &sim{rng: rng, l: NewLedger(start), m: model{start: start, wm: start}, last: start}
	end := start
	for i := range 1 + rng.IntN(30) {
		end += 1 + LSN(rng.IntN(500))
		s.m.plan = append(s.m.plan, &mtxn{id: TxnID(i + 1), end: end, rows: rng.IntN(6)})
	}
	for step := 0; ; step++ {
		if s.m.begun == len(s.m.plan) && s.m.prefix() == s.m.begun {
			break
		}
		if err := s.act(); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if err := s.check(); err != nil {
			return fmt.Errorf("after step %d: %w", step, err)
		}
	}
	// (3) Everything committed and acked: the last end, or a later Idle.
	if want := max(start, end, s.m.maxIdle); s.l.Watermark() != want {
		return fmt.Errorf("final watermark %d, want %d", s.l.Watermark(), want)
	}
	return nil
}

// open returns the open transaction, if any.
func (s *sim) open() *mtxn {
	if s.m.begun > 0 && !s.m.plan[s.m.begun-1].closed {
		return s.m.plan[s.m.begun-1]
	}
	return nil
}

func (s *sim) act() error {
	switch r := s.rng.IntN(100); {
	case r < 15:
		return s.begin()
	case r < 40:
		return s.add()
	case r < 50:
		return s.commit()
	case r < 80:
		return s.ack()
	case r < 92:
		s.idle()
		return nil
	default:
		return s.misuse()
	}
}

func (s *sim) begin() error {
	if s.open() != nil || s.m.begun == len(s.m.plan) {
		return nil
	}
	x := s.m.plan[s.m.begun]
	x.stale = s.m.wm >= x.end
	s.m.begun++
	if got := s.l.Begin(at(x.id)); got != x.id {
		return fmt.Errorf("Begin() = %d, want %d", got, x.id)
	}
	return nil
}

func (s *sim) add() error {
	x := s.open()
	if x == nil || x.added == x.rows {
		return nil
	}
	b := s.rng.IntN(100)
	x.added++
	x.unacked = append(x.unacked, b)
	return s.l.Add(x.id, b)
}

func (s *sim) commit() error {
	x := s.open()
	if x == nil || x.added < x.rows {
		return nil
	}
	x.closed = true
	s.m.settle()
	return s.l.Commit(x.id, x.end)
}

// ack acknowledges a random batch of the unacked rows of a random transaction.
func (s *sim) ack() error {
	var with []*mtxn
	for _, x := range s.m.plan[:s.m.begun] {
		if len(x.unacked) > 0 {
			with = append(with, x)
		}
	}
	if len(with) == 0 {
		return nil
	}
	x := with[s.rng.IntN(len(with))]
	s.rng.Shuffle(len(x.unacked), func(i, j int) { x.unacked[i], x.unacked[j] = x.unacked[j], x.unacked[i] })
	n := 1 + s.rng.IntN(len(x.unacked))
	bytes := 0
	for _, b := range x.unacked[:n] {
		bytes += b
	}
	x.unacked = x.unacked[n:]
	s.m.settle()
	return s.l.Ack(x.id, n, bytes)
}

// idle offers a position that a real server could send (below the next commit) when the
// ledger is empty, now and then one beyond future commits, and anything at all otherwise.
func (s *sim) idle() {
	next := s.m.plan[len(s.m.plan)-1].end + 1000
	if s.m.begun < len(s.m.plan) {
		next = s.m.plan[s.m.begun].end
	}
	lsn := LSN(s.rng.Int64N(int64(next)))
	if s.m.prefix() < s.m.begun || s.rng.IntN(20) == 0 {
		lsn = LSN(s.rng.Int64N(int64(next) + 3000))
	}
	s.m.idle(lsn)
	s.l.Idle(lsn)
}

// misuse makes a wrong call and checks it fails with the right sentinel and changes nothing.
func (s *sim) misuse() error {
	before := snapshot(s.l)
	var err, want error
	x := s.m.plan[s.rng.IntN(len(s.m.plan))]
	confirmed := int(x.id) <= s.m.prefix()
	switch {
	case int(x.id) > s.m.begun:
		err, want = s.l.Ack(x.id, 1, 0), ErrUnknownTxn
	case confirmed:
		err, want = s.l.Ack(x.id, 1, 0), ErrUnknownTxn
	case x.closed && s.rng.IntN(2) == 0:
		err, want = s.l.Add(x.id, 1), ErrTxnClosed
	case x.closed:
		err, want = s.l.Commit(x.id, x.end), ErrTxnClosed
	default:
		bytes := 0
		for _, b := range x.unacked {
			bytes += b
		}
		err, want = s.l.Ack(x.id, len(x.unacked)+1, bytes), ErrOverAck
	}
	if !errors.Is(err, want) {
		return fmt.Errorf("misuse of txn %d: error %w, want %w", x.id, err, want)
	}
	if after := snapshot(s.l); after != before {
		return fmt.Errorf("misuse of txn %d (%w) changed the ledger:\n%+v\n%+v", x.id, err, before, after)
	}
	return nil
}

func (s *sim) check() error {
	wm := s.l.Watermark()
	if wm != s.m.wm {
		return fmt.Errorf("watermark %d, model %d", wm, s.m.wm)
	}
	// (2) Never decreases.
	if wm < s.last {
		return fmt.Errorf("watermark went back from %d to %d", s.last, wm)
	}
	s.last = wm
	// (1) Never reaches the end of a transaction that is open or has an unacked row.
	rows, bytes, oldest := 0, int64(0), TxnID(0)
	for _, x := range s.m.plan[:s.m.begun] {
		if !x.done() && !x.stale && wm >= x.end {
			return fmt.Errorf("watermark %d reached end %d of txn %d (closed %v, %d unacked)",
				wm, x.end, x.id, x.closed, len(x.unacked))
		}
		rows += len(x.unacked)
		for _, b := range x.unacked {
			bytes += int64(b)
		}
		if oldest == 0 && len(x.unacked) > 0 {
			oldest = x.id
		}
	}
	if r, b := s.l.InFlight(); r != rows || b != bytes {
		return fmt.Errorf("InFlight() = %d, %d, model %d, %d", r, b, rows, bytes)
	}
	if p, want := s.l.Pending(), s.m.begun-s.m.prefix(); p != want {
		return fmt.Errorf("Pending() = %d, model %d", p, want)
	}
	got, ok := s.l.OldestUnacked()
	if ok != (oldest != 0) || (ok && !got.Equal(at(oldest))) {
		return fmt.Errorf("OldestUnacked() = %v, %v, model txn %d", got, ok, oldest)
	}
	return nil
}
