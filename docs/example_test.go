package docs

import (
	"strings"
	"testing"
)

// TestBuildALiveModel_ShowsTheExample: the walkthrough's Go server is the example program as it
// is in the repository (compiled by go build and run by integration's TestExample_LiveList), so
// what a reader copies is what CI ran.
// Likewise the page: client/examples/livelist/web/app.ts, type-checked by integration's
// TestExample_LiveListPage against @pgoutbox/models.
func TestBuildALiveModel_ShowsTheExample(t *testing.T) {
	page := read(t, "docs/build-a-live-model.md")
	for lang, file := range map[string]string{"go": "client/examples/livelist/main.go", "ts": "client/examples/livelist/web/app.ts"} {
		fence := "```" + lang + "\n"
		start := strings.Index(page, fence)
		if start < 0 {
			t.Errorf("docs/build-a-live-model.md has no %s block", fence)
			continue
		}
		block := page[start+len(fence):]
		block = block[:strings.Index(block, "```\n")]
		if block != read(t, file) {
			t.Errorf("docs/build-a-live-model.md's %s block differs from %s: paste the file again", lang, file)
		}
	}
}
