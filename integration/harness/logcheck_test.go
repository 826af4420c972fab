package harness

import (
	"testing"
)

func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	if err := uniqueKeys([]byte(`{"level":"error","alarm":"critical","x":{"level":1}}`)); err != nil {
		t.Fatalf("unique keys rejected: %v", err)
	}
	if err := uniqueKeys([]byte(`{"level":"error","component":"a","level":"critical"}`)); err == nil {
		t.Fatal("a duplicate key passed")
	}
}
