package main

import (
	"strings"
	"testing"
	"time"
)

func TestStreamCheck_Observe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		received             []int64
		committed            int64
		lost, dups, late     int64
		complete, allCorrect bool
	}{
		{"in order", []int64{1, 2, 3}, 3, 0, 0, 0, true, true},
		{"nothing yet", nil, 2, 2, 0, 0, false, false},
		{"nothing committed", nil, 0, 0, 0, 0, true, true},
		{"a gap", []int64{1, 3}, 3, 1, 0, 0, false, false},
		{"the last one missing", []int64{1, 2}, 3, 1, 0, 0, false, false},
		{"a duplicate", []int64{1, 2, 2, 3}, 3, 0, 1, 0, true, false},
		{"a late one", []int64{1, 3, 2}, 3, 0, 0, 1, true, false},
		{"late and duplicated", []int64{2, 1, 2, 1}, 2, 0, 2, 1, true, false},
		{"a value never committed does not fill a gap", []int64{1, 3}, 2, 1, 0, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStreamCheck()
			for _, v := range tt.received {
				s.observe(v)
			}
			if got := s.lost(tt.committed); got != tt.lost {
				t.Errorf("lost = %d, want %d", got, tt.lost)
			}
			if s.duplicates != tt.dups || s.outOfOrder != tt.late {
				t.Errorf("duplicates, out of order = %d, %d, want %d, %d", s.duplicates, s.outOfOrder, tt.dups, tt.late)
			}
			if got := s.has(tt.committed); got != tt.complete {
				t.Errorf("has(%d) = %v, want %v", tt.committed, got, tt.complete)
			}
			var c deliveryCounts
			c.add(s, tt.committed)
			if c.Delivered != int64(len(tt.received)) || c.Expected != tt.committed {
				t.Errorf("delivered, expected = %d, %d, want %d, %d", c.Delivered, c.Expected, len(tt.received), tt.committed)
			}
			if got := c.correct(); got != tt.allCorrect {
				t.Errorf("correct() = %v, want %v", got, tt.allCorrect)
			}
		})
	}
}

func TestDeliveryCounts_Add(t *testing.T) {
	t.Parallel()
	// Two subscribers of one channel of 3 events: one lost the middle one, the other got it
	// twice; the sums keep both (nothing averages them away).
	a, b := newStreamCheck(), newStreamCheck()
	for _, v := range []int64{1, 3} {
		a.observe(v)
	}
	for _, v := range []int64{1, 2, 2, 3} {
		b.observe(v)
	}
	var c deliveryCounts
	c.add(a, 3)
	c.add(b, 3)
	want := deliveryCounts{Delivered: 6, Expected: 6, Lost: 1, Duplicates: 1}
	if c != want {
		t.Fatalf("counts = %+v, want %+v", c, want)
	}
	if c.correct() {
		t.Fatal("correct() with a loss and a duplicate")
	}
}

func TestE2EWriterConns(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ channels, want int }{{100, 10}, {1, 1}, {7, 7}, {13, 1}, {12, 6}, {30, 10}} {
		if got := e2eWriterConns(tt.channels); got != tt.want || tt.channels%got != 0 {
			t.Errorf("e2eWriterConns(%d) = %d, want %d", tt.channels, got, tt.want)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	t.Parallel()
	got, err := withSearchPath("postgres://u:p@127.0.0.1:5432/db?sslmode=disable", "bench_x")
	if err != nil || got != "postgres://u:p@127.0.0.1:5432/db?search_path=bench_x&sslmode=disable" {
		t.Errorf("withSearchPath = %q, %v", got, err)
	}
}

func TestCPUSince(t *testing.T) {
	t.Parallel()
	before := map[int]time.Duration{1: time.Second, 2: 5 * time.Second}
	after := map[int]time.Duration{1: 3 * time.Second, 3: time.Second} // 2 exited, 3 started
	if got := cpuSince(before, after); got != 3*time.Second {
		t.Errorf("cpuSince = %s, want 3s (2 s of process 1, 1 s of the new process 3, the exited one missed)", got)
	}
}

func e2eRow(key string, rate int, achieved, p99 float64, lost int64) EndToEndResult {
	return EndToEndResult{Key: key, Rate: rate, RateAchieved: achieved, Subscribers: 2,
		Delivery: Quantiles{Count: 10, P99: p99}, Counts: deliveryCounts{Delivered: 10 - lost, Expected: 10, Lost: lost}}
}

func TestSustainedRates(t *testing.T) {
	t.Parallel()
	got := sustainedRates([]EndToEndResult{
		e2eRow("send", 100, 100, 20, 0), e2eRow("send", 1000, 1000, 120, 0), e2eRow("send", 3000, 2990, 900, 0), // p99 too high at 3,000
		e2eRow("stream", 100, 100, 30, 0), e2eRow("stream", 3000, 1242, 80, 0), // did not keep 3,000
		e2eRow("lossy", 100, 100, 10, 1), // lost one: sustains nothing
		{Key: "baseline", Rate: 100, RateAchieved: 100},
	})
	want := map[string]int{"send": 1000, "stream": 100, "lossy": 0}
	if len(got) != len(want) {
		t.Fatalf("sustainedRates = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("sustainedRates[%s] = %d, want %d", k, got[k], v)
		}
	}
}

func TestE2ETargets(t *testing.T) {
	t.Parallel()
	ts := e2eTargets([]EndToEndResult{
		e2eRow("send", 1000, 1000, 100, 0), e2eRow("table", 1000, 1000, 700, 0),
		e2eRow("stream", 1000, 1000, 95, 0), e2eRow("debezium", 1000, 1000, 1200, 0),
		e2eRow("cfoutbox", 100, 100, 10, 2),
	})
	met := map[string]bool{}
	for _, tg := range ts {
		met[tg.Goal] = tg.Met
	}
	want := map[string]bool{
		"scenario 10 at 1,000/s: pgoutbox table p99 ≤ the stream broker's":   false,
		"scenario 10 at 1,000/s: pgoutbox table p99 ≤ ⅓ of Debezium's":       false,
		"scenario 10 at 1,000/s: pgoutbox send p99 ≤ the stream broker's":    false,
		"scenario 10 at 1,000/s: pgoutbox send p99 ≤ ⅓ of Debezium's":        true,
		"scenario 10: cfoutbox at 100/s delivers every event once, in order": false,
	}
	if len(met) != len(want) {
		t.Fatalf("targets %v, want %v", met, want)
	}
	for g, m := range want {
		if got, ok := met[g]; !ok || got != m {
			t.Errorf("target %q: met = %v (present %v), want %v", g, got, ok, m)
		}
	}
}

// The table groups rows by path in e2ePaths' order, whatever order the rates ran in.
func TestPrintEndToEnd_Order(t *testing.T) {
	t.Parallel()
	r := &Results{EndToEnd: []EndToEndResult{
		e2eRow("send", 100, 100, 10, 0), e2eRow("table", 100, 100, 10, 0),
		e2eRow("send", 1000, 1000, 10, 0), e2eRow("table", 1000, 1000, 10, 0),
	}}
	var out strings.Builder
	printReport(&out, r)
	var order []string
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && (f[0] == "table" || f[0] == "send") && (f[1] == "100" || f[1] == "1000") {
			order = append(order, f[0]+" "+f[1])
		}
	}
	if want := []string{"table 100", "table 1000", "send 100", "send 1000"}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("rows in order %v, want %v\n%s", order, want, out.String())
	}
}
