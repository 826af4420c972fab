package main

import (
	"strings"
	"testing"
)

func TestParsePgbench(t *testing.T) {
	t.Parallel()
	out := `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/x.sql
number of transactions actually processed: 43242
number of failed transactions: 0 (0.000%)
latency average = 0.091 ms
initial connection time = 26.431 ms
tps = 21908.172323 (without initial connection time)
`
	var r WriteSideResult
	if err := parsePgbench(out, &r); err != nil || r.Transactions != 43242 || r.TPS != 21908.172323 || r.LatencyMs != 0.091 {
		t.Errorf("parsePgbench = %+v, %v", r, err)
	}
	if err := parsePgbench("number of transactions actually processed: 5\n", &r); err == nil {
		t.Error("parsePgbench accepted a report without tps")
	}
	if err := parsePgbench(strings.Replace(out, "failed transactions: 0", "failed transactions: 3", 1), &r); err == nil {
		t.Error("parsePgbench accepted a run with failed transactions")
	}
}

func TestBestWriteSide(t *testing.T) {
	t.Parallel()
	a, c := writeModes[0].name, writeModes[3].name
	best, lo, hi := bestWriteSide([]WriteSideResult{
		{Mode: a, Round: 1, TPS: 100}, {Mode: c, Round: 1, TPS: 90},
		{Mode: a, Round: 2, TPS: 120}, {Mode: c, Round: 2, TPS: 80},
	})
	if len(best) != 2 || best[0].Mode != a || best[0].Round != 2 || best[1].Mode != c || best[1].Round != 1 {
		t.Fatalf("best = %+v", best)
	}
	if lo[0] != 100 || hi[0] != 120 || lo[1] != 80 || hi[1] != 90 {
		t.Errorf("ranges %v–%v", lo, hi)
	}
}

func TestWriteMode_Script(t *testing.T) {
	t.Parallel()
	for _, m := range writeModes {
		s := m.script("bench_x")
		for _, want := range []string{"BEGIN;\n", "UPDATE bench_x.business SET n = n + 1 WHERE id = :id;\n", "COMMIT;\n"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: script lacks %q:\n%s", m.name, want, s)
			}
		}
		if (m.event == "") != (m.label == "w0") || strings.Contains(s, "%!") {
			t.Errorf("%s: script\n%s", m.name, s)
		}
	}
}
