package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgoutbox/pgoutbox/capture"

	"github.com/pgoutbox/pgoutbox/record"
)

// Builders of pgoutput protocol version 1 messages, after
// https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html.
// TestBuilders_MatchPglogrepl checks them against pglogrepl's parser.

// Type OIDs used in the tests.
const (
	oidBytea       = 17
	oidInt8        = 20
	oidText        = 25
	oidJSON        = 114
	oidTimestamptz = 1184
	oidJSONB       = 3802
)

type wire []byte

func (w wire) u8(v byte) wire           { return append(w, v) }
func (w wire) u16(v uint16) wire        { return binary.BigEndian.AppendUint16(w, v) }
func (w wire) u32(v uint32) wire        { return binary.BigEndian.AppendUint32(w, v) }
func (w wire) u64(v uint64) wire        { return binary.BigEndian.AppendUint64(w, v) }
func (w wire) str(s string) wire        { return append(append(w, s...), 0) }
func (w wire) lsn(l pglogrepl.LSN) wire { return w.u64(uint64(l)) }
func (w wire) time(t time.Time) wire {
	return w.u64(uint64(t.UnixMicro() - 946_684_800_000_000))
}

func beginMsg(finalLSN pglogrepl.LSN, commitTime time.Time, xid uint32) []byte {
	return wire{'B'}.lsn(finalLSN).time(commitTime).u32(xid)
}

func commitMsg(commitLSN, endLSN pglogrepl.LSN, commitTime time.Time) []byte {
	return wire{'C'}.u8(0).lsn(commitLSN).lsn(endLSN).time(commitTime)
}

// col is one column of a Relation message.
type col struct {
	name string
	oid  uint32
}

func relationMsg(id uint32, namespace, name string, cols ...col) []byte {
	w := wire{'R'}.u32(id).str(namespace).str(name).u8('d').u16(uint16(len(cols)))
	for i, c := range cols {
		flags := byte(0)
		if i == 0 {
			flags = 1 // part of the key
		}
		w = w.u8(flags).str(c.name).u32(c.oid).u32(0xFFFFFFFF) // typmod -1
	}
	return w
}

// val is one column of a TupleData.
type val struct {
	kind byte
	data string
}

func text(s string) val { return val{'t', s} }

var (
	null    = val{kind: 'n'}
	toast   = val{kind: 'u'}
	binary1 = val{'b', "\x00\x00\x00\x01"}
)

func (w wire) tuple(vals []val) wire {
	w = w.u16(uint16(len(vals)))
	for _, v := range vals {
		w = w.u8(v.kind)
		if v.kind == 't' || v.kind == 'b' {
			w = append(w.u32(uint32(len(v.data))), v.data...)
		}
	}
	return w
}

func insertMsg(relID uint32, vals ...val) []byte {
	return wire{'I'}.u32(relID).u8('N').tuple(vals)
}

func updateMsg(relID uint32, vals ...val) []byte {
	return wire{'U'}.u32(relID).u8('N').tuple(vals)
}

func deleteMsg(relID uint32, key ...val) []byte {
	return wire{'D'}.u32(relID).u8('K').tuple(key)
}

func truncateMsg(relIDs ...uint32) []byte {
	w := wire{'T'}.u32(uint32(len(relIDs))).u8(0)
	for _, id := range relIDs {
		w = w.u32(id)
	}
	return w
}

func typeMsg(oid uint32, namespace, name string) []byte {
	return wire{'Y'}.u32(oid).str(namespace).str(name)
}

func originMsg(lsn pglogrepl.LSN, name string) []byte {
	return wire{'O'}.lsn(lsn).str(name)
}

func logicalMsg(transactional bool, lsn pglogrepl.LSN, prefix, content string) []byte {
	flags := byte(0)
	if transactional {
		flags = 1
	}
	return append(wire{'M'}.u8(flags).lsn(lsn).str(prefix).u32(uint32(len(content))), content...)
}

// The outbox of the documented schema, relation id outboxID.
const outboxID = 16385

var (
	outboxCols = []col{
		{"sequence_id", oidInt8}, {"channel", oidText}, {"name", oidText},
		{"data", oidJSONB}, {"headers", oidJSONB}, {"created_at", oidTimestamptz},
	}
	commitTime = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
)

const (
	txnLSN = pglogrepl.LSN(0x16_B374D848)
	endLSN = pglogrepl.LSN(0x16_B374D880)
	txnXID = 7781
)

func outboxRelation() []byte { return relationMsg(outboxID, "public", "outbox", outboxCols...) }
func begin() []byte          { return beginMsg(txnLSN, commitTime, txnXID) }
func commit() []byte         { return commitMsg(txnLSN, endLSN, commitTime) }

// outboxInsert inserts a row into the documented outbox.
func outboxInsert(id, channel, name, data, headers val) []byte {
	return insertMsg(outboxID, id, channel, name, data, headers, text("2025-03-14 15:09:26.535897+00"))
}

// positionHeaders are the pgoutbox-* headers of a row of the test transaction.
func positionHeaders(id, name, channel, index string) []record.Header {
	return []record.Header{
		{Key: "pgoutbox-id", Value: []byte(id)},
		{Key: "pgoutbox-name", Value: []byte(name)},
		{Key: "pgoutbox-commit-lsn", Value: []byte("16/B374D848")},
		{Key: "pgoutbox-commit-index", Value: []byte(index)},
		{Key: "pgoutbox-position", Value: []byte("00000016B374D848-0000000" + index)},
		{Key: "pgoutbox-xid", Value: []byte("7781")},
		{Key: "pgoutbox-channel", Value: []byte(channel)},
	}
}

