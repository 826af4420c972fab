package docs

import (
	"strings"
	"testing"
)

// TestBuildALiveModel_ShowsTheExample: the walkthrough's Go server is the example program as it
// is in the repository (compiled by go build and run by integration's TestExample_LiveList), so
// what a reader copies is what CI ran.
func TestBuildALiveModel_ShowsTheExample(t *testing.T) {
	page := read(t, "docs/build-a-live-model.md")
	start := strings.Index(page, "```go\n")
	if start < 0 {
		t.Fatal("docs/build-a-live-model.md has no ```go block")
	}
	block := page[start+len("```go\n"):]
	block = block[:strings.Index(block, "```\n")]
	if want := read(t, "client/examples/livelist/main.go"); block != want {
		t.Error("docs/build-a-live-model.md's Go block differs from client/examples/livelist/main.go: paste the file again")
	}
}
