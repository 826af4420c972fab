package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/record"
)

// Message is what [Decoder.Decode] returns for the messages the relay acts on: [Begin], [Row]
// or [Commit].
type Message interface{ isMessage() }

// Begin starts a transaction. The [Row] messages that follow belong to it until the [Commit].
type Begin struct {
	XID        uint32        // transaction id, as pgoutput sends it (32 bits)
	FullXID    uint64        // XID widened to 64 bits (see [WidenXID] and [Decoder.SetXIDReference])
	FinalLSN   pglogrepl.LSN // LSN of the commit record: the CommitLSN of the transaction's events
	CommitTime time.Time     // commit time of the transaction
}

// Row is one insert into the outbox table.
type Row struct {
	Event Event
}

// Commit ends the transaction begun by the last [Begin].
type Commit struct {
	CommitLSN  pglogrepl.LSN // LSN of the commit record
	EndLSN     pglogrepl.LSN // end of the commit record: the position to confirm once all rows are acked
	CommitTime time.Time     // commit time of the transaction
}

func (Begin) isMessage()  {}
func (Row) isMessage()    {}
func (Commit) isMessage() {}

// oidBytea is the type OID of bytea, whose text form pgoutput sends hex-encoded. Any other payload
// type (jsonb, json, text, ...) is published as its text form.
const oidBytea = 17

// oidBool is the type OID of boolean, whose text form is "t" or "f".
const oidBool = 16

// Decoder turns pgoutput messages into [Message] values. It caches the Relation messages of one
// replication connection, so use a new Decoder for each connection (the server sends the Relation
// messages again on every connection). A Decoder is not safe for concurrent use.
type Decoder struct {
	table     Table
	qualified string
	relations map[uint32]*relation

	inTxn bool
	txn   Begin
	rows  int // outbox rows of the current transaction so far

	values []value // scratch for tuple

	source []byte // the record.HeaderSource value; nil = no such header
	xidRef uint64 // the newest full transaction id known, for widening Begin's xid

	// schemaRowsBad turns the rows of an outbox Relation that lacks a configured column into
	// bad rows instead of stopping at the Relation (see SetSchemaErrorsAsBadRows).
	schemaRowsBad bool
	prefix        string     // the prefix of the logical decoding messages that are events
	from          EventsFrom // which writes become events
}

// SetMessages sets the prefix of the logical decoding messages that are events (pgoutbox_send's)
// and which writes become events. The default is [DefaultMessagePrefix] and [FromBoth].
func (d *Decoder) SetMessages(prefix string, from EventsFrom) {
	if from == "" {
		from = FromBoth
	}
	d.prefix, d.from = prefix, from
}

// SetSchemaErrorsAsBadRows makes the rows written while the outbox table lacked a configured
// column (dropped, then perhaps added back) bad rows — which a dead-letter policy sets aside —
// instead of an error at their Relation message. Without it such a stretch of WAL stops the
// relay at the same place after every restart, even once the column is back.
func (d *Decoder) SetSchemaErrorsAsBadRows(on bool) { d.schemaRowsBad = on }

// SetSource makes every event carry the [record.HeaderSource] header with value s ([Source.Header]).
func (d *Decoder) SetSource(s string) { d.source = []byte(s) }

// SetXIDReference gives the decoder a full (64-bit) transaction id near those it will decode:
// the server's next full id when the session started. Each Begin's 32-bit xid is widened
// against the newest id known (see [WidenXID]), which keeps it correct across epochs. Without
// a reference, full ids equal the 32-bit ids (epoch 0).
func (d *Decoder) SetXIDReference(ref uint64) { d.xidRef = ref }

// relation is the cached Relation message of one relation id.
type relation struct {
	name    string // "schema"."name", for errors
	ncols   int
	outbox  bool
	renamed bool  // the outbox table, under another name
	err     error // set when inserts into this relation cannot be decoded

	// Outbox relations only.
	columns []string // column names

	id, channel, eventName, payload int   // indexes of the required columns
	headers, topic                  int   // indexes of the optional columns; -1 when not configured
	mutationID, rejected            int   // likewise
	extras                          []int // indexes of the Table.ExtraHeaders columns

	payloadBytea bool
	rejectedBool bool // the rejected column is boolean: its t/f text is sent as true/false
}