func event(index int, id, channel, name string, payload []byte, headers ...record.Header) capture.Event {
	return capture.Event{
		XID: txnXID, FullXID: txnXID, CommitLSN: txnLSN, Index: index, CommitTime: commitTime,
		ID: id, Channel: channel, Name: name, Payload: payload,
		Headers: append(positionHeaders(id, name, channel, string(rune('0'+index))), headers...),
	}
}

func row(e capture.Event) capture.Message { return capture.Row{Event: e} }

var (
	beginWant  = capture.Begin{XID: txnXID, FullXID: txnXID, FinalLSN: txnLSN, CommitTime: commitTime}
	commitWant = capture.Commit{CommitLSN: txnLSN, EndLSN: endLSN, CommitTime: commitTime}
)

// step is one message given to the decoder and what it must return.
type step struct {
	in      []byte
	want    capture.Message // nil: no message
	wantErr error           // the sentinel the error must match; nil: no error
	check   func(t *testing.T, err error)
}

func run(t *testing.T, table capture.Table, steps []step) {
	t.Helper()
	runDecoder(t, capture.NewDecoder(table), steps)
}

func runDecoder(t *testing.T, d *capture.Decoder, steps []step) {
	t.Helper()
	for i, s := range steps {
		got, err := d.Decode(s.in)
		name := string(s.in[:min(len(s.in), 1)])
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("step %d (%q): unexpected error: %v", i, name, err)
		case s.wantErr != nil && !errors.Is(err, s.wantErr):
			t.Fatalf("step %d (%q): error %v, want %v", i, name, err, s.wantErr)
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d (%q):\n got %#v\nwant %#v", i, name, got, s.want)
		}
		if s.check != nil {
			s.check(t, err)
		}
	}
}

func TestDecoder_DecodeTransaction(t *testing.T) {
	t.Parallel()
	run(t, capture.DefaultTable(), []step{
		{in: outboxRelation()},
		{in: begin(), want: beginWant},
		{in: originMsg(0x10, "node_a")},
		{
			in: outboxInsert(text("41"), text("room:1"), text("message.created"),
				text(`{"id": 1, "body": "hi"}`),
				text(`{"trace": "abc", "attempt": 2, "gone": null, "tags": {"a": [1, 2]}, "flag": true}`)),
			want: row(event(0, "41", "room:1", "message.created", []byte(`{"id": 1, "body": "hi"}`),
				record.Header{Key: "attempt", Value: []byte("2")},
				record.Header{Key: "flag", Value: []byte("true")},
				record.Header{Key: "gone", Value: nil},
				record.Header{Key: "tags", Value: []byte(`{"a":[1,2]}`)},
				record.Header{Key: "trace", Value: []byte("abc")},
			)),
		},
		{
			in:   outboxInsert(text("42"), text("room:2"), null, null, null),
			want: row(event(1, "42", "room:2", "", nil)),
		},
		{in: commit(), want: commitWant},
		// The next transaction numbers its rows from 0 again.
		{in: beginMsg(txnLSN+0x100, commitTime, txnXID+1), want: capture.Begin{XID: txnXID + 1, FullXID: txnXID + 1, FinalLSN: txnLSN + 0x100, CommitTime: commitTime}},
		{
			in: outboxInsert(text("43"), text("room:1"), text("x"), text("{}"), text("{}")),
			want: row(capture.Event{
				XID: txnXID + 1, FullXID: txnXID + 1, CommitLSN: txnLSN + 0x100, Index: 0, CommitTime: commitTime,
				ID: "43", Channel: "room:1", Name: "x", Payload: []byte("{}"),
				Headers: []record.Header{
					{Key: "pgoutbox-id", Value: []byte("43")},
					{Key: "pgoutbox-name", Value: []byte("x")},
					{Key: "pgoutbox-commit-lsn", Value: []byte("16/B374D948")},
					{Key: "pgoutbox-commit-index", Value: []byte("0")},
					{Key: "pgoutbox-position", Value: []byte("00000016B374D948-00000000")},
					{Key: "pgoutbox-xid", Value: []byte("7782")},
					{Key: "pgoutbox-channel", Value: []byte("room:1")},
				},
			}),
		},
		{in: commitMsg(txnLSN+0x100, txnLSN+0x130, commitTime), want: capture.Commit{CommitLSN: txnLSN + 0x100, EndLSN: txnLSN + 0x130, CommitTime: commitTime}},
	})
}

