package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// sharedFlagGroups are the groups of flags.go, for TestFlagGroups; a new
// group goes here too.
var sharedFlagGroups = map[string][]cli.Flag{
	"registryFlags": registryFlags("", ""),
	"jobsFlag":      {jobsFlag("")},
	"quietFlag":     {quietFlag("")},
	"jsonFlag":      {jsonFlag("")},
}

// TestFlagGroups: every command that has one flag of a shared group has
// every flag of the group, each as the group declares it: the same type,
// name and aliases, default, environment variables and requiredness (the
// usage text may be the command's own). A command that declares a shared
// flag by hand with another default or alias, or takes --insecure but
// forgets --stall-timeout, fails here.
func TestFlagGroups(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, name := range sortedKeys(sharedFlagGroups) {
		group := sharedFlagGroups[name]
		takers := 0
		for _, cmd := range app.Commands {
			var has, lacks []string
			for _, want := range group {
				got := findFlag(cmd, want.Names()[0])
				if got == nil {
					lacks = append(lacks, "--"+want.Names()[0])
					continue
				}
				has = append(has, "--"+want.Names()[0])
				if d := flagDiff(got, want); d != "" {
					t.Errorf("bundle %s %s: %s, not as %s declares it", cmd.Name, "--"+want.Names()[0], d, name)
				}
			}
			if len(has) > 0 {
				takers++
				if len(lacks) > 0 {
					t.Errorf("bundle %s has %s of %s but not %s", cmd.Name, strings.Join(has, ", "), name, strings.Join(lacks, ", "))
				}
			}
		}
		if takers == 0 {
			t.Errorf("no command takes %s", name)
		}
	}
}

func findFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// flagDiff says how got differs from want, but for its usage text; ""
// when it does not.
func flagDiff(got, want cli.Flag) string {
	describe := func(f cli.Flag) string {
		s := fmt.Sprintf("%T names %q", f, f.Names())
		if d, ok := f.(cli.DocGenerationFlag); ok {
			s += fmt.Sprintf(" default %q %q env %q", d.GetValue(), d.GetDefaultText(), d.GetEnvVars())
		}
		if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
			s += " required"
		}
		return s
	}
	if g, w := describe(got), describe(want); g != w {
		return fmt.Sprintf("%s, want %s", g, w)
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