// NewDecoder returns a Decoder that publishes the inserts into table t, which should be valid
// (see [Table.Validate]).
func NewDecoder(t Table) *Decoder {
	t.ExtraHeaders = append([]string(nil), t.ExtraHeaders...)
	return &Decoder{
		table:     t,
		qualified: t.QualifiedName(),
		relations: make(map[uint32]*relation),
		prefix:    DefaultMessagePrefix,
		from:      FromBoth,
	}
}

// Decode interprets one pgoutput message (the WALData of an XLogData). It returns nil, nil for the
// messages the relay ignores: Relation (which it caches), Type, Origin, Truncate, Update, Delete,
// inserts into other tables, and logical decoding messages with another prefix. A logical
// decoding message with the prefix (see [Decoder.SetMessages]) is a [Row] like an outbox insert,
// numbered with the transaction's inserts in WAL order. A Relation message for the outbox
// table that lacks a configured column gives a [*SchemaError] (several are joined).
//
// An error wrapping [ErrBadRow] (a [*BadRowError]) concerns one row; the Decoder stays usable and
// the next call decodes the next message. Any other error means the stream is out of sync or the
// table does not match the configuration: stop and reconnect with a new Decoder.
//
// The returned message does not refer to walData, which the caller may reuse.
func (d *Decoder) Decode(walData []byte) (Message, error) {
	if len(walData) == 0 {
		return nil, protocolError("empty message")
	}
	body := walData[1:]
	switch t := pglogrepl.MessageType(walData[0]); t {
	case pglogrepl.MessageTypeBegin:
		return d.begin(body)
	case pglogrepl.MessageTypeCommit:
		return d.commit(body)
	case pglogrepl.MessageTypeRelation:
		err := d.relation(body)
		if d.schemaRowsBad && errors.Is(err, ErrSchema) && d.relations[relationID(body)].outbox {
			return nil, nil // its rows are bad rows (insert)
		}
		return nil, err
	case pglogrepl.MessageTypeInsert:
		return d.insert(body)
	case pglogrepl.MessageTypeMessage:
		return d.message(body)
	case pglogrepl.MessageTypeType, pglogrepl.MessageTypeOrigin, pglogrepl.MessageTypeTruncate,
		pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		return nil, nil
	default:
		return nil, protocolError("unexpected message type %q: the relay requests proto_version '1' "+
			"without the streaming and two_phase options", byte(t))
	}
}

func (d *Decoder) begin(body []byte) (Message, error) {
	r := reader{buf: body}
	b := Begin{FinalLSN: pglogrepl.LSN(r.uint64()), CommitTime: pgTime(r.uint64()), XID: r.uint32()}
	if err := r.end("begin"); err != nil {
		return nil, err
	}
	if d.inTxn {
		return nil, protocolError("begin of xid %d while xid %d is open", b.XID, d.txn.XID)
	}
	b.FullXID = WidenXID(b.XID, d.xidRef)
	d.xidRef = max(d.xidRef, b.FullXID)
	d.inTxn, d.txn, d.rows = true, b, 0
	return b, nil
}

func (d *Decoder) commit(body []byte) (Message, error) {
	r := reader{buf: body}
	r.uint8() // flags, unused
	c := Commit{CommitLSN: pglogrepl.LSN(r.uint64()), EndLSN: pglogrepl.LSN(r.uint64()), CommitTime: pgTime(r.uint64())}
	if err := r.end("commit"); err != nil {
		return nil, err
	}
	if !d.inTxn {
		return nil, protocolError("commit at %s outside a transaction", c.CommitLSN)
	}
	d.inTxn = false
	return c, nil
}

// relation caches a Relation message, replacing any earlier one with the same id. For the outbox
// table it resolves the configured columns and reports the missing ones.
func (d *Decoder) relation(body []byte) error {
	r := reader{buf: body}
	id := r.uint32()
	namespace, name := r.cstring(), r.cstring()
	r.uint8() // replica identity
	n := int(r.uint16())
	var columns []string
	var types []uint32
	for i := 0; i < n && !r.short; i++ {
		r.uint8() // flags
		columns = append(columns, r.cstring())
		types = append(types, r.uint32())
		r.uint32() // type modifier
	}
	if err := r.end("relation"); err != nil {
		return err
	}

	rel := &relation{name: pgx.Identifier{namespace, name}.Sanitize(), ncols: n}
	old := d.relations[id]
	switch {
	case namespace == d.table.Schema && name == d.table.Name:
		rel.outbox = true
		rel.columns = columns
		d.resolve(rel, types)
	case old != nil && (old.outbox || old.renamed):
		rel.renamed = true
		rel.err = fmt.Errorf("%w: outbox table %s (relation id %d) was renamed to %s: "+
			"configure the new name, or rename it back", ErrSchema, d.qualified, id, rel.name)
	}
	d.relations[id] = rel
	return rel.err
}