func TestDecoder_Decode(t *testing.T) {
	t.Parallel()
	withTopic := capture.DefaultTable()
	withTopic.Topic = "topic"
	withExtra := capture.DefaultTable()
	withExtra.ExtraHeaders = []string{"tenant"}
	appOutbox := capture.DefaultTable()
	appOutbox.Schema = "app"

	byteaCols := append([]col(nil), outboxCols...)
	byteaCols[3] = col{"data", oidBytea}
	textCols := append([]col(nil), outboxCols...)
	textCols[3] = col{"data", oidText}
	textCols[4] = col{"headers", oidJSON}

	badRow := func(id string, index int, reason string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			bad, ok := errors.AsType[*capture.BadRowError](err)
			if !ok {
				t.Fatalf("error %v is not a *BadRowError", err)
			}
			if bad.ID != id || bad.CommitLSN != txnLSN || bad.Index != index || !strings.Contains(bad.Reason, reason) {
				t.Errorf("BadRowError{ID: %q, CommitLSN: %s, Index: %d, Reason: %q}, want id %q, index %d, reason containing %q",
					bad.ID, bad.CommitLSN, bad.Index, bad.Reason, id, index, reason)
			}
			if bad.Event.Index != index || bad.Event.CommitLSN != txnLSN || bad.Event.ID != id {
				t.Errorf("BadRowError.Event has position %s/%d id %q", bad.Event.CommitLSN, bad.Event.Index, bad.Event.ID)
			}
		}
	}
	errContains := func(parts ...string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			for _, p := range parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not contain %q", err, p)
				}
			}
		}
	}
	good := func(id string) []byte {
		return outboxInsert(text(id), text("c"), text("n"), text("{}"), null)
	}

	tests := []struct {
		name  string
		table capture.Table
		steps []step
	}{
		{
			name:  "ignored messages",
			table: capture.DefaultTable(),
			steps: []step{
				{in: logicalMsg(false, 0x10, "other", "heartbeat")},
				{in: relationMsg(16400, "public", "orders", col{"id", oidInt8}, col{"total", oidText})},
				{in: relationMsg(16401, "app", "outbox", outboxCols...)}, // same name, other schema
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: typeMsg(16500, "public", "mood")},
				{in: originMsg(0x10, "node_a")},
				{in: insertMsg(16400, text("1"), text("9.99"))},
				{in: insertMsg(16401, text("1"), text("c"), text("n"), null, null, null)},
				{in: logicalMsg(true, 0x10, "app", "x")},
				{in: updateMsg(outboxID, text("1"), text("c"), text("n"), null, null, null)},
				{in: deleteMsg(outboxID, text("1"), null, null, null, null, null)},
				{in: truncateMsg(outboxID, 16400)},
				// Other tables' inserts do not count: this row is index 0.
				{in: good("1"), want: row(event(0, "1", "c", "n", []byte("{}")))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name:  "relation replaced with reordered and added columns",
			table: capture.DefaultTable(),
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: good("1"), want: row(event(0, "1", "c", "n", []byte("{}")))},
				{in: relationMsg(outboxID, "public", "outbox", append([]col{{"note", oidText}}, outboxCols...)...)},
				{
					in:   insertMsg(outboxID, text("note"), text("2"), text("c2"), text("n2"), text("[1]"), null, null),
					want: row(event(1, "2", "c2", "n2", []byte("[1]"))),
				},
				{in: good("3"), wantErr: capture.ErrProtocol, check: errContains("has 6 columns", "has 7")},
			},
		},
		{
			name:  "extra header column picked up once it appears",
			table: withExtra,
			steps: []step{
				{in: outboxRelation(), wantErr: capture.ErrSchema, check: errContains(`no column "tenant"`, "extra header", "--extra-header-columns")},
				{in: begin(), want: beginWant},
				{in: good("1"), wantErr: capture.ErrSchema},
				{in: relationMsg(outboxID, "public", "outbox", append(append([]col(nil), outboxCols...), col{"tenant", oidText})...)},
				{
					in:   insertMsg(outboxID, text("2"), text("c"), text("n"), text("{}"), text(`{"z": "1"}`), null, text("acme")),
					want: row(event(0, "2", "c", "n", []byte("{}"), record.Header{Key: "z", Value: []byte("1")}, record.Header{Key: "tenant", Value: []byte("acme")})),
				},
				{
					in:   insertMsg(outboxID, text("3"), text("c"), text("n"), text("{}"), null, null, null),
					want: row(event(1, "3", "c", "n", []byte("{}"), record.Header{Key: "tenant", Value: nil})),
				},
			},
		},
		{
			name:  "missing payload column",
			table: capture.DefaultTable(),
			steps: []step{{
				in: relationMsg(outboxID, "public", "outbox",
					col{"sequence_id", oidInt8}, col{"channel", oidText}, col{"name", oidText}, col{"headers", oidJSONB}),
				wantErr: capture.ErrSchema,
				check: func(t *testing.T, err error) {
					const want = `capture: outbox table "public"."outbox" has no column "data" (configured as the payload column): add it or set --payload-column; ` +
						`rows written while it was missing cannot be decoded as configured even once it is back: run with --on-bad-row=dead-letter, ` +
						"which sets each aside on the dead-letter topic as its event with that column taken as NULL and goes on; " +
						"then `pgoutbox dlq redrive` shows them and `pgoutbox dlq redrive --apply` publishes them, in commit order, each once"
					if err.Error() != want {
						t.Errorf("error:\n got %s\nwant %s", err, want)
					}
					se, ok := errors.AsType[*capture.SchemaError](err)
					if !ok || se.Column != "data" || se.Role != "payload" || se.Table != `"public"."outbox"` {
						t.Errorf("SchemaError = %+v", se)
					}
				},
			}},
		},
		{
			name:  "several missing columns reported at once",
			table: withTopic,
			steps: []step{{
				in:      relationMsg(outboxID, "public", "outbox", col{"sequence_id", oidInt8}, col{"name", oidText}, col{"data", oidJSONB}, col{"headers", oidJSONB}),
				wantErr: capture.ErrSchema,
				check:   errContains(`no column "channel"`, `no column "topic"`, "--topic-column"),
			}},
		},
		{
			name:  "bad rows keep their index and the decoder goes on",
			table: capture.DefaultTable(),
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{
					in:      outboxInsert(text("1"), null, text("n"), text("{}"), null),
					wantErr: capture.ErrBadRow,
					check: func(t *testing.T, err error) {
						badRow("1", 0, "channel is NULL")(t, err)
						const want = "capture: cannot publish outbox row id=1 at commit 16/B374D848 index 0: channel is NULL or empty: " +
							"fix the application that writes the outbox; to go on, route bad rows to a dead-letter topic"
						if err.Error() != want {
							t.Errorf("error:\n got %s\nwant %s", err, want)
						}
					},
				},
				{in: good("2"), want: row(event(1, "2", "c", "n", []byte("{}")))},
				{in: outboxInsert(text("3"), text(""), text("n"), null, null), wantErr: capture.ErrBadRow, check: badRow("3", 2, "channel is NULL or empty")},
				{in: outboxInsert(null, text("c"), text("n"), null, null), wantErr: capture.ErrBadRow, check: errContains("id=NULL", "index 3", "id is NULL")},
				{in: outboxInsert(text("5"), text("c"), text("n"), null, text(`["a"]`)), wantErr: capture.ErrBadRow, check: badRow("5", 4, "headers column holds an array, not a JSON object")},
				{in: outboxInsert(text("6"), text("c"), text("n"), null, text(`"s"`)), wantErr: capture.ErrBadRow, check: badRow("6", 5, "a string, not a JSON object")},
				{in: outboxInsert(text("7"), text("c"), text("n"), null, text(`{"a": `)), wantErr: capture.ErrBadRow, check: badRow("7", 6, "not valid JSON")},
				{in: outboxInsert(text("8"), text("c"), text("n"), null, text(`{"pgoutbox-position": "0"}`)), wantErr: capture.ErrBadRow, check: badRow("8", 7, "reserved")},
				{in: outboxInsert(null, null, text("n"), null, text("1")), wantErr: capture.ErrBadRow, check: errContains("id is NULL; channel is NULL or empty; headers column holds a number")},
				{in: good("10"), want: row(event(9, "10", "c", "n", []byte("{}")))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name:  "payload encodings",
			table: capture.DefaultTable(),
			steps: []step{
				{in: relationMsg(outboxID, "public", "outbox", byteaCols...)},
				{in: begin(), want: beginWant},
				{in: outboxInsert(text("1"), text("c"), text("n"), text(`\x000aFF7b`), null), want: row(event(0, "1", "c", "n", []byte{0x00, 0x0a, 0xff, 0x7b}))},
				{in: outboxInsert(text("2"), text("c"), text("n"), text(`\x`), null), want: row(event(1, "2", "c", "n", []byte{}))},
				{in: outboxInsert(text("3"), text("c"), text("n"), text(`\x0g`), null), wantErr: capture.ErrBadRow, check: func(t *testing.T, err error) {
					badRow("3", 2, "payload: bytea text is not valid hex")(t, err)
					if bad, _ := errors.AsType[*capture.BadRowError](err); string(bad.Event.Payload) != `\x0g` || bad.Event.Channel != "c" {
						t.Errorf("BadRowError.Event = %+v, want the payload text as received", bad.Event)
					}
				}},
				{in: outboxInsert(text("4"), text("c"), text("n"), text(`\x0`), null), wantErr: capture.ErrBadRow, check: badRow("4", 3, "not valid hex")},
				{in: outboxInsert(text("5"), text("c"), text("n"), text(`a\\b\001\377`), null), want: row(event(4, "5", "c", "n", []byte{'a', '\\', 'b', 1, 0xff}))},
				{in: outboxInsert(text("6"), text("c"), text("n"), text(`a\9`), null), wantErr: capture.ErrBadRow, check: badRow("6", 5, "invalid escape")},
				{in: outboxInsert(text("7"), text("c"), text("n"), null, null), want: row(event(6, "7", "c", "n", nil))},
				{in: relationMsg(outboxID, "public", "outbox", outboxCols...)},
				{in: outboxInsert(text("8"), text("c"), text("n"), text(`{"b": [1, 2], "a": "é"}`), null), want: row(event(7, "8", "c", "n", []byte(`{"b": [1, 2], "a": "é"}`)))},
				{in: outboxInsert(text("9"), text("c"), text("n"), text(`\x00`), null), want: row(event(8, "9", "c", "n", []byte(`\x00`)))},
				{in: relationMsg(outboxID, "public", "outbox", textCols...)},
				{in: outboxInsert(text("10"), text("c"), text("n"), text(""), text(`{"k":"v"}`)), want: row(event(9, "10", "c", "n", []byte{}, record.Header{Key: "k", Value: []byte("v")}))},
			},
		},
		{
			name:  "topic column",
			table: withTopic,
			steps: []step{
				{in: relationMsg(outboxID, "public", "outbox", append(append([]col(nil), outboxCols...), col{"topic", oidText})...)},
				{in: begin(), want: beginWant},
				{
					in: insertMsg(outboxID, text("1"), text("c"), text("n"), null, null, null, text("orders")),
					want: row(func() capture.Event {
						e := event(0, "1", "c", "n", nil)
						e.Topic = "orders"
						return e
					}()),
				},
				{in: insertMsg(outboxID, text("2"), text("c"), text("n"), null, null, null, null), want: row(event(1, "2", "c", "n", nil))},
			},
		},
		{
			name:  "outbox in another schema",
			table: appOutbox,
			steps: []step{
				{in: outboxRelation()},
				{in: relationMsg(outboxID+1, "app", "outbox", outboxCols...)},
				{in: begin(), want: beginWant},
				{in: good("1")},
				{in: insertMsg(outboxID+1, text("2"), text("c"), text("n"), text("{}"), null, null), want: row(event(0, "2", "c", "n", []byte("{}")))},
			},
		},
		{
			name:  "outbox renamed while streaming",
			table: capture.DefaultTable(),
			steps: []step{
				{in: outboxRelation()},
				{in: relationMsg(outboxID, "public", "outbox_old", outboxCols...), wantErr: capture.ErrSchema, check: errContains(`renamed to "public"."outbox_old"`)},
				{in: begin(), want: beginWant},
				{in: good("1"), wantErr: capture.ErrSchema},
				{in: relationMsg(outboxID, "public", "outbox_older", outboxCols...), wantErr: capture.ErrSchema},
				{in: outboxRelation()},
				{in: good("2"), want: row(event(0, "2", "c", "n", []byte("{}")))},
			},
		},
		{
			name:  "insert with unknown relation id",
			table: capture.DefaultTable(),
			steps: []step{
				{in: begin(), want: beginWant},
				{in: good("1"), wantErr: capture.ErrUnknownRelation, check: errContains("relation id 16385")},
			},
		},
		{
			name:  "out of sequence",
			table: capture.DefaultTable(),
			steps: []step{
				{in: outboxRelation()},
				{in: good("1"), wantErr: capture.ErrProtocol, check: errContains("outside a transaction")},
				{in: commit(), wantErr: capture.ErrProtocol, check: errContains("commit at 16/B374D848 outside a transaction")},
				{in: begin(), want: beginWant},
				{in: beginMsg(txnLSN+1, commitTime, 9), wantErr: capture.ErrProtocol, check: errContains("begin of xid 9 while xid 7781 is open")},
				{in: commit(), want: commitWant},
				{in: good("2"), wantErr: capture.ErrProtocol},
			},
		},
		{
			name:  "values the relay does not request",
			table: capture.DefaultTable(),
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: outboxInsert(binary1, text("c"), text("n"), null, null), wantErr: capture.ErrProtocol, check: errContains(`column "sequence_id" is in binary format`)},
				{in: outboxInsert(text("1"), text("c"), text("n"), toast, null), wantErr: capture.ErrProtocol, check: errContains(`column "data" is an unchanged TOAST value`)},
				{in: outboxInsert(text("1"), text("c"), text("n"), val{kind: 'x'}, null), wantErr: capture.ErrProtocol, check: errContains("unknown value kind 'x'")},
				{in: wire{'S'}.u32(1).u8(1), wantErr: capture.ErrProtocol, check: errContains("unexpected message type 'S'")},
				{in: []byte{}, wantErr: capture.ErrProtocol},
				// Rejected values took no index: the next row is index 0.
				{in: good("2"), want: row(event(0, "2", "c", "n", []byte("{}")))},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run(t, tt.table, tt.steps)
		})
	}
}

