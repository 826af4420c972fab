package main

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Quantiles of a latency distribution, in milliseconds.
type Quantiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// Within5ms, Within20ms and Within50ms are the shares at or below the targets' bounds.
	Within5ms  float64 `json:"share_within_5ms"`
	Within20ms float64 `json:"share_within_20ms"`
	Within50ms float64 `json:"share_within_50ms"`
	// Source says how the figures were obtained and how exact they are.
	Source string `json:"source"`
}

// exactQuantiles computes the quantiles of measured latencies (nearest rank).
func exactQuantiles(lat []time.Duration, source string) Quantiles {
	q := Quantiles{Count: len(lat), Source: source}
	if len(lat) == 0 {
		return q
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	q.P50, q.P99, q.P999, q.Max = rank(0.5), rank(0.99), rank(0.999), ms(s[len(s)-1])
	q.Within5ms = float64(sort.Search(len(s), func(i int) bool { return s[i] > 5*time.Millisecond })) / float64(len(s))
	q.Within20ms = float64(sort.Search(len(s), func(i int) bool { return s[i] > 20*time.Millisecond })) / float64(len(s))
	q.Within50ms = float64(sort.Search(len(s), func(i int) bool { return s[i] > 50*time.Millisecond })) / float64(len(s))
	return q
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bucket is one cumulative histogram bucket: count observations ≤ le seconds.
type bucket struct {
	le    float64
	count float64
}

// histogram reads a Prometheus histogram's cumulative buckets from scraped metrics.
func histogram(m map[string]float64, name string) []bucket {
	var bs []bucket
	prefix := name + `_bucket{le="`
	for series, v := range m {
		if !strings.HasPrefix(series, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(series[len(prefix):], `"}`), 64)
		if err == nil {
			bs = append(bs, bucket{le: le, count: v})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	return bs
}

// minus returns the observations of h that are not in before (same buckets).
func minus(h, before []bucket) []bucket {
	out := slices.Clone(h)
	for i := range out {
		if i < len(before) && before[i].le == out[i].le {
			out[i].count -= before[i].count
		}
	}
	return out
}

// histogramQuantiles estimates quantiles from cumulative buckets, interpolating linearly
// within a bucket as Prometheus' histogram_quantile does. Max is the upper bound of the highest
// non-empty bucket; a quantile in the +Inf bucket is reported as the highest finite bound.
func histogramQuantiles(bs []bucket, source string) Quantiles {
	q := Quantiles{Source: source}
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return q
	}
	total := bs[len(bs)-1].count
	q.Count = int(total)
	at := func(p float64) float64 {
		target := p * total
		prevLE, prevCount := 0.0, 0.0
		for _, b := range bs {
			if b.count >= target {
				if math.IsInf(b.le, 1) {
					return prevLE * 1000
				}
				if b.count == prevCount {
					return b.le * 1000
				}
				return (prevLE + (b.le-prevLE)*(target-prevCount)/(b.count-prevCount)) * 1000
			}
			prevLE, prevCount = b.le, b.count
		}
		return prevLE * 1000
	}
	q.P50, q.P99, q.P999 = at(0.5), at(0.99), at(0.999)
	prev, finite := 0.0, 0.0
	for _, b := range bs {
		if b.count > prev {
			q.Max = b.le * 1000
			if math.IsInf(b.le, 1) { // JSON has no infinity: the highest finite bound, exceeded
				q.Max = finite * 1000
			}
		}
		if !math.IsInf(b.le, 1) {
			finite = b.le
		}
		prev = b.count
		switch b.le {
		case 0.005:
			q.Within5ms = b.count / total
		case 0.02:
			q.Within20ms = b.count / total
		case 0.05:
			q.Within50ms = b.count / total
		}
	}
	return q
}