// resolve finds the configured columns of the outbox relation rel, whose column types are types.
func (d *Decoder) resolve(rel *relation, types []uint32) {
	rel.headers, rel.topic, rel.mutationID, rel.rejected = -1, -1, -1, -1 // unless configured
	var missing []error
	for _, c := range d.table.columns() {
		i := indexOf(rel.columns, c.name)
		if i < 0 {
			missing = append(missing, &SchemaError{Table: d.qualified, Column: c.name, Role: c.role, flag: c.flag})
		}
		switch c.role {
		case roleID:
			rel.id = i
		case roleChannel:
			rel.channel = i
		case roleEventName:
			rel.eventName = i
		case rolePayload:
			rel.payload = i
			rel.payloadBytea = i >= 0 && types[i] == oidBytea
		case roleHeaders:
			rel.headers = i
		case roleTopic:
			rel.topic = i
		case roleMutationID:
			rel.mutationID = i
		case roleRejected:
			rel.rejected = i
			rel.rejectedBool = i >= 0 && types[i] == oidBool
		case roleExtraHeader:
			rel.extras = append(rel.extras, i)
		}
	}
	rel.err = errors.Join(missing...)
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

func (d *Decoder) insert(body []byte) (Message, error) {
	r := reader{buf: body}
	id := r.uint32()
	kind := r.uint8()
	if r.short {
		return nil, protocolError("insert message is truncated")
	}
	if kind != 'N' {
		return nil, protocolError("insert message has tuple kind %q, want 'N'", kind)
	}
	if !d.inTxn {
		return nil, protocolError("insert into relation id %d outside a transaction", id)
	}
	rel, ok := d.relations[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: relation id %d: the stream is out of sync, reconnect", ErrUnknownRelation, id)
	case rel.err != nil && (!d.schemaRowsBad || !rel.outbox):
		return nil, rel.err
	case !rel.outbox:
		return nil, nil
	}
	values, err := d.tuple(&r, rel)
	if err != nil {
		return nil, err
	}
	index := d.rows
	d.rows++
	if rel.err != nil {
		return nil, d.schemaBadRow(rel, values, index)
	}
	m, err := d.row(rel, values, index)
	if !d.from.Table() {
		return nil, notFromTable(m, err, d.qualified)
	}
	return m, err
}

// notFromTable turns the result of an outbox insert into the bad row it is with
// --events-from=messages.
func notFromTable(m Message, err error, table string) error {
	reason := fmt.Sprintf("an insert into the outbox table %s, but --events-from=messages publishes only the "+
		"logical decoding messages of pgoutbox_send(): set --events-from=both, or stop inserting into the table", table)
	var bad *BadRowError
	if errors.As(err, &bad) {
		bad.Reason = reason + "; " + bad.Reason
		return bad
	}
	e := m.(Row).Event
	return &BadRowError{ID: e.ID, CommitLSN: e.CommitLSN, Index: e.Index, Reason: reason, Event: e}
}

// relationID reads the relation id at the start of a Relation message's body (0 if short).
func relationID(body []byte) uint32 {
	if len(body) < 4 {
		return 0
	}
	return uint32(body[0])<<24 | uint32(body[1])<<16 | uint32(body[2])<<8 | uint32(body[3])
}

// schemaBadRow is the bad row of an insert decoded under an outbox Relation that lacks a
// configured column. Its event is the one the row makes with the missing columns taken as NULL
// — position, id, channel, name, payload, headers as the relay would publish them — so that
// once the cause is understood `pgoutbox dlq redrive` can publish it as it is; the whole row as
// PostgreSQL sent it is kept in the [record.HeaderOriginalRow] header.
func (d *Decoder) schemaBadRow(rel *relation, values []value, index int) error {
	raw := make(map[string]*string, len(values))
	for i, name := range rel.columns {
		if values[i] != nil {
			v := string(values[i])
			raw[name] = &v
		} else {
			raw[name] = nil
		}
	}
	original, _ := json.Marshal(raw) // a map of strings always marshals
	reason := rel.err.Error() + " — this row was written while the column was missing: this record is its event with that column taken as NULL" +
		" (the row as written is in the " + record.HeaderOriginalRow + " header); once the column is back, `pgoutbox dlq redrive --apply` publishes it"

	// The row as row() reads it, every missing column pointing at one NULL past the real ones.
	padded := *rel
	null := len(values)
	values = append(values, nil)
	for _, i := range []*int{&padded.id, &padded.channel, &padded.eventName, &padded.payload} {
		if *i < 0 {
			*i = null
		}
	}
	padded.extras = make([]int, len(rel.extras))
	for k, i := range rel.extras {
		if i < 0 {
			i = null
		}
		padded.extras[k] = i
	}
	var e Event
	m, err := d.row(&padded, values, index)
	var bad *BadRowError
	switch {
	case errors.As(err, &bad):
		e = bad.Event
		reason += "; also: " + bad.Reason
	case err != nil:
		return err
	default:
		e = m.(Row).Event
	}
	e.Headers = append(e.Headers, record.Header{Key: record.HeaderOriginalRow, Value: original})
	return &BadRowError{ID: e.ID, CommitLSN: e.CommitLSN, Index: index, Event: e, Reason: reason}
}

// value is one column of a tuple: its text form, or nil for NULL. It refers to the message bytes.
type value []byte

// tuple reads the TupleData of an insert into the outbox relation rel, which must be in text form
// with one value per column of the relation.
func (d *Decoder) tuple(r *reader, rel *relation) ([]value, error) {
	n := int(r.uint16())
	if !r.short && n != rel.ncols {
		return nil, protocolError("insert into %s has %d columns, its Relation message has %d", rel.name, n, rel.ncols)
	}
	if cap(d.values) < n {
		d.values = make([]value, n)
	}
	values := d.values[:n]
	clear(values)
	for i := 0; i < n && !r.short; i++ {
		switch kind := r.uint8(); kind {
		case pglogrepl.TupleDataTypeText:
			values[i] = r.take(int(r.uint32()))
		case pglogrepl.TupleDataTypeNull:
		case pglogrepl.TupleDataTypeBinary:
			return nil, protocolError("insert into %s: column %q is in binary format; the relay needs text format (do not set the binary option)", rel.name, rel.columns[i])
		case pglogrepl.TupleDataTypeToast:
			return nil, protocolError("insert into %s: column %q is an unchanged TOAST value, which only updates may send", rel.name, rel.columns[i])
		default:
			if !r.short {
				return nil, protocolError("insert into %s: column %q has unknown value kind %q", rel.name, rel.columns[i], kind)
			}
		}
	}
	if err := r.end("insert"); err != nil {
		return nil, err
	}
	return values, nil
}

// row builds the event of an insert into the outbox relation rel. A row that cannot be published
// gives a *BadRowError naming every problem.
func (d *Decoder) row(rel *relation, values []value, index int) (Message, error) {
	var sb strings.Builder // one allocation for the three strings
	sb.Grow(len(values[rel.id]) + len(values[rel.channel]) + len(values[rel.eventName]))
	sb.Write(values[rel.id])
	sb.Write(values[rel.channel])
	sb.Write(values[rel.eventName])
	all := sb.String()
	a, b := len(values[rel.id]), len(values[rel.id])+len(values[rel.channel])
	e := Event{
		XID:        d.txn.XID,
		FullXID:    d.txn.FullXID,
		CommitLSN:  d.txn.FinalLSN,
		Index:      index,
		CommitTime: d.txn.CommitTime,
		ID:         all[:a],
		Channel:    all[a:b],
		Name:       all[b:],
	}
	var problems []string
	if values[rel.id] == nil {
		problems = append(problems, "id is NULL")
	}
	problems = append(problems, channelProblems(e.Channel)...)
	if rel.topic >= 0 {
		e.Topic = string(values[rel.topic])
	}
	switch p := values[rel.payload]; {
	case p == nil:
	case !rel.payloadBytea:
		e.Payload = append([]byte{}, p...)
	default:
		raw, err := decodeBytea(p)
		if err != nil {
			problems = append(problems, "payload: "+err.Error())
			raw = append([]byte{}, p...) // the text as received, for a dead-letter record
		}
		e.Payload = raw
	}
	e.Headers = standardHeaders(&e, d.source, len(rel.extras)+2)
	e.Headers = appendOptimistic(e.Headers, rel, values)
	if rel.headers >= 0 && values[rel.headers] != nil {
		headers, err := objectHeaders(values[rel.headers])
		if err != nil {
			problems = append(problems, err.Error())
		}
		e.Headers = append(e.Headers, headers...)
	}
	for i, col := range rel.extras {
		var v []byte
		if values[col] != nil {
			v = append([]byte{}, values[col]...)
		}
		e.Headers = append(e.Headers, record.Header{Key: d.table.ExtraHeaders[i], Value: v})
	}
	if len(problems) > 0 {
		return nil, &BadRowError{ID: e.ID, CommitLSN: e.CommitLSN, Index: index, Reason: strings.Join(problems, "; "), Event: e}
	}
	return Row{Event: e}, nil
}

// appendOptimistic appends the mutation id and rejected headers of a row, for the configured
// columns whose value is not NULL.
func appendOptimistic(h []record.Header, rel *relation, values []value) []record.Header {
	if rel.mutationID >= 0 && values[rel.mutationID] != nil {
		h = append(h, record.Header{Key: record.HeaderMutationID, Value: append([]byte{}, values[rel.mutationID]...)})
	}
	if rel.rejected >= 0 && values[rel.rejected] != nil {
		v := values[rel.rejected]
		switch {
		case rel.rejectedBool && string(v) == "t":
			v = []byte("true")
		case rel.rejectedBool && string(v) == "f":
			v = []byte("false")
		default:
			v = append([]byte{}, v...)
		}
		h = append(h, record.Header{Key: record.HeaderRejected, Value: v})
	}
	return h
}

// decodeBytea decodes the text form of a bytea value: hex ("\x0a1b") or, when the server sets
// bytea_output = escape, the escape format ("a\\b\001").
func decodeBytea(text []byte) ([]byte, error) {
	if hexText, ok := bytes.CutPrefix(text, []byte(`\x`)); ok {
		raw := make([]byte, hex.DecodedLen(len(hexText)))
		if _, err := hex.Decode(raw, hexText); err != nil {
			return nil, fmt.Errorf("bytea text is not valid hex: %w", err)
		}
		return raw, nil
	}
	raw := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c != '\\':
			raw = append(raw, c)
		case i+1 < len(text) && text[i+1] == '\\':
			raw = append(raw, '\\')
			i++
		case i+3 < len(text) && isOctal(text[i+1], '3') && isOctal(text[i+2], '7') && isOctal(text[i+3], '7'):
			raw = append(raw, (text[i+1]-'0')<<6|(text[i+2]-'0')<<3|(text[i+3]-'0'))
			i += 3
		default:
			return nil, fmt.Errorf("bytea text has an invalid escape at byte %d", i)
		}
	}
	return raw, nil
}

