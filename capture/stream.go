package capture

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/pgoutbox/pgoutbox/record"
)

// StreamConfig configures a [Stream].
type StreamConfig struct {
	DatabaseURL string // the server to stream from; the role needs REPLICATION
	Slot        string // logical replication slot (pgoutput), created by `pgoutbox setup`
	Publication string // publication of the outbox table's inserts
	Table       Table  // the outbox table

	// StatusInterval is the longest time between two standby status updates, also while the
	// sink is blocked; keep it well below the server's wal_sender_timeout (60 s by default).
	// Default 1 s.
	StatusInterval time.Duration

	// DeadLetterBadRows, when true, turns a row that cannot be published (a *BadRowError: NULL
	// channel, headers not a JSON object...) into an Event with DeadLetter set to the reason —
	// the raw row and its position headers — which the sink sends to its dead-letter topic, and
	// streaming goes on. Default false: such a row stops the stream, and the slot is never
	// confirmed past it.
	DeadLetterBadRows bool

	// MessagePrefix is the prefix of the logical decoding messages that are events (those of
	// pgoutbox_send). Default [DefaultMessagePrefix].
	MessagePrefix string

	// EventsFrom says which writes become events: outbox inserts, messages, or both. Default
	// [FromBoth].
	EventsFrom EventsFrom

	// DecodePublication, when set, is the publication the stream decodes through instead of
	// Publication, which still names the stream's routing (the source header): `pgoutbox
	// recover` reads a stretch through the recovery publication ([RecoveryPublication]).
	DecodePublication string

	// CopySlot streams a temporary copy of Slot made at Open (pg_copy_logical_replication_slot
	// at the slot's confirmed position), dropped by the server when the connection ends: the
	// slot itself neither moves nor is held. For `pgoutbox recover`.
	CopySlot bool

	// MinStatusInterval rate-limits the status updates sent because the confirmed position
	// moved: on a busy cluster a quiet database's walsender can send thousands of keepalives a
	// second. Answers to ReplyRequested are never delayed. Default 100 ms.
	MinStatusInterval time.Duration
}

func (c *StreamConfig) withDefaults() {
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.MinStatusInterval <= 0 {
		c.MinStatusInterval = DefaultMinStatusInterval
	}
	if c.MessagePrefix == "" {
		c.MessagePrefix = DefaultMessagePrefix
	}
	if c.EventsFrom == "" {
		c.EventsFrom = FromBoth
	}
}

// Output receives a Stream's transactions, in WAL (commit) order. The Stream calls it from one
// goroutine. It is declared here and implemented by the relay's wiring, which connects it to the
// checkpoint ledger and the sink.
type Output interface {
	// Begin registers a transaction before any of its rows; the result is its token.
	Begin(b Begin) (txn uint64)
	// Offer hands one row to the sink. It returns false, without blocking, when the in-flight
	// window is full; the Stream then waits for Room (sending status updates meanwhile).
	Offer(txn uint64, ev Event) (bool, error)
	// Room receives a value when acknowledgements free room in the window.
	Room() <-chan struct{}
	// Commit closes the transaction.
	Commit(txn uint64, c Commit) error
	// Idle reports the server's WAL end from a keepalive: it may be confirmed when nothing is
	// in flight.
	Idle(walEnd pglogrepl.LSN)
	// Confirmed is the position safe to confirm to the server: every transaction that commits
	// before it is acknowledged by Kafka.
	Confirmed() pglogrepl.LSN
	// Busy reports whether transactions await acknowledgement, i.e. whether Confirmed may move
	// soon: the Stream then checks it every MinStatusInterval instead of every StatusInterval.
	Busy() bool
}

// Stream reads the slot's pgoutput stream over a replication connection and hands the outbox
// rows to an [Output]. It confirms to the server only what the Output says is confirmed —
// never what it merely received — and keeps sending status updates while the Output is full,
// so that the walsender never times the connection out during a Kafka outage.
type Stream struct {
	cfg StreamConfig
	log zerolog.Logger

	conn       *pgconn.PgConn
	streamSlot string // the slot streamed: Slot, or its temporary copy (CopySlot)
	dec        *Decoder
	start      pglogrepl.LSN // the slot's confirmed_flush_lsn when streaming started
	source     record.Source // read by Open
	recv       pglogrepl.LSN // the newest server position received
	recvPub    atomic.Uint64 // recv, for readers on other goroutines (metrics)
	out        Output
	policy     statusPolicy
	lastSSU    time.Time     // when the last status update was sent
	sentPos    pglogrepl.LSN // the flush position of the last status update

	// The receive deadline's context, kept across messages while the deadline holds (see
	// receiveDeadline).
	rctx     context.Context
	rcancel  context.CancelFunc
	rdl      receiveDeadline
	roffered bool // a row was offered since rdl was chosen

	closeOnce sync.Once
	closeErr  error
}

