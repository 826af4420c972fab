package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// MicroResult is one Go benchmark (go test -bench -benchmem).
type MicroResult struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	MBPerSec    float64 `json:"mb_per_second,omitempty"`
}

// microBenchmarks are the benchmarks scenario 6 runs, by package.
var microBenchmarks = []struct{ pkg, pattern string }{
	{"./capture", "^BenchmarkDecoder"},
	{"./checkpoint", "^BenchmarkLedger$"},
}

func (b *bench) microScenario(ctx context.Context) error {
	benchtime := "1s"
	if b.opts.quick {
		benchtime = "300ms"
	}
	for _, m := range microBenchmarks {
		//nolint:gosec // the go tool, with our arguments
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", m.pattern, "-benchmem", "-benchtime", benchtime, "-count", "1", m.pkg)
		cmd.Dir = b.root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go test -bench %s %s: %w\n%s", m.pattern, m.pkg, err, out)
		}
		results := parseBench(strings.TrimPrefix(m.pkg, "./"), string(out))
		if len(results) == 0 {
			return fmt.Errorf("go test -bench %s %s ran no benchmark:\n%s", m.pattern, m.pkg, out)
		}
		for _, r := range results {
			b.progress("  %s.%s: %.0f ns/op, %.0f B/op, %.0f allocs/op", r.Package, r.Name, r.NsPerOp, r.BytesPerOp, r.AllocsPerOp)
		}
		b.res.Micro = append(b.res.Micro, results...)
	}
	return nil
}

// parseBench reads "BenchmarkX-2  1000  123 ns/op  45.6 MB/s  78 B/op  9 allocs/op" lines.
func parseBench(pkg, out string) []MicroResult {
	var rs []MicroResult
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the GOMAXPROCS suffix
		}
		r := MicroResult{Package: pkg, Name: name}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.NsPerOp = v
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			case "MB/s":
				r.MBPerSec = v
			}
		}
		rs = append(rs, r)
	}
	return rs
}
