package manifests

// Nearest returns the candidate closest to s by edit distance, when it is
// close enough to be a typo (at most 2 edits, and fewer than half of s's
// length), and whether there is one. Ties go to the earlier candidate.
func Nearest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD == 0 || bestD > 2 || 2*bestD >= len([]rune(s)) {
		return "", false
	}
	return best, true
}

// EditDistance is the number of edits (insertions, deletions,
// substitutions, adjacent swaps) between a and b; strings over 64 runes
// count as far from everything.
func EditDistance(a, b string) int { return editDistance(a, b) }

// editDistance is the Damerau–Levenshtein distance (optimal string
// alignment: an adjacent swap counts as one edit, so "nmae" is one from
// "name").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return 1 << 20 // not a typo; and bounded work on hostile input
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