// NewStream returns a Stream; [Stream.Open] connects it.
func NewStream(cfg StreamConfig, log zerolog.Logger) *Stream {
	cfg.withDefaults()
	return &Stream{cfg: cfg, policy: statusPolicy{interval: cfg.StatusInterval, minInterval: cfg.MinStatusInterval}, log: log.With().Str("component", "capture").Str("slot", cfg.Slot).Logger()}
}

// Open connects with replication=database, checks that the slot can be streamed from, and
// returns the position streaming will resume from: the slot's confirmed_flush_lsn. Start the
// checkpoint ledger there: a ledger starting at 0 would make pglogrepl replace the zero flush
// position with the write position — confirming everything received.
func (s *Stream) Open(ctx context.Context) (pglogrepl.LSN, error) {
	cfg, err := pgconn.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return 0, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "pgoutbox"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, ClassifyConnectError(err)
	}
	s.conn = conn

	slot, err := readSlot(ctx, connText(conn), s.cfg.Slot)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrConnection, err)
	}
	check := slot.checkStreamable
	if s.cfg.CopySlot {
		check = slot.checkCopyable // a copy may be taken while the relay streams the slot
	}
	if err := check(); err != nil {
		return 0, err
	}
	s.streamSlot = s.cfg.Slot
	if s.cfg.CopySlot {
		s.streamSlot = copySlotName(s.cfg.Slot)
		sql := fmt.Sprintf("SELECT pg_copy_logical_replication_slot(%s, %s, true)", literal(s.cfg.Slot), literal(s.streamSlot))
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return 0, fmt.Errorf("copy slot %q: %w", s.cfg.Slot, err)
		}
	}
	if s.source, err = identify(ctx, conn, s.cfg.Slot, RoutingOf(s.cfg.Publication, s.cfg.Table)); err != nil {
		return 0, err
	}
	s.start = slot.ConfirmedFlushLSN
	s.received(slot.ConfirmedFlushLSN)
	return s.start, nil
}

// Source returns the identity of the stream, read by Open (zero before): every event carries
// it in its [record.HeaderSource] header.
func (s *Stream) Source() record.Source { return s.source }

// Run streams until ctx is done or an error occurs. It returns ctx.Err() on cancellation;
// [Stream.Close] then sends the final status update.
func (s *Stream) Run(ctx context.Context, out Output) error {
	if s.conn == nil {
		return errors.New("capture: Run before Open")
	}
	s.out = out
	s.dec = NewDecoder(s.cfg.Table)
	s.dec.SetSchemaErrorsAsBadRows(s.cfg.DeadLetterBadRows)
	s.dec.SetSource(s.source.Header())
	s.dec.SetMessages(s.cfg.MessagePrefix, s.cfg.EventsFrom)
	if err := s.readXIDReference(ctx); err != nil { // full 64-bit xids for pgoutbox-xid
		return err
	}
	defer func() {
		if s.rcancel != nil {
			s.rcancel()
		}
	}()
	publication := s.cfg.Publication
	if s.cfg.DecodePublication != "" {
		publication = s.cfg.DecodePublication
	}
	err := pglogrepl.StartReplication(ctx, s.conn, s.streamSlot, s.start, pglogrepl.StartReplicationOptions{
		// messages 'true' (PostgreSQL 14+) in every mode: with --events-from=table a message
		// with the prefix must be seen to be refused, never silently missed.
		PluginArgs: []string{"proto_version '1'", "publication_names " + literal(publication), "messages 'true'"},
	})
	if err != nil {
		return classifyStreamError(err, s.cfg)
	}
	s.log.Info().Stringer("start_lsn", s.start).Str("publication", publication).Str("stream_slot", s.streamSlot).
		Str("source", s.source.Header()).Stringer("server_wal_end", s.source.WALEnd).
		Str("table", s.cfg.Table.QualifiedName()).Msg("streaming started")

	var txn uint64
	for {
		if err := s.maybeSendStatus(ctx, false); err != nil {
			return err
		}
		msg, err := s.receive(ctx)
		if err != nil {
			return err
		}
		if msg == nil { // deadline: time for a status update
			continue
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 {
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				return fmt.Errorf("%w: parse keepalive: %w", ErrProtocol, err)
			}
			s.received(ka.ServerWALEnd)
			out.Idle(ka.ServerWALEnd)
			if err := s.maybeSendStatus(ctx, ka.ReplyRequested); err != nil {
				return err
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				return fmt.Errorf("%w: parse XLogData: %w", ErrProtocol, err)
			}
			if txn, err = s.handle(ctx, txn, xld.WALData); err != nil {
				return err
			}
			s.received(xld.WALStart + pglogrepl.LSN(len(xld.WALData)))
		}
	}
}

