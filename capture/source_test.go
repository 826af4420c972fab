package capture_test

import (
	"reflect"
	"testing"

	"github.com/pgoutbox/pgoutbox/capture"

	"github.com/pgoutbox/pgoutbox/record"
)

func TestSource_Header(t *testing.T) {
	t.Parallel()
	s := record.Source{SystemID: "7401286427335794708", Timeline: 3, Slot: "pgoutbox_orders", Routing: "5f3a09c2"}
	if got, want := s.Header(), "7401286427335794708/3/pgoutbox_orders/5f3a09c2"; got != want {
		t.Fatalf("Header() = %q, want %q", got, want)
	}
}

func TestRoutingOf(t *testing.T) {
	t.Parallel()
	base := capture.RoutingOf("pgoutbox", capture.DefaultTable())
	if len(base) != 8 || base != capture.RoutingOf("pgoutbox", capture.DefaultTable()) {
		t.Fatalf("RoutingOf = %q: want 8 stable hex digits", base)
	}
	payload := capture.DefaultTable()
	payload.Payload = "body"
	if capture.RoutingOf("pgoutbox", payload) != base {
		t.Error("the payload column changed the routing fingerprint; it decides no routing")
	}
	channel := capture.DefaultTable()
	channel.Channel = "room"
	topic := capture.DefaultTable()
	topic.Topic = "topic"
	for name, got := range map[string]string{
		"publication": capture.RoutingOf("other", capture.DefaultTable()),
		"channel":     capture.RoutingOf("pgoutbox", channel),
		"topic":       capture.RoutingOf("pgoutbox", topic),
	} {
		if got == base {
			t.Errorf("another %s gives the same routing fingerprint %q", name, got)
		}
	}
}

func TestParseTimelineHistory(t *testing.T) {
	t.Parallel()
	// The history file of timeline 3, as TIMELINE_HISTORY 3 returns it.
	content := []byte("1\t0/3000158\tno recovery target specified\n\n# a comment\n2\t1/A0000028\tat restore point \"before\"\n")
	got, err := capture.ParseTimelineHistory(content)
	if err != nil {
		t.Fatal(err)
	}
	want := []record.TimelineSwitch{{Timeline: 1, End: 0x3000158}, {Timeline: 2, End: 0x1_A0000028}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"x\t0/1\n", "1\n", "1\tnot-an-lsn\n", "0\t0/1\n"} {
		if _, err := capture.ParseTimelineHistory([]byte(bad)); err == nil {
			t.Errorf("ParseTimelineHistory(%q): no error", bad)
		}
	}
}

func TestDecoder_SetSource(t *testing.T) {
	t.Parallel()
	d := capture.NewDecoder(capture.DefaultTable())
	d.SetSource("7401286427335794708/1/pgoutbox")
	for _, in := range [][]byte{outboxRelation(), begin()} {
		if _, err := d.Decode(in); err != nil {
			t.Fatal(err)
		}
	}
	m, err := d.Decode(outboxInsert(text("42"), text("room:2"), null, null, text(`{"trace": "abc"}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := append(positionHeaders("42", "", "room:2", "0"),
		record.Header{Key: record.HeaderSource, Value: []byte("7401286427335794708/1/pgoutbox")},
		record.Header{Key: "trace", Value: []byte("abc")})
	if got := m.(capture.Row).Event.Headers; !reflect.DeepEqual(got, want) {
		t.Fatalf("headers = %q, want %q", got, want)
	}
}
