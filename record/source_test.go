package record

import "testing"

func TestSource_Header(t *testing.T) {
	t.Parallel()
	src := Source{SystemID: "7401286427335794708", Timeline: 3, Slot: "pgoutbox", Routing: "5f3a09c2",
		History: []TimelineSwitch{{Timeline: 1, End: 0x100}}, WALEnd: 0x200}
	h := src.Header()
	if h != "7401286427335794708/3/pgoutbox/5f3a09c2" {
		t.Fatalf("Header() = %q", h)
	}
	got, ok := ParseSource(h)
	want := Source{SystemID: src.SystemID, Timeline: src.Timeline, Slot: src.Slot, Routing: src.Routing}
	if !ok || got.Header() != h || got.SystemID != want.SystemID || got.Timeline != want.Timeline ||
		got.Slot != want.Slot || got.Routing != want.Routing || got.History != nil || got.WALEnd != 0 {
		t.Errorf("ParseSource(%q) = %+v, %v; want %+v", h, got, ok, want)
	}
	if !src.Known() || (Source{SystemID: "1"}).Known() || (Source{Slot: "s"}).Known() {
		t.Error("Known: want true only with a system id and a slot")
	}
}

func TestParseSource_Bad(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "a/1/s", "a/1/s/r/x", "/1/s/r", "a/1//r", "a/0/s/r", "a/-1/s/r", "a/x/s/r", "a/99999999999/s/r"} {
		if s, ok := ParseSource(bad); ok {
			t.Errorf("ParseSource(%q) = %+v, true", bad, s)
		}
	}
	if s, ok := ParseSource("a/1/s/"); !ok || s.Routing != "" {
		t.Errorf("an empty routing (a record of a pgoutbox without one) = %+v, %v", s, ok)
	}
}
