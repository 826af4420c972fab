package main

import (
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
