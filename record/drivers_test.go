package record_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// driverHomes says, for each driver, which packages of the module may import it (STYLE.md
// rule 1; .golangci.yml's depguard rules say the same for each file). The demo, the model
// server and its examples, the benchmarks and the integration tests are applications of their
// own that read PostgreSQL or Kafka directly on purpose.
var driverHomes = []struct {
	driver string   // import path prefix
	homes  []string // package path prefixes, relative to the module
}{
	{"github.com/jackc/pglogrepl", []string{"capture", "integration", "cmd/pgoutbox-bench"}},
	{"github.com/jackc/pgx/v5/pgconn", []string{"capture", "integration", "cmd/pgoutbox-bench"}},
	{"github.com/jackc/pgx/v5", []string{"capture", "integration", "cmd/pgoutbox-bench", "cmd/pgoutbox-bench-fanout", "cmd/demo", "client/modelserver", "client/examples"}},
	{"github.com/segmentio/kafka-go", []string{"sink", "integration", "cmd/pgoutbox-bench", "cmd/demo"}},
}

// pure lists packages whose every dependency, transitively, is the standard library or the
// record contract: what a consumer imports to read records must drag in no driver.
var pure = []string{"record", "checkpoint"}

const module = "github.com/pgoutbox/pgoutbox"

// TestDriversStayHome reads `go list -deps` of the whole module (tests included) and fails on a
// driver imported outside its home, or on a pure package depending on anything but the
// standard library and record.
func TestDriversStayHome(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-tags", "integration",
		"-f", "{{.ImportPath}}|{{.Standard}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		path, imports, deps := f[0], strings.Fields(f[2]), strings.Fields(f[3])
		// A test variant ("p [p.test]") is judged as its package.
		pkg, _, _ := strings.Cut(path, " ")
		rel, ok := strings.CutPrefix(pkg, module+"/")
		if !ok || strings.HasSuffix(pkg, ".test") {
			continue
		}
		rel = strings.TrimSuffix(rel, "_test") // an external test package lives with its package
		checked++
		for _, imp := range imports {
			for _, d := range driverHomes {
				if imp != d.driver && !strings.HasPrefix(imp, d.driver+"/") {
					continue
				}
				if !slices.ContainsFunc(d.homes, func(h string) bool { return rel == h || strings.HasPrefix(rel, h+"/") }) {
					t.Errorf("%s imports %s; only %v may (STYLE.md rule 1)", path, imp, d.homes)
				}
				break // the most specific rule decides (pgconn before pgx/v5)
			}
		}
		if slices.Contains(pure, rel) {
			for _, dep := range deps {
				if strings.Contains(strings.SplitN(dep, "/", 2)[0], ".") && dep != module+"/record" {
					t.Errorf("%s depends on %s; it may depend on the standard library and record only", path, dep)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read go list's output: %v", err)
	}
	if checked < 10 {
		t.Fatalf("go list gave %d of the module's packages; want them all", checked)
	}
}
