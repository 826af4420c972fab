package harness

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcStatus returns a memory field of /proc/<pid>/status (VmRSS, VmHWM...) in bytes.
func ProcStatus(pid int, field string) (int64, error) {
	kb, err := ProcField(fmt.Sprintf("/proc/%d/status", pid), field)
	return kb << 10, err
}

// ProcField reads the line "name: value [kB]" of a /proc file (status, meminfo) and returns
// the value, in the file's unit.
func ProcField(path, name string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == name {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, name)
}

// RSSSampler samples a process's VmRSS until stopped.
type RSSSampler struct {
	start  time.Time
	mu     sync.Mutex
	series []RSSSample
	stopCh chan struct{}
	done   chan struct{}
}

// RSSSample is one reading of a process's VmRSS.
type RSSSample struct {
	at  time.Duration // since the sampling began
	rss int64
}

// SampleRSS reads the process's VmRSS every interval until Stop.
func SampleRSS(pid int, every time.Duration) *RSSSampler {
	s := &RSSSampler{start: time.Now(), stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if rss, err := ProcStatus(pid, "VmRSS"); err == nil {
				s.mu.Lock()
				s.series = append(s.series, RSSSample{at: time.Since(s.start), rss: rss})
				s.mu.Unlock()
			}
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the samples.
func (s *RSSSampler) Stop() []RSSSample {
	close(s.stopCh)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.series
}

// PeakRSS is the largest sample taken in [from, to).
func PeakRSS(series []RSSSample, from, to time.Duration) int64 {
	var peak int64
	for _, s := range series {
		if s.at >= from && s.at < to {
			peak = max(peak, s.rss)
		}
	}
	return peak
}

// RSSTrace summarises a series: the peak of each interval of the given length.
func RSSTrace(series []RSSSample, every time.Duration) string {
	if len(series) == 0 {
		return ""
	}
	var parts []string
	end := series[len(series)-1].at
	for from := time.Duration(0); from <= end; from += every {
		parts = append(parts, fmt.Sprintf("%s:%.0f", from, float64(PeakRSS(series, from, from+every))/(1<<20)))
	}
	return strings.Join(parts, " ") + " (MiB)"
}

// MiB formats a number of bytes in MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