// Every truncation of a message and every message with a trailing byte is an error, never a panic.
func TestDecoder_DecodeTruncatedAndTrailing(t *testing.T) {
	t.Parallel()
	msgs := map[string][]byte{
		"begin":    begin(),
		"commit":   commit(),
		"relation": outboxRelation(),
		"insert":   outboxInsert(text("1"), text("c"), text("n"), text("{}"), null),
	}
	for name, msg := range msgs {
		for n := 0; n <= len(msg); n++ {
			in := msg[:n:n]
			if n == len(msg) {
				in = append(in, 0)
			}
			d := capture.NewDecoder(capture.DefaultTable())
			prime := [][]byte{outboxRelation(), begin()}
			if name == "begin" { // a begin is only valid outside a transaction
				prime = prime[:1]
			}
			for _, m := range prime {
				if _, err := d.Decode(m); err != nil {
					t.Fatal(err)
				}
			}
			got, err := d.Decode(in)
			if !errors.Is(err, capture.ErrProtocol) || got != nil {
				t.Errorf("%s cut to %d of %d bytes: got %v, %v; want an ErrProtocol", name, n, len(msg), got, err)
			}
		}
	}
}

func TestDecoder_DecodeGarbage(t *testing.T) {
	t.Parallel()
	inputs := [][]byte{
		{0},
		{'I'},
		[]byte("hello, world"),
		wire{'I'}.u32(outboxID).u8('N').u16(6).u8('t').u32(0xFFFFFFFF),
		wire{'I'}.u32(outboxID).u8('N').u16(0xFFFF),
		wire{'R'}.u32(1).str("public").str("outbox").u8('d').u16(0xFFFF),
		wire{'R'}.u32(1).str("public"),
		wire{'C'}.u8(0),
	}
	for _, in := range inputs {
		d := capture.NewDecoder(capture.DefaultTable())
		_, _ = d.Decode(outboxRelation())
		_, _ = d.Decode(begin())
		if got, err := d.Decode(in); err == nil {
			t.Errorf("Decode(%q) = %v, nil; want an error", in, got)
		}
	}
}

