package capture_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/pgoutbox/pgoutbox/capture"

	"github.com/pgoutbox/pgoutbox/record"
)

const msgLSN = pglogrepl.LSN(0x16_B374D000)

// sendMsg is the message pgoutbox_send emits (prefix pgoutbox) with this content.
func sendMsg(content string) []byte { return logicalMsg(true, msgLSN, "pgoutbox", content) }

// msgEvent is the event of a message of the test transaction: no outbox id (a null header).
func msgEvent(index int, channel, name string, payload []byte, headers ...record.Header) capture.Event {
	e := capture.Event{
		XID: txnXID, FullXID: txnXID, CommitLSN: txnLSN, Index: index, CommitTime: commitTime,
		Channel: channel, Name: name, Payload: payload,
	}
	e.Headers = append(capture.StandardHeaders(&e, nil), headers...)
	e.Headers[0].Value = nil
	return e
}

func TestDecoder_DecodeMessage(t *testing.T) {
	t.Parallel()
	badMsg := func(index int, reason string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			t.Helper()
			bad, ok := errors.AsType[*capture.BadRowError](err)
			if !ok {
				t.Fatalf("error %v is not a *BadRowError", err)
			}
			if bad.MessageLSN != msgLSN || bad.CommitLSN != txnLSN || bad.Index != index || bad.Outside ||
				!strings.Contains(bad.Reason, reason) {
				t.Errorf("BadRowError{MessageLSN: %s, CommitLSN: %s, Index: %d, Outside: %t, Reason: %q}, want index %d, reason containing %q",
					bad.MessageLSN, bad.CommitLSN, bad.Index, bad.Outside, bad.Reason, index, reason)
			}
			if orig, ok := record.Lookup(bad.Event.Headers, record.HeaderOriginalMessage); !ok || orig == "" {
				t.Errorf("the dead-letter event lacks the original message (%s): %q", record.HeaderOriginalMessage, bad.Event.Headers)
			}
			if bad.Event.Index != index || bad.Event.CommitLSN != txnLSN || bad.Event.Headers[0].Value != nil {
				t.Errorf("BadRowError.Event has position %s/%d id header %q", bad.Event.CommitLSN, bad.Event.Index, bad.Event.Headers[0].Value)
			}
			if !strings.Contains(err.Error(), "logical decoding message at 16/B374D000 at commit 16/B374D848") {
				t.Errorf("error %q does not name the message and its position", err)
			}
		}
	}
	good := func(id string) []byte { return outboxInsert(text(id), text("c"), text("n"), text("{}"), null) }
	tests := []struct {
		name  string
		from  capture.EventsFrom
		steps []step
	}{
		{
			name: "messages and inserts numbered together in WAL order",
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: good("1"), want: row(event(0, "1", "c", "n", []byte("{}")))},
				{
					in: sendMsg(`{"v": 1, "data": {"id": 1, "body": "hi"}, "name": "message.created", "channel": "room:1", "headers": {"trace": "abc", "n": 2}}`),
					want: row(msgEvent(1, "room:1", "message.created", []byte(`{"id": 1, "body": "hi"}`),
						record.Header{Key: "n", Value: []byte("2")}, record.Header{Key: "trace", Value: []byte("abc")})),
				},
				{in: logicalMsg(true, msgLSN, "other", `{"v": 1, "channel": "x"}`)}, // another prefix: not counted
				{in: logicalMsg(true, msgLSN, "pgoutbox2", `{"v": 1, "channel": "x"}`)},
				{in: good("2"), want: row(event(2, "2", "c", "n", []byte("{}")))},
				{in: sendMsg(`{"v": 1, "channel": "room:2"}`), want: row(msgEvent(3, "room:2", "", nil))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "payloads: JSON null, bytes, absent",
			steps: []step{
				{in: begin(), want: beginWant},
				{in: sendMsg(`{"v": 1, "data": null, "channel": "c"}`), want: row(msgEvent(0, "c", "", []byte("null")))},
				{in: sendMsg(`{"v": 1, "channel": "c", "data_base64": "AP8K"}`), want: row(msgEvent(1, "c", "", []byte{0, 0xff, '\n'}))},
				{in: sendMsg(`{"v": 1, "channel": "c", "data_base64": ""}`), want: row(msgEvent(2, "c", "", []byte{}))},
				{in: sendMsg(`{"v": 1, "data": "text", "channel": "c"}`), want: row(msgEvent(3, "c", "", []byte(`"text"`)))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "optimistic update headers",
			steps: []step{
				{in: begin(), want: beginWant},
				{
					in: sendMsg(`{"v": 1, "channel": "c", "name": "n", "rejected": true, "mutation_id": "m-17", "headers": {"k": "v"}}`),
					want: row(msgEvent(0, "c", "n", nil, record.Header{Key: "pgoutbox-mutation-id", Value: []byte("m-17")},
						record.Header{Key: "pgoutbox-rejected", Value: []byte("true")}, record.Header{Key: "k", Value: []byte("v")})),
				},
				{
					in:   sendMsg(`{"v": 1, "channel": "c", "rejected": false, "headers": null}`),
					want: row(msgEvent(1, "c", "", nil, record.Header{Key: "pgoutbox-rejected", Value: []byte("false")})),
				},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "bad messages consume their index",
			steps: []step{
				{in: begin(), want: beginWant},
				{in: sendMsg(`not json`), wantErr: capture.ErrBadRow, check: badMsg(0, "not a pgoutbox event")},
				{in: sendMsg(`{"channel": "c"}`), wantErr: capture.ErrBadRow, check: badMsg(1, `no "v" key`)},
				{in: sendMsg(`{"v": 2, "channel": "c", "new": 1}`), wantErr: capture.ErrBadRow, check: badMsg(2, "version 2 is not known")},
				{in: sendMsg(`{"v": 1, "channel": "c", "topic": "t"}`), wantErr: capture.ErrBadRow, check: badMsg(3, `unknown field "topic"`)},
				{in: sendMsg(`{"v": 1, "name": "n"}`), wantErr: capture.ErrBadRow, check: badMsg(4, "channel is NULL or empty")},
				{in: sendMsg(`{"v": 1, "channel": null}`), wantErr: capture.ErrBadRow, check: badMsg(5, "channel is NULL or empty")},
				{in: sendMsg(`{"v": 1, "channel": "a,b"}`), wantErr: capture.ErrBadRow, check: badMsg(6, "contains a comma")},
				{in: sendMsg(`{"v": 1, "channel": "c", "headers": [1]}`), wantErr: capture.ErrBadRow, check: badMsg(7, `message "headers" holds an array`)},
				{in: sendMsg(`{"v": 1, "channel": "c", "headers": {"pgoutbox-id": "x"}}`), wantErr: capture.ErrBadRow, check: badMsg(8, "reserved")},
				{in: sendMsg(`{"v": 1, "channel": "c", "data": 1, "data_base64": ""}`), wantErr: capture.ErrBadRow, check: func(t *testing.T, err error) {
					badMsg(9, "both")(t, err)
					// Both parts are kept, though the event's value could hold neither.
					bad, _ := errors.AsType[*capture.BadRowError](err)
					if orig, _ := record.Lookup(bad.Event.Headers, record.HeaderOriginalMessage); orig != `{"v": 1, "channel": "c", "data": 1, "data_base64": ""}` {
						t.Errorf("original message %q", orig)
					}
				}},
				{in: sendMsg(`{"v": 1, "channel": "c", "data_base64": "!"}`), wantErr: capture.ErrBadRow, check: badMsg(10, "not valid base64")},
				{in: sendMsg(`{"v": 1, "channel": "c"} {}`), wantErr: capture.ErrBadRow, check: badMsg(11, "data after the JSON object")},
				{in: sendMsg(`{"v": "1", "channel": "c"}`), wantErr: capture.ErrBadRow, check: badMsg(12, "not a pgoutbox event")},
				// The decoder goes on: the next event is index 13.
				{in: sendMsg(`{"v": 1, "channel": "c"}`), want: row(msgEvent(13, "c", "", nil))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "non-transactional messages",
			steps: []step{
				{in: logicalMsg(false, msgLSN, "other", "x")}, // another prefix: ignored
				{in: logicalMsg(false, msgLSN, "pgoutbox", `{"v": 1, "channel": "c"}`), wantErr: capture.ErrBadRow, check: func(t *testing.T, err error) {
					bad, ok := errors.AsType[*capture.BadRowError](err)
					if !ok || !bad.Outside || bad.MessageLSN != msgLSN || bad.CommitLSN != msgLSN || bad.Index != 0 ||
						!strings.Contains(bad.Reason, "non-transactional") || string(bad.Event.Payload) != `{"v": 1, "channel": "c"}` {
						t.Fatalf("got %#v", err)
					}
					if bad.Event.Position().String() != "00000016B374D000-00000000" || !strings.Contains(err.Error(), "outside any transaction") {
						t.Errorf("position %s, error %q", bad.Event.Position(), err)
					}
				}},
				{in: begin(), want: beginWant},
				{in: logicalMsg(false, msgLSN, "pgoutbox", "{}"), wantErr: capture.ErrProtocol},
			},
		},
		{
			name: "transactional message outside a transaction",
			steps: []step{
				{in: sendMsg(`{"v": 1, "channel": "c"}`), wantErr: capture.ErrProtocol},
			},
		},
		{
			name: "table only: a message is a bad row",
			from: capture.FromTable,
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: sendMsg(`{"v": 1, "channel": "c"}`), wantErr: capture.ErrBadRow, check: badMsg(0, "--events-from=table")},
				{in: good("1"), want: row(event(1, "1", "c", "n", []byte("{}")))},
				{in: logicalMsg(true, msgLSN, "other", "x")},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "messages only: an insert is a bad row",
			from: capture.FromMessages,
			steps: []step{
				{in: outboxRelation()},
				{in: begin(), want: beginWant},
				{in: good("1"), wantErr: capture.ErrBadRow, check: func(t *testing.T, err error) {
					bad, ok := errors.AsType[*capture.BadRowError](err)
					if !ok || bad.ID != "1" || bad.Index != 0 || bad.MessageLSN != 0 || !strings.Contains(bad.Reason, "--events-from=messages") {
						t.Fatalf("got %#v", err)
					}
				}},
				{in: outboxInsert(text("2"), null, text("n"), null, null), wantErr: capture.ErrBadRow, check: func(t *testing.T, err error) {
					bad, _ := errors.AsType[*capture.BadRowError](err)
					if bad == nil || !strings.Contains(bad.Reason, "--events-from=messages") || !strings.Contains(bad.Reason, "channel is NULL") {
						t.Fatalf("got %v", err)
					}
				}},
				{in: sendMsg(`{"v": 1, "channel": "c"}`), want: row(msgEvent(2, "c", "", nil))},
				{in: commit(), want: commitWant},
			},
		},
		{
			name: "truncated and trailing",
			steps: []step{
				{in: begin(), want: beginWant},
				{in: sendMsg(`{"v": 1}`)[:20], wantErr: capture.ErrProtocol},
				{in: append(sendMsg(`{"v": 1}`), 0), wantErr: capture.ErrProtocol},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := capture.NewDecoder(capture.DefaultTable())
			if tt.from != "" {
				d.SetMessages(capture.DefaultMessagePrefix, tt.from)
			}
			runDecoder(t, d, tt.steps)
		})
	}
}

func TestDecoder_SetMessagesPrefix(t *testing.T) {
	t.Parallel()
	d := capture.NewDecoder(capture.DefaultTable())
	d.SetMessages("app_events", capture.FromBoth)
	runDecoder(t, d, []step{
		{in: begin(), want: beginWant},
		{in: sendMsg(`{"v": 1, "channel": "c"}`)}, // prefix pgoutbox: not ours now
		{in: logicalMsg(true, msgLSN, "app_events", `{"v": 1, "channel": "c"}`), want: row(msgEvent(0, "c", "", nil))},
		{in: commit(), want: commitWant},
	})
}

func TestParseEventsFrom(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in              string
		table, messages bool
	}{{"both", true, true}, {"table", true, false}, {"messages", false, true}} {
		f, err := capture.ParseEventsFrom(tt.in)
		if err != nil || f.Table() != tt.table || f.Messages() != tt.messages {
			t.Errorf("ParseEventsFrom(%q) = %q, %v: table %t messages %t", tt.in, f, err, f.Table(), f.Messages())
		}
	}
	if _, err := capture.ParseEventsFrom("rows"); err == nil || !strings.Contains(err.Error(), "both, table or messages") {
		t.Errorf("ParseEventsFrom(rows) = %v", err)
	}
	if capture.CheckMessagePrefix("") == nil || capture.CheckMessagePrefix("a\x00") == nil || capture.CheckMessagePrefix("pgoutbox") != nil {
		t.Error("CheckMessagePrefix accepts an empty or NUL prefix, or refuses pgoutbox")
	}
}
