package capture

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/pgoutbox/pgoutbox/record"
)

// DefaultMessagePrefix is the prefix of the logical decoding messages that pgoutbox_send emits
// and that the relay publishes (--message-prefix).
const DefaultMessagePrefix = "pgoutbox"

// MessageVersion is the version of the message encoding that this relay reads and that
// `pgoutbox setup` installs: the "v" key of every message.
const MessageVersion = 1

// EventsFrom says which of the application's writes become events: inserts into the outbox
// table, logical decoding messages with the configured prefix (the WAL-only outbox, written by
// pgoutbox_send), or both. The zero value means [FromBoth].
type EventsFrom string

// The values of [EventsFrom].
const (
	// FromBoth publishes the outbox table's inserts and the messages: the default.
	FromBoth EventsFrom = "both"
	// FromTable publishes the table's inserts only; a message with the prefix is a bad row.
	FromTable EventsFrom = "table"
	// FromMessages publishes the messages only; an insert into the outbox table is a bad row.
	FromMessages EventsFrom = "messages"
)

// ParseEventsFrom parses the value of --events-from.
func ParseEventsFrom(s string) (EventsFrom, error) {
	switch f := EventsFrom(s); f {
	case FromBoth, FromTable, FromMessages:
		return f, nil
	}
	return "", fmt.Errorf("capture: events-from %q: use both, table or messages", s)
}

// Table reports whether inserts into the outbox table become events.
func (f EventsFrom) Table() bool { return f != FromMessages }

// Messages reports whether logical decoding messages with the prefix become events.
func (f EventsFrom) Messages() bool { return f != FromTable }

// CheckMessagePrefix reports a prefix that cannot be used: empty, or holding a NUL byte (the
// protocol sends it NUL-terminated).
func CheckMessagePrefix(prefix string) error {
	switch {
	case prefix == "":
		return fmt.Errorf("capture: message prefix is empty")
	case strings.ContainsRune(prefix, 0):
		return fmt.Errorf("capture: message prefix %q contains a NUL byte", prefix)
	}
	return nil
}

// messageV1 is version 1 of the message encoding: a JSON object with every key once (the
// functions build it as text, see sendFunction.content).
//
//	{"v": 1, "channel": "room:1", "name": "message.created", "data": {...},
//	 "headers": {"trace": "abc"}, "mutation_id": "m-17", "rejected": false}
//
// "v" and "channel" are required; every other key is left out when its value is SQL NULL.
// "data" is the payload as JSON (the value is its text, byte for byte what a jsonb column gives),
// "data_base64" the payload as bytes (pgoutbox_send_bytes); at most one of them; neither means a
// NULL payload. "data": null is the JSON value null (the payload "null"), as for a jsonb column.
// Unknown keys make the message a bad row: a key's meaning changes only with "v".
type messageV1 struct {
	V          int             `json:"v"`
	Channel    *string         `json:"channel"`
	Name       *string         `json:"name"`
	Data       json.RawMessage `json:"data"`
	DataBase64 *string         `json:"data_base64"`
	Headers    json.RawMessage `json:"headers"`
	MutationID *string         `json:"mutation_id"`
	Rejected   *bool           `json:"rejected"`
}

// message decodes a pgoutput Message message (a logical decoding message). Messages with
// another prefix are ignored. A message with the prefix becomes a [Row] like an outbox insert,
// or a [*BadRowError]; a non-transactional one is always a bad row (it is decoded even when its
// transaction rolls back, so it must never be published).
func (d *Decoder) message(body []byte) (Message, error) {
	r := reader{buf: body}
	flags := r.uint8()
	lsn := pglogrepl.LSN(r.uint64())
	prefix := r.cstring()
	content := r.take(int(r.uint32()))
	if err := r.end("logical decoding message"); err != nil {
		return nil, err
	}
	transactional := flags&1 != 0
	switch {
	case prefix != d.prefix:
		return nil, nil
	case transactional && !d.inTxn:
		return nil, protocolError("transactional message at %s outside a transaction", lsn)
	case !transactional && d.inTxn:
		return nil, protocolError("non-transactional message at %s inside transaction %d", lsn, d.txn.XID)
	case !transactional:
		e := Event{CommitLSN: lsn, Payload: bytes.Clone(content)}
		e.Headers = standardHeaders(&e, d.source, 1)
		e.Headers[0].Value = nil // no outbox id
		e.Headers = append(e.Headers, record.Header{Key: record.HeaderOriginalMessage, Value: e.Payload})
		return nil, &BadRowError{CommitLSN: lsn, MessageLSN: lsn, Outside: true, Event: e,
			Reason: fmt.Sprintf("non-transactional logical decoding message with prefix %q: PostgreSQL decodes it even when its "+
				"transaction rolls back, so it is never published; call pgoutbox_send(), which emits transactional messages "+
				"(pg_logical_emit_message(true, …))", prefix)}
	}
	index := d.rows
	d.rows++
	e, problems := d.messageEvent(content, index)
	if !d.from.Messages() {
		problems = append([]string{fmt.Sprintf("a logical decoding message with prefix %q, but --events-from=%s publishes "+
			"only the outbox table's inserts: set --events-from=both, or stop calling pgoutbox_send()", prefix, d.from)}, problems...)
	}
	if len(problems) > 0 {
		// The message is the event's only copy: keep it whole, whatever could not be read of it.
		e.Headers = append(e.Headers, record.Header{Key: record.HeaderOriginalMessage, Value: bytes.Clone(content)})
		return nil, &BadRowError{CommitLSN: e.CommitLSN, MessageLSN: lsn, Index: index, Reason: strings.Join(problems, "; "), Event: e}
	}
	return Row{Event: e}, nil
}