// The decoder keeps no reference to walData: pglogrepl reuses its buffers.
func TestDecoder_DecodeDoesNotRetainBuffer(t *testing.T) {
	t.Parallel()
	table := capture.DefaultTable()
	table.ExtraHeaders = []string{"created_at"}
	d := capture.NewDecoder(table)
	for _, m := range [][]byte{outboxRelation(), begin()} {
		if _, err := d.Decode(m); err != nil {
			t.Fatal(err)
		}
	}
	in := outboxInsert(text("1"), text("c"), text("n"), text(`{"a": 1}`), text(`{"h": "v", "i": [1]}`))
	got, err := d.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	want := event(0, "1", "c", "n", []byte(`{"a": 1}`),
		record.Header{Key: "h", Value: []byte("v")},
		record.Header{Key: "i", Value: []byte("[1]")},
		record.Header{Key: "created_at", Value: []byte("2025-03-14 15:09:26.535897+00")})
	for i := range in {
		in[i] = 0xEE
	}
	if !reflect.DeepEqual(got, row(want)) {
		t.Fatalf("after overwriting the input:\n got %#v\nwant %#v", got, row(want))
	}
}

// The builders agree with pglogrepl's parser.
func TestBuilders_MatchPglogrepl(t *testing.T) {
	t.Parallel()
	parse := func(b []byte) pglogrepl.Message {
		t.Helper()
		m, err := pglogrepl.Parse(b)
		if err != nil {
			t.Fatalf("pglogrepl.Parse(%q): %v", b, err)
		}
		return m
	}
	if m := parse(begin()).(*pglogrepl.BeginMessage); m.FinalLSN != txnLSN || !m.CommitTime.Equal(commitTime) || m.Xid != txnXID {
		t.Errorf("begin: %+v", m)
	}
	if m := parse(commit()).(*pglogrepl.CommitMessage); m.CommitLSN != txnLSN || m.TransactionEndLSN != endLSN || !m.CommitTime.Equal(commitTime) {
		t.Errorf("commit: %+v", m)
	}
	rel := parse(outboxRelation()).(*pglogrepl.RelationMessage)
	if rel.RelationID != outboxID || rel.Namespace != "public" || rel.RelationName != "outbox" || len(rel.Columns) != len(outboxCols) {
		t.Fatalf("relation: %+v", rel)
	}
	for i, c := range rel.Columns {
		if c.Name != outboxCols[i].name || c.DataType != outboxCols[i].oid || c.TypeModifier != -1 {
			t.Errorf("relation column %d: %+v", i, c)
		}
	}
	ins := parse(outboxInsert(text("1"), null, text(""), text("{}"), null)).(*pglogrepl.InsertMessage)
	if ins.RelationID != outboxID || len(ins.Tuple.Columns) != 6 {
		t.Fatalf("insert: %+v", ins)
	}
	for i, want := range []val{text("1"), null, text(""), text("{}"), null} {
		c := ins.Tuple.Columns[i]
		if c.DataType != want.kind || string(c.Data) != want.data {
			t.Errorf("insert column %d: %c %q, want %c %q", i, c.DataType, c.Data, want.kind, want.data)
		}
	}
	if m := parse(typeMsg(16500, "public", "mood")).(*pglogrepl.TypeMessage); m.DataType != 16500 || m.Name != "mood" {
		t.Errorf("type: %+v", m)
	}
	if m := parse(originMsg(0x10, "node_a")).(*pglogrepl.OriginMessage); m.CommitLSN != 0x10 || m.Name != "node_a" {
		t.Errorf("origin: %+v", m)
	}
	if m := parse(logicalMsg(true, 0x10, "app", "x")).(*pglogrepl.LogicalDecodingMessage); !m.Transactional || m.Prefix != "app" || string(m.Content) != "x" {
		t.Errorf("message: %+v", m)
	}
	if m := parse(updateMsg(outboxID, text("1"))).(*pglogrepl.UpdateMessage); m.RelationID != outboxID || len(m.NewTuple.Columns) != 1 {
		t.Errorf("update: %+v", m)
	}
	if m := parse(deleteMsg(outboxID, text("1"))).(*pglogrepl.DeleteMessage); m.RelationID != outboxID || len(m.OldTuple.Columns) != 1 {
		t.Errorf("delete: %+v", m)
	}
	if m := parse(truncateMsg(1, 2)).(*pglogrepl.TruncateMessage); !reflect.DeepEqual(m.RelationIDs, []uint32{1, 2}) {
		t.Errorf("truncate: %+v", m)
	}
}

