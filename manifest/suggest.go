package manifest

import (
	"sort"
	"strings"
)

// closest returns the candidate most likely meant by word, or "" when
// none is close enough to be a useful suggestion. Spelling variants that
// differ only in case, '_' or '-' ("identity_file" for "IdentityFile")
// always match; otherwise the optimal-string-alignment distance (a
// transposition counts as one edit, so "gti" is one edit from "git") must
// be at most a third of the word's length, and at least 1.
func closest(word string, candidates []string) string {
	fold := foldKey(word)
	best, bestDist := "", -1
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if foldKey(c) == fold {
			return c
		}
		d := osaDistance(strings.ToLower(word), strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := max(1, len([]rune(word))/3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

func foldKey(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

// osaDistance is the optimal string alignment distance between a and b,
// counted in runes. Inputs longer than 64 runes are not compared (the
// distance is reported as their length difference plus 64) so that a
// hostile manifest with huge keys cannot make suggestion quadratic.
func osaDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return abs(len(ra)-len(rb)) + 64
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
