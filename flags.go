package main

import (
	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/fetch"
	"github.com/urfave/cli/v2"
)

// The flags that several commands share are declared here, once, in
// groups; a command composes the groups it takes into its Flags (the
// usage text may say what the flag means for that command) and reads each
// group with the group's read function, which also checks it: a bad value
// is a usage error (exit 2). TestFlagGroups checks that every command with
// one flag of a group has every flag of it, with the group's names,
// aliases and defaults.

// registryFlags are the flags of a command that talks to registries
// (create, load, inventory): --insecure, --retries and --stall-timeout.
// retries says what a retry is for the command, stall what a stalled
// transfer is.
func registryFlags(retries, stall string) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "insecure", Usage: "registry host:port to reach over plain HTTP or unverified TLS (repeatable; loopback needs none)"},
		&cli.IntFlag{Name: "retries", Usage: retries, Value: fetch.DefaultRetryPolicy.Attempts},
		&cli.DurationFlag{Name: "stall-timeout", Usage: stall, Value: fetch.DefaultStallTimeout},
	}
}

// retriesUsage is --retries' usage where only requests are retried.
const retriesUsage = "attempts per request on 429/5xx/connection errors"

// readRegistry reads registryFlags: how the command reaches registries
// (fetch.NewAccess: zero or less means the default).
func readRegistry(c *cli.Context) fetch.Access {
	return fetch.NewAccess(c.StringSlice("insecure"), c.Int("retries"), c.Duration("stall-timeout"))
}

// jobsFlag is --jobs (-j); usage says what runs in parallel.
func jobsFlag(usage string) cli.Flag {
	return &cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Usage: usage, Value: bundle.DefaultJobs()}
}

// readJobs reads jobsFlag: at least 1.
func readJobs(c *cli.Context) (int, error) {
	n := c.Int("jobs")
	if n < 1 {
		return 0, usagef("--jobs must be at least 1")
	}
	return n, nil
}

// outputFlags are --quiet (-q) and --json, the flags that say what a
// command prints; quietFlag and jsonFlag are each alone, for the commands
// that take one of them.
func outputFlags(quiet, json string) []cli.Flag {
	return []cli.Flag{quietFlag(quiet), jsonFlag(json)}
}

// quietUsage is --quiet's usage where progress is all it silences.
const quietUsage = "print only errors"

func quietFlag(usage string) cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: usage}
}

func jsonFlag(usage string) cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: usage}
}

// output is what outputFlags ask for.
type output struct {
	quiet bool // print only errors on stderr
	json  bool // print one JSON object on stdout
}

// readOutput reads outputFlags (a command that takes one of them reads
// false for the other).
func readOutput(c *cli.Context) output {
	return output{quiet: c.Bool("quiet"), json: c.Bool("json")}
}

// flagList is a command's Flags: its own flags and the groups it takes,
// in the order --help lists them.
func flagList(groups ...[]cli.Flag) []cli.Flag {
	var all []cli.Flag
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}