// messageEvent builds the event of the content of a transactional message with the prefix, at
// index in the current transaction, and lists what keeps it from being published. When the
// content cannot be read, the event carries the content as its payload (for a dead-letter record).
func (d *Decoder) messageEvent(content []byte, index int) (Event, []string) {
	e := Event{
		XID: d.txn.XID, FullXID: d.txn.FullXID, CommitLSN: d.txn.FinalLSN, Index: index, CommitTime: d.txn.CommitTime,
	}
	m, err := parseMessage(content)
	if err != nil {
		e.Payload = bytes.Clone(content)
		e.Headers = standardHeaders(&e, d.source, 0)
		e.Headers[0].Value = nil
		return e, []string{err.Error()}
	}
	if m.Channel != nil {
		e.Channel = *m.Channel
	}
	if m.Name != nil {
		e.Name = *m.Name
	}
	problems := channelProblems(e.Channel)
	switch {
	case m.Data != nil && m.DataBase64 != nil:
		problems = append(problems, `message has both "data" and "data_base64"`)
	case m.Data != nil:
		e.Payload = bytes.Clone(m.Data)
	case m.DataBase64 != nil:
		raw, err := base64.StdEncoding.DecodeString(*m.DataBase64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("message data_base64 is not valid base64: %v", err))
			raw = []byte(*m.DataBase64)
		}
		e.Payload = raw
	}
	e.Headers = standardHeaders(&e, d.source, 2)
	e.Headers[0].Value = nil // no outbox id: the event lives in the WAL only
	if m.MutationID != nil {
		e.Headers = append(e.Headers, record.Header{Key: record.HeaderMutationID, Value: []byte(*m.MutationID)})
	}
	if m.Rejected != nil {
		e.Headers = append(e.Headers, record.Header{Key: record.HeaderRejected, Value: []byte(fmt.Sprint(*m.Rejected))})
	}
	if m.Headers != nil && string(m.Headers) != "null" {
		headers, err := objectHeaders(m.Headers)
		if err != nil {
			problems = append(problems, strings.Replace(err.Error(), "headers column", `message "headers"`, 1))
		}
		e.Headers = append(e.Headers, headers...)
	}
	return e, problems
}

// parseMessage reads the content of a message with the prefix. The error is the reason it is
// a bad row.
func parseMessage(content []byte) (messageV1, error) {
	var m messageV1
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.DisallowUnknownFields()
	err := dec.Decode(&m)
	if err == nil && dec.More() {
		err = fmt.Errorf("data after the JSON object")
	}
	if err == nil && m.V == MessageVersion {
		return m, nil
	}
	// Not a valid version 1 event: say why, the version first (a newer function's keys are
	// unknown to this relay).
	var version struct {
		V *int `json:"v"`
	}
	switch verr := json.Unmarshal(content, &version); {
	case verr != nil && err != nil:
		return m, fmt.Errorf("message content is not a pgoutbox event (a JSON object): %w", err)
	case version.V == nil:
		return m, fmt.Errorf(`message content has no "v" key: not a pgoutbox event`)
	case *version.V != MessageVersion:
		return m, fmt.Errorf("message encoding version %d is not known to this relay (it reads version %d): "+
			"upgrade pgoutbox, or run the pgoutbox setup of this version again", *version.V, MessageVersion)
	}
	return m, fmt.Errorf("message content does not match encoding version %d: %w", MessageVersion, err)
}

// channelProblems lists what keeps channel from being an event's key.
func channelProblems(channel string) []string {
	var problems []string
	if channel == "" {
		problems = append(problems, "channel is NULL or empty")
	}
	if strings.ContainsRune(channel, ',') {
		problems = append(problems, fmt.Sprintf("channel %q contains a comma: fan-out servers (Centrifugo) read the "+
			"pgoutbox-channel header as a comma-separated list of channels; use another separator", channel))
	}
	return problems
}