func TestEvent_Position(t *testing.T) {
	t.Parallel()
	events := []capture.Event{
		{CommitLSN: 0x0_FFFFFFFF, Index: 0xFFFF},
		{CommitLSN: 0x1_00000000, Index: 0},
		{CommitLSN: 0x1_00000000, Index: 9},
		{CommitLSN: 0x1_00000000, Index: 10},
		{CommitLSN: 0x16_B374D848, Index: 0},
	}
	for i := 1; i < len(events); i++ {
		if a, b := events[i-1].Position().String(), events[i].Position().String(); a >= b {
			t.Errorf("position %q does not sort before %q", a, b)
		}
	}
	if got, want := events[4].Position().String(), "00000016B374D848-00000000"; got != want {
		t.Errorf("Position() = %q, want %q", got, want)
	}
}

func TestEvent_Size(t *testing.T) {
	t.Parallel()
	small := capture.Event{ID: "1", Channel: "c"}
	big := small
	big.Payload = bytes.Repeat([]byte("x"), 1000)
	big.Headers = []record.Header{{Key: "k", Value: bytes.Repeat([]byte("v"), 500)}}
	if small.Size() <= 0 {
		t.Errorf("Size() of a small event = %d, want > 0", small.Size())
	}
	if got := big.Size() - small.Size(); got < 1501 {
		t.Errorf("payload and header of 1501 bytes grew Size() by %d", got)
	}
}

