package capture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgoutbox/pgoutbox/record"
)

// Event is one outbox row, ready to publish. It holds no reference to the replication buffer.
type Event struct {
	XID        uint32        // transaction id, as pgoutput sends it (32 bits)
	FullXID    uint64        // the full 64-bit transaction id (xid8): the pgoutbox-xid header
	CommitLSN  pglogrepl.LSN // commit LSN of the transaction (the Begin message's FinalLSN)
	Index      int           // 0-based index of this row among the transaction's outbox rows
	CommitTime time.Time     // commit time of the transaction; the Kafka timestamp
	ID         string        // the id column as text
	Channel    string        // the Kafka key; never empty in a Row
	Name       string        // the event name; "" when NULL
	Topic      string        // from the topic column; "" = use the configured topic

	// DeadLetter, when not "", says why the row cannot be published (a *BadRowError's reason,
	// with StreamConfig.DeadLetterBadRows): the sink sends it to its dead-letter topic as a
	// dead-letter record of stage record.StageDecode, instead of to Topic.
	DeadLetter string

	// Payload is the payload column as stored: json and jsonb give their JSON text, bytea its
	// raw bytes, any other type its text form. A NULL payload is nil (a Kafka null value, which
	// is a tombstone on compacted topics); an empty one is non-nil and empty.
	Payload []byte

	// Headers are the pgoutbox-* headers in the order of the record package's Header*
	// constants, then each key of the row's headers object in sorted order, then each extra
	// header column in the configured order.
	Headers []record.Header
}

// Approximate fixed costs, in bytes, of an Event and of a Header (struct, slice and string
// headers, allocation rounding), so that empty events still count.
const (
	eventOverhead  = 160
	headerOverhead = 48
)

// Size returns the approximate number of bytes the event holds in memory (payload, headers, key
// and strings), for bounding the in-flight window.
func (e *Event) Size() int {
	n := eventOverhead + len(e.ID) + len(e.Channel) + len(e.Name) + len(e.Topic) + len(e.DeadLetter) + len(e.Payload)
	for _, h := range e.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// Position returns the row's commit position: the commit LSN and the row's index (the
// pgoutbox-position header's value).
func (e *Event) Position() record.Position {
	return record.Position{LSN: record.LSN(e.CommitLSN), Index: uint32(e.Index)}
}

// standardHeaders returns the pgoutbox-* headers of e, from the id to the channel and the source
// header when source is not nil (see [record.StandardHeaders]), with room for extra more.
func standardHeaders(e *Event, source []byte, extra int) []record.Header {
	return record.StandardHeaders(record.Fields{ID: e.ID, Name: e.Name, Position: e.Position(), XID: e.FullXID, Channel: e.Channel}, source, extra)
}

// objectHeaders returns the headers held by a JSON object, in sorted key order: a string value
// gives its string, null gives a nil value, any other value its compact JSON text. The returned
// headers do not refer to text. The error is the reason the row is bad.
func objectHeaders(text []byte) ([]record.Header, error) {
	trimmed := bytes.TrimLeft(text, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("headers column holds %s, not a JSON object", jsonKind(trimmed))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(text, &obj); err != nil {
		return nil, fmt.Errorf("headers column is not valid JSON: %w", err)
	}
	headers := make([]record.Header, 0, len(obj))
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		if strings.HasPrefix(key, record.HeaderPrefix) {
			return nil, fmt.Errorf("headers column has key %q: keys starting with %q are reserved for pgoutbox", key, record.HeaderPrefix)
		}
		value, err := headerValue(obj[key])
		if err != nil {
			return nil, fmt.Errorf("headers column key %q: %w", key, err)
		}
		headers = append(headers, record.Header{Key: key, Value: value})
	}
	return headers, nil
}

// headerValue converts one JSON value into a header value.
func headerValue(raw json.RawMessage) ([]byte, error) {
	switch jsonKind(raw) {
	case "null":
		return nil, nil
	case "a string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
}

// jsonKind names the kind of the JSON value that starts text (no leading white space).
func jsonKind(text []byte) string {
	if len(text) == 0 {
		return "nothing"
	}
	switch text[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number or invalid JSON"
	}
}
