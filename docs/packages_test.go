package docs

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// tableRows returns the first cells of the Markdown table whose header's first cell is
// header, in the section of page under the heading section: the backquoted names.
func tableRows(t *testing.T, page, section, header string) []string {
	t.Helper()
	var rows []string
	in, table := false, false
	for _, line := range prose(read(t, page)) {
		if m := heading.FindStringSubmatch(line); m != nil {
			in = m[2] == section
			table = false
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			table = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		first := strings.TrimSpace(cells[0])
		switch {
		case first == header:
			table = true
		case table && strings.Trim(first, "-: ") == "":
		case table:
			name := regexp.MustCompile("^`([^`]+)`$").FindStringSubmatch(first)
			if name == nil {
				t.Errorf("%s, %q: row %q does not start with a `path`", page, section, line)
				continue
			}
			rows = append(rows, strings.TrimSuffix(name[1], "/"))
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no table headed %q under the heading %q", page, header, section)
	}
	return rows
}

// goPackages returns the module's packages as `go list ./...` reports them, each as its
// directory relative to the repository's root ("." for the root).
func goPackages(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, filepath.ToSlash(rel))
	}
	return pkgs
}

// TestArchitecture_PackageTable keeps the design's package map true: every package of the
// module has a row in architecture.md's table, and every row names a package that exists.
func TestArchitecture_PackageTable(t *testing.T) {
	rows := tableRows(t, "docs/architecture.md", "Packages", "package")
	pkgs := goPackages(t)
	for _, p := range pkgs {
		if !slices.Contains(rows, p) {
			t.Errorf("package %s has no row in docs/architecture.md's package table: add one saying what it owns and what it may import", p)
		}
	}
	for _, r := range rows {
		if !slices.Contains(pkgs, r) {
			t.Errorf("docs/architecture.md's package table names %s, which `go list ./...` does not report: remove or rename the row", r)
		}
	}
	if len(pkgs) < 5 {
		t.Errorf("go list reported only %v", pkgs)
	}
}

// TestArchitecture_FolderTable checks the table of folders that hold no Go package.
func TestArchitecture_FolderTable(t *testing.T) {
	for _, f := range tableRows(t, "docs/architecture.md", "Packages", "folder") {
		if checkLink(t, "README.md", f+"/") != "" {
			t.Errorf("docs/architecture.md's folder table names %s/, which does not exist", f)
		}
	}
}
