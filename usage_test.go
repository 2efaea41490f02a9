package main

import (
	"strings"
	"testing"
)

// TestUsageErrors: every way of calling bundle wrong exits 2 with one
// error line on stderr (and a hint), never a stack, and never exits the
// process itself (run is called in this process).
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"verify without -i", []string{"verify"}},
		{"list without -i", []string{"list"}},
		{"load without -i", []string{"load", "--to", "oci:out"}},
		{"create without -f", []string{"create", "-o", "x.tar"}},
		{"load --jobs abc", []string{"load", "-i", "x.tar", "--jobs", "abc"}},
		{"load --jobs 0", []string{"load", "-i", "x.tar", "--jobs", "0"}},
		{"create --jobs 0", []string{"create", "-f", "x.yaml", "-o", "x.tar", "--jobs", "0"}},
		{"inventory --jobs 0", []string{"inventory", "--from", "oci:x", "--jobs", "0"}},
		{"verify --max-ratio abc", []string{"verify", "-i", "x.tar", "--max-ratio", "abc"}},
		{"unknown command", []string{"frobnicate"}},
		{"help of an unknown command", []string{"help", "frobnicate"}},
		{"unknown flag", []string{"verify", "-i", "x.tar", "--no-such-flag"}},
		{"unknown global flag", []string{"--no-such-flag", "verify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := bundleCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			var errs int
			for _, l := range lines {
				switch {
				case strings.HasPrefix(l, "bundle: error: "):
					errs++
				case strings.HasPrefix(l, "bundle: hint: "):
				default:
					t.Errorf("stray stderr line %q", l)
				}
			}
			if errs != 1 {
				t.Errorf("%d error lines on stderr, want 1:\n%s", errs, stderr)
			}
			if !strings.Contains(stderr, "--help") {
				t.Errorf("no hint to --help on stderr:\n%s", stderr)
			}
			if all := stdout + stderr; strings.Contains(all, "panic:") || strings.Contains(all, "goroutine ") {
				t.Errorf("a stack trace:\n%s", all)
			}
		})
	}
}

// TestExitCorrupt: bundle list exits 3 on a file that is not a bundle, by
// its own error type, whatever else is registered.
func TestExitCorruptList(t *testing.T) {
	_, stderr, code := bundleCLI(t, "list", "-i", "testdata/script/help.txtar")
	if code != exitCorrupt {
		t.Errorf("list of a text file: exit %d, want %d; stderr:\n%s", code, exitCorrupt, stderr)
	}
}
