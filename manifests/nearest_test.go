package manifests

import (
	"strings"
	"testing"
)

func TestNearest(t *testing.T) {
	keys := []string{"name", "tags", "platforms"}
	for _, tc := range []struct {
		in   string
		want string // "" for none
	}{
		{"nmae", "name"}, // swap
		{"nam", "name"},  // deletion
		{"platfrom", "platforms"},
		{"tag", "tags"},
		{"name", ""},   // exact: not a typo
		{"debian", ""}, // far
		{"x", ""},      // too short to guess
		{strings.Repeat("a", 100), ""},
	} {
		got, ok := Nearest(tc.in, keys)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("Nearest(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func FuzzNearest(f *testing.F) {
	f.Add("nmae")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Nearest(s, entryKeys)
		if ok && editDistance(s, got) > 2 {
			t.Errorf("Nearest(%q) = %q, %d edits away", s, got, editDistance(s, got))
		}
	})
}