func TestParseTableName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, schema, name string
		wantErr          string
	}{
		{in: "outbox", schema: "public", name: "outbox"},
		{in: "public.outbox", schema: "public", name: "outbox"},
		{in: " app.events_v2 ", schema: "app", name: "events_v2"},
		{in: "App.OutBox", schema: "app", name: "outbox"},
		{in: `"App"."Out.Box"`, schema: "App", name: "Out.Box"},
		{in: `app."my ""quoted"" box"`, schema: "app", name: `my "quoted" box`},
		{in: "_s$1.été", schema: "_s$1", name: "été"},
		{in: "", wantErr: "empty name"},
		{in: "app.", wantErr: "empty name"},
		{in: ".outbox", wantErr: `unexpected '.'`},
		{in: "app..outbox", wantErr: `unexpected '.'`},
		{in: "db.app.outbox", wantErr: "want table or schema.table, got 3"},
		{in: "my outbox", wantErr: `unexpected ' ' after "my"`},
		{in: "1outbox", wantErr: "quote names that are not plain identifiers"},
		{in: `"app.outbox`, wantErr: "unterminated quoted name"},
		{in: `"".outbox`, wantErr: "empty quoted name"},
		{in: `"app"x.outbox`, wantErr: `unexpected 'x' after "app"`},
	}
	for _, tt := range tests {
		schema, name, err := capture.ParseTableName(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTableName(%q) = %q, %q, %v; want an error containing %q", tt.in, schema, name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || schema != tt.schema || name != tt.name {
			t.Errorf("ParseTableName(%q) = %q, %q, %v; want %q, %q", tt.in, schema, name, err, tt.schema, tt.name)
		}
	}
}

func TestTable_Validate(t *testing.T) {
	t.Parallel()
	modified := func(change func(*capture.Table)) capture.Table {
		table := capture.DefaultTable()
		change(&table)
		return table
	}
	tests := []struct {
		name  string
		table capture.Table
		want  []string // one substring per problem, in order
	}{
		{name: "default", table: capture.DefaultTable()},
		{name: "optional columns unset", table: modified(func(t *capture.Table) { t.Headers = "" })},
		{name: "all optional columns set", table: modified(func(t *capture.Table) {
			t.Topic = "topic"
			t.ExtraHeaders = []string{"tenant", "created_at"}
		})},
		{name: "zero value", table: capture.Table{}, want: []string{
			"outbox table schema is empty", "outbox table name is empty", "id column is empty",
			"channel column is empty", "event name column is empty", "payload column is empty",
		}},
		{name: "duplicates", table: modified(func(t *capture.Table) {
			t.Topic = "channel"
			t.ExtraHeaders = []string{"sequence_id", "tenant", "tenant"}
		}), want: []string{
			`column "channel" is configured twice (as the channel column and as the topic column)`,
			`column "sequence_id" is configured twice (as the id column and as the extra header column)`,
			`column "tenant" is configured twice (as the extra header column and as the extra header column)`,
		}},
		{name: "bad names", table: modified(func(t *capture.Table) {
			t.Name = strings.Repeat("x", 64)
			t.Payload = "da\x00ta"
			t.ExtraHeaders = []string{"", "pgoutbox-tenant"}
		}), want: []string{
			"outbox table name \"xxxx", "payload column \"da\\x00ta\" contains a NUL byte",
			"extra header column is empty", `extra header column "pgoutbox-tenant": header keys starting with "pgoutbox-" are reserved`,
		}},
	}
	for _, tt := range tests {
		err := tt.table.Validate()
		var got []error
		if joined, ok := errors.AsType[interface {
			error
			Unwrap() []error
		}](err); ok {
			got = joined.Unwrap()
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: Validate() = %v; want %d problems", tt.name, err, len(tt.want))
			continue
		}
		for i, want := range tt.want {
			if !strings.Contains(got[i].Error(), want) {
				t.Errorf("%s: problem %d = %q, want it to contain %q", tt.name, i, got[i], want)
			}
		}
	}
}

func TestTable_QualifiedName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ schema, name, want string }{
		{"public", "outbox", `"public"."outbox"`},
		{"App", "out box", `"App"."out box"`},
		{`my"schema`, "outbox", `"my""schema"."outbox"`},
	} {
		table := capture.DefaultTable()
		table.Schema, table.Name = tt.schema, tt.name
		if got := table.QualifiedName(); got != tt.want {
			t.Errorf("QualifiedName() of %q.%q = %s, want %s", tt.schema, tt.name, got, tt.want)
		}
	}
}

