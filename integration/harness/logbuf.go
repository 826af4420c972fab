package harness

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for a process's writers and its readers. It can note when a
// text first appears in it (NewSyncBuffer).
type SyncBuffer struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	mark     string
	markedAt time.Time
	marked   chan struct{}
}

// NewSyncBuffer returns a buffer that notes when mark is first written (Marked, MarkedAt).
func NewSyncBuffer(mark string) *SyncBuffer {
	return &SyncBuffer{mark: mark, marked: make(chan struct{})}
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from := max(0, b.buf.Len()-len(b.mark))
	n, err := b.buf.Write(p)
	if b.mark != "" && b.markedAt.IsZero() && bytes.Contains(b.buf.Bytes()[from:], []byte(b.mark)) {
		b.markedAt = time.Now()
		close(b.marked)
	}
	return n, err
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Marked is closed once the mark has been written (never, without a mark).
func (b *SyncBuffer) Marked() <-chan struct{} { return b.marked }

// MarkedAt is when the mark was first written, if it was.
func (b *SyncBuffer) MarkedAt() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.markedAt, !b.markedAt.IsZero()
}

// Above returns the last lines of a JSON log that are not at level (e.g. the debug lines, one
// per produce request, that would push everything else out of a tail).
func (b *SyncBuffer) Above(level string, lines int) string {
	var kept []string
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		if !strings.Contains(l, `"level":"`+level+`"`) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept[max(0, len(kept)-lines):], "\n")
}

// Tail returns the last lines written.
func (b *SyncBuffer) Tail(lines int) string {
	all := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
