package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// RepoRoot is the repository's directory (where go.mod is), found upwards from the working
// directory: the harness runs deploy/local's scripts and reads deploy/'s configuration from
// there, whichever package's tests (or the benchmark) use it. It panics outside a checkout.
var RepoRoot = sync.OnceValue(func() string {
	root, err := FindRepoRoot()
	if err != nil {
		panic(err)
	}
	return root
})

// FindRepoRoot is RepoRoot's search, with an error outside a checkout.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run from the pgoutbox checkout", dir)
		}
	}
}