// With a reference, Begin's 32-bit xid is widened to the full id, across an epoch boundary, and
// the pgoutbox-xid header carries the full id.
func TestDecoder_FullXID(t *testing.T) {
	t.Parallel()
	const epoch = uint64(1) << 32
	d := capture.NewDecoder(capture.DefaultTable())
	d.SetXIDReference(epoch + 5) // the server's next full id: epoch 1 has just begun
	if _, err := d.Decode(outboxRelation()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		xid  uint32
		want uint64
	}{
		{0xFFFFFFF0, epoch - 16}, // began before the boundary, committed after the session started
		{3, epoch + 3},
		{0xFFFFFFFF, epoch - 1},
		{7, epoch + 7},
	} {
		msg, err := d.Decode(beginMsg(txnLSN, commitTime, tc.xid))
		if err != nil {
			t.Fatal(err)
		}
		if b := msg.(capture.Begin); b.FullXID != tc.want || b.XID != tc.xid {
			t.Errorf("Begin of xid %d: %+v, want FullXID %d", tc.xid, b, tc.want)
		}
		msg, err = d.Decode(outboxInsert(text("1"), text("c"), text("n"), null, null))
		if err != nil {
			t.Fatal(err)
		}
		e := msg.(capture.Row).Event
		var header string
		for _, h := range e.Headers {
			if h.Key == record.HeaderXID {
				header = string(h.Value)
			}
		}
		if e.FullXID != tc.want || header != strconv.FormatUint(tc.want, 10) {
			t.Errorf("row of xid %d: FullXID %d, header %q; want %d", tc.xid, e.FullXID, header, tc.want)
		}
		if _, err := d.Decode(commit()); err != nil {
			t.Fatal(err)
		}
	}
}

// Optimistic updates: the mutation id and rejected columns become headers after the channel,
// boolean t/f as true/false, NULL as no header; a channel with a comma is a bad row.
func TestDecoder_OptimisticAndChannel(t *testing.T) {
	t.Parallel()
	table := capture.DefaultTable()
	table.MutationID, table.Rejected = "mutation_id", "rejected"
	d := capture.NewDecoder(table)
	cols := append(append([]col(nil), outboxCols...), col{"mutation_id", oidText}, col{"rejected", 16})
	if _, err := d.Decode(relationMsg(outboxID, "public", "outbox", cols...)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode(begin()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mutation, rejected val
		want               []record.Header
	}{
		{text("m-1"), text("t"), []record.Header{{Key: "pgoutbox-mutation-id", Value: []byte("m-1")}, {Key: "pgoutbox-rejected", Value: []byte("true")}}},
		{text("m-2"), text("f"), []record.Header{{Key: "pgoutbox-mutation-id", Value: []byte("m-2")}, {Key: "pgoutbox-rejected", Value: []byte("false")}}},
		{null, null, nil},
		{null, text("t"), []record.Header{{Key: "pgoutbox-rejected", Value: []byte("true")}}},
	} {
		msg, err := d.Decode(insertMsg(outboxID, text("1"), text("room:1"), text("n"), null, text(`{"a": "b"}`), null, tc.mutation, tc.rejected))
		if err != nil {
			t.Fatal(err)
		}
		h := msg.(capture.Row).Event.Headers
		if h[6].Key != record.HeaderChannel || string(h[6].Value) != "room:1" {
			t.Errorf("header 6 is %q=%q, want the channel", h[6].Key, h[6].Value)
		}
		want := append(tc.want, record.Header{Key: "a", Value: []byte("b")})
		if got := h[7:]; !reflect.DeepEqual(got, want) {
			t.Errorf("mutation %v, rejected %v: headers after the channel %q, want %q", tc.mutation, tc.rejected, got, want)
		}
	}
	_, err := d.Decode(insertMsg(outboxID, text("2"), text("room:1,room:2"), text("n"), null, null, null, null, null))
	var bad *capture.BadRowError
	if !errors.As(err, &bad) || !strings.Contains(bad.Reason, "comma") {
		t.Errorf("channel with a comma: %v, want a bad row naming the comma", err)
	}
}

// TestDecoder_SchemaErrorsAsBadRows: with a dead-letter policy, the rows written while a
// configured column was missing are bad rows (their columns kept as the payload), so the
// relay can go past that stretch of WAL; without it the Relation stops the stream.
func TestDecoder_SchemaErrorsAsBadRows(t *testing.T) {
	t.Parallel()
	d := capture.NewDecoder(capture.DefaultTable())
	d.SetSchemaErrorsAsBadRows(true)
	noName := relationMsg(outboxID, "public", "outbox",
		col{"sequence_id", oidInt8}, col{"channel", oidText}, col{"data", oidJSONB}, col{"headers", oidJSONB})
	for _, in := range [][]byte{noName, begin()} {
		if _, err := d.Decode(in); err != nil {
			t.Fatalf("Decode: %v", err)
		}
	}
	_, err := d.Decode(insertMsg(outboxID, text("42"), text("room:2"), text(`{"a": 1}`), null))
	bad, ok := errors.AsType[*capture.BadRowError](err)
	if !ok || bad.ID != "42" || bad.Event.Channel != "room:2" || !strings.Contains(bad.Reason, `no column "name"`) {
		t.Fatalf("Decode = %v, want a bad row 42 naming the missing column", err)
	}
	// The record is the row's event with the name taken as NULL; the row as written is a header.
	if got := string(bad.Event.Payload); got != `{"a": 1}` || bad.Event.Name != "" || bad.Event.ID != "42" {
		t.Errorf("event payload %s, name %q, id %q; want the data column, no name, id 42", got, bad.Event.Name, bad.Event.ID)
	}
	var original string
	for _, h := range bad.Event.Headers {
		if h.Key == record.HeaderOriginalRow {
			original = string(h.Value)
		}
	}
	if !strings.Contains(original, `"sequence_id":"42"`) || !strings.Contains(original, `"headers":null`) {
		t.Errorf("%s header %q, want the row's columns", record.HeaderOriginalRow, original)
	}
	if !strings.Contains(bad.Reason, "pgoutbox dlq redrive --apply") {
		t.Errorf("reason %q does not name the command that publishes it", bad.Reason)
	}
}