func isOctal(c, highest byte) bool { return c >= '0' && c <= highest }

// microsecFromUnixEpochToY2K is the PostgreSQL epoch (2000-01-01 UTC) in Unix microseconds.
const microsecFromUnixEpochToY2K = 946_684_800 * 1_000_000

// pgTime converts a PostgreSQL timestamp (microseconds since 2000-01-01 UTC) to a time.Time.
func pgTime(microsecSinceY2K uint64) time.Time {
	return time.UnixMicro(int64(microsecSinceY2K) + microsecFromUnixEpochToY2K).UTC()
}

// reader reads big-endian protocol fields. Reading past the end sets short and yields zero
// values, so a message is checked once, at its end.
type reader struct {
	buf   []byte
	short bool
}

// take returns the next n bytes, capacity-limited so that appending cannot touch what follows.
func (r *reader) take(n int) []byte {
	if r.short || n < 0 || n > len(r.buf) {
		r.short = true
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func (r *reader) uint8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) uint16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// cstring reads a NUL-terminated string.
func (r *reader) cstring() string {
	i := bytes.IndexByte(r.buf, 0)
	if r.short || i < 0 {
		r.short = true
		return ""
	}
	s := string(r.buf[:i])
	r.buf = r.buf[i+1:]
	return s
}

// end reports a truncated message or trailing bytes.
func (r *reader) end(message string) error {
	if r.short {
		return protocolError("%s message is truncated", message)
	}
	if len(r.buf) > 0 {
		return protocolError("%s message has %d unexpected trailing bytes", message, len(r.buf))
	}
	return nil
}
