package record

import "testing"

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	orig := make([]Header, 1, 4) // room to grow: DeadLetter must not write into it
	orig[0] = Header{Key: HeaderID, Value: []byte("7")}
	dl := DeadLetter(orig, StageDecode, "channel is NULL", "events")
	if len(orig) != 1 || cap(orig) != 4 || len(orig[:4][1].Key) != 0 {
		t.Fatalf("DeadLetter wrote into the original's backing array: %v", orig[:4])
	}
	want := []Header{{HeaderID, []byte("7")}, {HeaderError, []byte("channel is NULL")},
		{HeaderOriginalTopic, []byte("events")}, {HeaderDeadLetterStage, []byte(StageDecode)}}
	if len(dl) != len(want) {
		t.Fatalf("DeadLetter = %v, want %v", dl, want)
	}
	for i := range want {
		if dl[i].Key != want[i].Key || string(dl[i].Value) != string(want[i].Value) {
			t.Errorf("header %d = %s: %q, want %s: %q", i, dl[i].Key, dl[i].Value, want[i].Key, want[i].Value)
		}
	}
}

func TestIsOutOfOrder(t *testing.T) {
	t.Parallel()
	row := []Header{{HeaderPosition, []byte("0000001600B374D8-00000003")}}
	for _, tc := range []struct {
		name  string
		hs    []Header
		stage string
		dl    bool
		out   bool
	}{
		{"a record", row, "", false, false},
		{"a bad row", DeadLetter(row, StageDecode, "r", "t"), StageDecode, true, false},
		{"a refused record", DeadLetter(row, StageKafka, "r", "t"), StageKafka, true, true},
		// written before the stage header existed: only the sink set the original topic
		{"an old refused record", append(row[:1:1], Header{HeaderError, []byte("r")}, Header{HeaderOriginalTopic, []byte("t")}), StageKafka, true, true},
		{"an old bad row", append(row[:1:1], Header{HeaderError, []byte("r")}), "", false, false},
	} {
		stage, dl := DeadLetterStage(tc.hs)
		if stage != tc.stage || dl != tc.dl || IsOutOfOrder(tc.hs) != tc.out {
			t.Errorf("%s: DeadLetterStage = %q, %v; IsOutOfOrder = %v; want %q, %v; %v", tc.name, stage, dl, IsOutOfOrder(tc.hs), tc.stage, tc.dl, tc.out)
		}
	}
}
