package main

import (
	"flag"
	"fmt"
	"strings"
)

// flagError turns the flag package's parse error into one line that names the flag and, for an
// unknown one, the closest known flag.
func flagError(fs *flag.FlagSet, err error) string {
	name, unknown := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !unknown {
		// The flag package names flags with one dash ("invalid value \"abc\" for flag
		// -max-inflight-events"); the documentation and the advice use two.
		return strings.Replace(err.Error(), " for flag -", " for flag --", 1)
	}
	name = strings.TrimLeft(name, "-")
	msg := fmt.Sprintf("unknown flag --%s", name)
	if near := closestFlag(fs, name); near != "" {
		msg += fmt.Sprintf(" (did you mean --%s?)", near)
	}
	return msg
}

// closestFlag returns the defined flag nearest to name by edit distance, or "" when none is
// near enough to be a likely typo.
func closestFlag(fs *flag.FlagSet, name string) string {
	best, bestDist := "", len(name)/2+2
	fs.VisitAll(func(f *flag.Flag) {
		if d := editDistance(name, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