// handle passes one decoded pgoutput message to the Output.
func (s *Stream) handle(ctx context.Context, txn uint64, walData []byte) (uint64, error) {
	m, err := s.dec.Decode(walData)
	var bad *BadRowError
	if errors.As(err, &bad) && s.cfg.DeadLetterBadRows {
		ev := s.log.Error().Str("id", bad.ID).Stringer("commit_lsn", bad.CommitLSN).Int("index", bad.Index)
		if bad.MessageLSN != 0 { // a logical decoding message, not an insert
			ev = ev.Stringer("message_lsn", bad.MessageLSN)
		}
		ev.Str("reason", bad.Reason).Msg("bad outbox row sent to the dead-letter topic")
		if bad.Outside {
			return txn, s.deadLetterOutside(ctx, bad)
		}
		return txn, s.offer(ctx, txn, deadLetter(bad))
	}
	if err != nil {
		return txn, err
	}
	switch m := m.(type) {
	case Begin:
		return s.out.Begin(m), nil
	case Row:
		return txn, s.offer(ctx, txn, m.Event)
	case Commit:
		return 0, s.out.Commit(txn, m)
	}
	return txn, nil
}

// deadLetterOutside sends a non-transactional message with the prefix to the dead-letter topic
// as a transaction of its own, at the message's LSN: confirming it (its end is the message's
// LSN, past the record's start) is what keeps PostgreSQL from sending it again. Messages and
// commits arrive in WAL order, so its position is past every transaction before it and before
// every transaction after it.
func (s *Stream) deadLetterOutside(ctx context.Context, bad *BadRowError) error {
	now := time.Now() // it has no commit time; the Kafka timestamp and the age alarm need one
	bad.Event.CommitTime = now
	txn := s.out.Begin(Begin{FinalLSN: bad.MessageLSN, CommitTime: now})
	if err := s.offer(ctx, txn, deadLetter(bad)); err != nil {
		return err
	}
	return s.out.Commit(txn, Commit{CommitLSN: bad.MessageLSN, EndLSN: bad.MessageLSN, CommitTime: now})
}

// deadLetter turns a bad row into the event that carries it to the dead-letter topic: the sink
// builds the dead-letter record (record.DeadLetter).
func deadLetter(bad *BadRowError) Event {
	ev := bad.Event
	ev.DeadLetter = bad.Reason
	return ev
}

// offer hands a row to the Output, waiting while the window is full. While it waits it does not
// read from the server — that is the backpressure — but it keeps sending the status updates
// that the policy asks for: at least every StatusInterval, and the confirmed position's moves.
func (s *Stream) offer(ctx context.Context, txn uint64, ev Event) error {
	for {
		ok, err := s.out.Offer(txn, ev)
		if err != nil || ok {
			s.roffered = s.roffered || ok
			return err
		}
		if err := s.maybeSendStatus(ctx, false); err != nil {
			return err
		}
		wait := time.NewTimer(time.Until(s.policy.nextCheck(time.Now(), s.statusState(), s.out.Busy())))
		select {
		case <-s.out.Room():
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return ctx.Err()
		}
		wait.Stop()
	}
}

