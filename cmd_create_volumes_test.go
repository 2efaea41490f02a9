package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4G", 4 << 30, true},
		{"4GiB", 4 << 30, true},
		{"512m", 512 << 20, true},
		{"1K", 1024, true},
		{"2T", 2 << 40, true},
		{"1000", 1000, true},
		{"1000B", 1000, true},
		{"4GB", 0, false},
		{"4.5G", 0, false},
		{"G", 0, false},
		{"-1K", 0, false},
		{"0", 0, false},
		{"4X", 0, false},
		{"99999999999T", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
