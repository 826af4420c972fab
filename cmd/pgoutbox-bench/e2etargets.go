package main

import "fmt"

// e2eSustainedP99Ms is the delivery p99 under which a path counts as sustaining a rate.
const e2eSustainedP99Ms = 250

// sustainedRates is, per path key, the highest measured rate the path kept (it committed at
// ≥ 98 % of the rate) with every event delivered to every subscriber once, in order, and a
// delivery p99 under 250 ms; 0 when it sustained none of the measured rates. Pure: from results.
func sustainedRates(results []EndToEndResult) map[string]int {
	out := map[string]int{}
	for _, e := range results {
		if e.Subscribers == 0 {
			continue // the baseline delivers nothing
		}
		if _, ok := out[e.Key]; !ok {
			out[e.Key] = 0
		}
		ok := e.RateAchieved >= 0.98*float64(e.Rate) && e.Counts.correct() && e.Delivery.Count > 0 && e.Delivery.P99 < e2eSustainedP99Ms
		if ok && e.Rate > out[e.Key] {
			out[e.Key] = e.Rate
		}
	}
	return out
}

// e2eTargets are the delivery targets at 1,000 events/s: pgoutbox's commit→subscriber p99
// (each of its paths) at most the stream broker's and at most a third of Debezium's, and every
// path's correctness.
func e2eTargets(results []EndToEndResult) []Target {
	at := map[string]EndToEndResult{}
	for _, e := range results {
		if e.Rate == 1000 {
			at[e.Key] = e
		}
	}
	var ts []Target
	for _, ours := range []string{"table", "send"} {
		o, ok := at[ours]
		if !ok || o.Delivery.Count == 0 {
			continue
		}
		if s, ok := at["stream"]; ok && s.Delivery.Count > 0 {
			ts = append(ts, Target{fmt.Sprintf("scenario 10 at 1,000/s: pgoutbox %s p99 ≤ the stream broker's", ours),
				fmt.Sprintf("%.1f vs %.1f ms; load average %.1f", o.Delivery.P99, s.Delivery.P99, o.LoadAvg1), o.Delivery.P99 <= s.Delivery.P99})
		}
		if d, ok := at["debezium"]; ok && d.Delivery.Count > 0 {
			ts = append(ts, Target{fmt.Sprintf("scenario 10 at 1,000/s: pgoutbox %s p99 ≤ ⅓ of Debezium's", ours),
				fmt.Sprintf("%.1f vs %.1f ms; load average %.1f", o.Delivery.P99, d.Delivery.P99, o.LoadAvg1), 3*o.Delivery.P99 <= d.Delivery.P99})
		}
	}
	for _, e := range results {
		if e.Subscribers > 0 && !e.Counts.correct() {
			c := e.Counts
			ts = append(ts, Target{fmt.Sprintf("scenario 10: %s at %d/s delivers every event once, in order", e.Key, e.Rate),
				fmt.Sprintf("%d of %d delivered, %d lost, %d duplicates, %d late", c.Delivered, c.Expected, c.Lost, c.Duplicates, c.OutOfOrder), false})
		}
	}
	return ts
}