// receiveContext returns the context that bounds waiting for the next message: until the
// policy's next check of the status.
func (s *Stream) receiveContext(ctx context.Context) context.Context {
	now := time.Now()
	if s.rctx != nil && s.rdl.holds(now, s.lastSSU, s.roffered) {
		return s.rctx
	}
	if s.rcancel != nil {
		s.rcancel()
	}
	busy := s.out.Busy()
	s.rdl = receiveDeadline{at: s.policy.nextCheck(now, s.statusState(), busy), lastSent: s.lastSSU, busy: busy}
	s.roffered = false
	s.rctx, s.rcancel = context.WithDeadline(ctx, s.rdl.at)
	return s.rctx
}

// receive returns the next message, or nil when the next status update is due first.
func (s *Stream) receive(ctx context.Context) (pgproto3.BackendMessage, error) {
	msg, err := s.conn.ReceiveMessage(s.receiveContext(ctx))
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case pgconn.Timeout(err):
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: receive: %w", ErrConnection, err)
	}
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		return nil, classifyStreamError(pgconn.ErrorResponseToPgError(m), s.cfg)
	case *pgproto3.CopyDone:
		return nil, fmt.Errorf("%w: the server ended the stream", ErrConnection)
	}
	return msg, nil
}

func (s *Stream) received(pos pglogrepl.LSN) {
	if pos > s.recv {
		s.recv = pos
		s.recvPub.Store(uint64(pos))
	}
}

// statusState is the state the status policy decides on.
func (s *Stream) statusState() statusState {
	st := statusState{lastSent: s.lastSSU, sentFlush: s.sentPos, flush: s.start}
	if s.out != nil {
		_, st.flush = statusPositions(s.start, s.out.Confirmed(), s.recv)
	}
	return st
}

// maybeSendStatus sends a status update when the policy says one is due.
func (s *Stream) maybeSendStatus(ctx context.Context, replyRequested bool) error {
	if s.policy.due(time.Now(), s.statusState(), replyRequested) {
		return s.sendStatus(ctx)
	}
	return nil
}

// sendStatus reports write = received and flush = apply = confirmed (see statusPositions).
func (s *Stream) sendStatus(ctx context.Context) error {
	var confirmed pglogrepl.LSN
	if s.out != nil {
		confirmed = s.out.Confirmed()
	}
	write, flush := statusPositions(s.start, confirmed, s.recv)
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: write,
		WALFlushPosition: flush,
		WALApplyPosition: flush,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("%w: send status update: %w", ErrConnection, err)
	}
	if flush != s.sentPos {
		s.log.Trace().Stringer("confirmed_lsn", flush).Stringer("received_lsn", write).Msg("status update")
	}
	s.lastSSU, s.sentPos = time.Now(), flush
	return nil
}

// endCopy ends the replication stream the protocol's way — CopyDone, then read what the server
// still sends until it has ended the COPY — so that the walsender has processed the final status
// update before the connection closes. Closing at once, with the server's unread data in the
// socket, resets the connection, and the server may drop the status update still queued
// (the slot then restarts further back than what Kafka acknowledged).
func (s *Stream) endCopy(ctx context.Context) error {
	s.conn.Frontend().Send(&pgproto3.CopyDone{})
	if err := s.conn.Frontend().Flush(); err != nil {
		return err
	}
	for {
		msg, err := s.conn.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		}
	}
}

// Received is the newest server position received (the write position of status updates).
// It is safe to call from any goroutine.
func (s *Stream) Received() pglogrepl.LSN { return pglogrepl.LSN(s.recvPub.Load()) }

// Close sends a last status update with the confirmed position — so a clean shutdown leaves
// the slot where Kafka's acknowledgements are — and closes the connection. Call it after Run
// returned and the sink drained. It is idempotent.
func (s *Stream) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.conn == nil {
			return
		}
		if s.out != nil && !s.conn.IsClosed() {
			if err := s.sendStatus(ctx); err != nil {
				s.closeErr = err
			} else if err := s.endCopy(ctx); err != nil {
				s.closeErr = fmt.Errorf("end replication after the final status update: %w", err)
			} else {
				s.log.Info().Stringer("confirmed_lsn", s.sentPos).Msg("final status update sent")
			}
		}
		if err := s.conn.Close(ctx); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("close replication connection: %w", err)
		}
	})
	return s.closeErr
}

// copySlotName names the temporary copy of slot that CopySlot streams.
func copySlotName(slot string) string {
	const suffix = "_recover"
	if len(slot)+len(suffix) > 63 {
		slot = slot[:63-len(suffix)]
	}
	return slot + suffix
}
