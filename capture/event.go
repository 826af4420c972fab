package capture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// Keys of the headers that pgoutbox puts first on every record, in this order. Keys starting
// with [HeaderPrefix] are reserved: a row whose headers object uses one is a bad row.
const (
	// HeaderPrefix starts every header key reserved for pgoutbox.
	HeaderPrefix = "pgoutbox-"
	// HeaderID holds the row's id column as text.
	HeaderID = "pgoutbox-id"
	// HeaderName holds the row's event name.
	HeaderName = "pgoutbox-name"
	// HeaderCommitLSN holds the transaction's commit LSN in PostgreSQL's form: 16/B374D848.
	HeaderCommitLSN = "pgoutbox-commit-lsn"
	// HeaderCommitIndex holds the row's index among the transaction's outbox rows, in decimal.
	HeaderCommitIndex = "pgoutbox-commit-index"
	// HeaderPosition holds the commit position (see [Event.Position]); consumers order and
	// de-duplicate by it.
	HeaderPosition = "pgoutbox-position"
	// HeaderXID holds the transaction's full 64-bit id (xid8, the numbering of
	// pg_current_xact_id() and pg_current_snapshot()), in decimal.
	HeaderXID = "pgoutbox-xid"
	// HeaderSource identifies the stream the record comes from (see [Source.Header]): a later
	// session trusts a partition's last record to say how far the partition got only when it
	// names the same system, timeline lineage and slot. Absent when the Decoder has no source.
	HeaderSource = "pgoutbox-source"
	// HeaderChannel holds the channel, equal to the key, for fan-out servers that read the
	// channel from a header (Centrifugo's Kafka consumer in publication data mode).
	HeaderChannel = "pgoutbox-channel"
	// HeaderMutationID holds the row's mutation id column (see [Table.MutationID]), when
	// configured and not NULL: the id a client gave its optimistic update.
	HeaderMutationID = "pgoutbox-mutation-id"
	// HeaderRejected holds the row's rejected column (see [Table.Rejected]), when configured and
	// not NULL: "true" when the server rejected the client's optimistic update, else "false"
	// (a boolean column; any other type gives its text).
	HeaderRejected = "pgoutbox-rejected"
	// HeaderError holds, on a dead-letter record, why the row could not be published.
	HeaderError = "pgoutbox-error"
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

	// Payload is the payload column as stored: json and jsonb give their JSON text, bytea its
	// raw bytes, any other type its text form. A NULL payload is nil (a Kafka null value, which
	// is a tombstone on compacted topics); an empty one is non-nil and empty.
	Payload []byte

	// Headers are the pgoutbox-* headers in the order of the Header* constants, then each key
	// of the row's headers object in sorted order, then each extra header column in the
	// configured order.
	Headers []Header
}

// Header is one Kafka record header. A nil Value is a null header value.
type Header struct {
	Key   string
	Value []byte
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
	n := eventOverhead + len(e.ID) + len(e.Channel) + len(e.Name) + len(e.Topic) + len(e.Payload)
	for _, h := range e.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// Position returns the row's commit position as a string that sorts lexicographically in commit
// order: the commit LSN and the index, in fixed-width upper-case hex ("0000001600B374D8-00000003").
func (e *Event) Position() string {
	return position(e.CommitLSN, e.Index)
}

func position(lsn pglogrepl.LSN, index int) string {
	return fmt.Sprintf("%016X-%08X", uint64(lsn), index)
}

// positionHeaders returns the pgoutbox-* headers of e, from the id to the channel, with room
// for extra more headers, and the source header when source is not nil (its value is shared by
// all events: never modify it). The seven other values share one allocation, formatted without
// fmt.
func positionHeaders(e *Event, source []byte, extra int) []Header {
	buf := make([]byte, 0, len(e.ID)+len(e.Name)+len(e.Channel)+17+20+34+20)
	field := func(start int) []byte { return buf[start:len(buf):len(buf)] }
	s := len(buf)
	buf = append(buf, e.ID...)
	id := field(s)
	s = len(buf)
	buf = append(buf, e.Name...)
	name := field(s)
	s = len(buf)
	buf = appendHex(buf, uint64(e.CommitLSN)>>32, 0)
	buf = append(buf, '/')
	buf = appendHex(buf, uint64(e.CommitLSN)&0xFFFFFFFF, 0)
	lsn := field(s)
	s = len(buf)
	buf = strconv.AppendInt(buf, int64(e.Index), 10)
	index := field(s)
	s = len(buf)
	buf = appendHex(buf, uint64(e.CommitLSN), 16)
	buf = append(buf, '-')
	buf = appendHex(buf, uint64(e.Index), 8)
	pos := field(s)
	s = len(buf)
	buf = strconv.AppendUint(buf, e.FullXID, 10)
	xid := field(s)
	s = len(buf)
	buf = append(buf, e.Channel...)
	channel := field(s)
	h := make([]Header, 0, 8+extra)
	h = append(h,
		Header{HeaderID, id}, Header{HeaderName, name}, Header{HeaderCommitLSN, lsn},
		Header{HeaderCommitIndex, index}, Header{HeaderPosition, pos}, Header{HeaderXID, xid},
		Header{HeaderChannel, channel})
	if source != nil {
		h = append(h, Header{HeaderSource, source})
	}
	return h
}

// appendHex appends v in upper-case hex, zero-padded to width digits.
func appendHex(b []byte, v uint64, width int) []byte {
	const digits = "0123456789ABCDEF"
	var tmp [16]byte
	i := len(tmp)
	for v > 0 || i == len(tmp) {
		i--
		tmp[i] = digits[v&0xF]
		v >>= 4
	}
	for len(tmp)-i < width {
		i--
		tmp[i] = '0'
	}
	return append(b, tmp[i:]...)
}

// objectHeaders returns the headers held by a JSON object, in sorted key order: a string value
// gives its string, null gives a nil value, any other value its compact JSON text. The returned
// headers do not refer to text. The error is the reason the row is bad.
func objectHeaders(text []byte) ([]Header, error) {
	trimmed := bytes.TrimLeft(text, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("headers column holds %s, not a JSON object", jsonKind(trimmed))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(text, &obj); err != nil {
		return nil, fmt.Errorf("headers column is not valid JSON: %w", err)
	}
	headers := make([]Header, 0, len(obj))
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		if strings.HasPrefix(key, HeaderPrefix) {
			return nil, fmt.Errorf("headers column has key %q: keys starting with %q are reserved for pgoutbox", key, HeaderPrefix)
		}
		value, err := headerValue(obj[key])
		if err != nil {
			return nil, fmt.Errorf("headers column key %q: %w", key, err)
		}
		headers = append(headers, Header{Key: key, Value: value})
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
