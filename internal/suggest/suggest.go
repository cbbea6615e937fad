// Package suggest finds the closest known name to a mistyped one, for
// "did you mean" hints in settings and config errors.
package suggest

// Closest returns the candidate nearest to word by optimal-string-alignment
// distance (Levenshtein plus adjacent transpositions, the usual typo), and
// whether it is near enough to suggest: within max(2, len(word)/3) edits and
// not a rewrite of every character. Ties go to the lexically smallest
// candidate so the hint does not depend on map order. Comparison is
// case-sensitive; fold case first where case does not matter.
func Closest(word string, candidates []string) (string, bool) {
	w := []rune(word)
	limit := max(2, len(w)/3)
	best, bestDist := "", -1
	for _, c := range candidates {
		cr := []rune(c)
		d := distance(w, cr)
		if d > limit || d >= max(len(w), len(cr)) {
			continue
		}
		if bestDist < 0 || d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	return best, bestDist >= 0
}

// distance is the optimal string alignment distance between a and b.
func distance(a, b []rune) int {
	// Three rows suffice: the transposition looks back two rows.
	prev2 := make([]int, len(b)+1)
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
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
