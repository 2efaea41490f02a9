package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

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
//
// Each command's flags, its own and its groups', are read into its options
// struct (createOptions, loadOptions, …) by one function in its cmd_*.go,
// readXOptions; its runX function takes that struct and never reads a
// flag by name.

// registryFlags are the flags of a command that talks to registries
// (create, load, inventory): --insecure, --retries and --stall-timeout.
// retries says what a retry is for the command, stall what a stalled
// transfer is.
func registryFlags(retries, stall string) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "insecure", Usage: "registry host:port to reach over plain HTTP or unverified TLS (repeatable; loopback needs none)"},
		&cli.StringSliceFlag{Name: "ca-file", Usage: "PEM file of a CA to trust for registries, besides the system's and each registry's certs.d/HOST[:PORT]/*.crt (repeatable)"},
		&cli.IntFlag{Name: "retries", Usage: retries, Value: fetch.DefaultRetryPolicy.Attempts},
		&cli.DurationFlag{Name: "stall-timeout", Usage: stall, Value: fetch.DefaultStallTimeout},
	}
}

// retriesUsage is --retries' usage where only requests are retried.
const retriesUsage = "attempts per request on 429/5xx/connection errors"

// readRegistry reads registryFlags: how the command reaches registries
// (fetch.NewAccess: zero or less means the default).
//
// A registry's own CAs and client certificates are read, as docker and
// podman read them, from /etc/docker/certs.d/HOST[:PORT] and
// /etc/containers/certs.d/HOST[:PORT]; BUNDLE_CERTS_DIRS (a
// colon-separated list) names other directories instead.
func readRegistry(c *cli.Context) fetch.Access {
	a := fetch.NewAccess(c.StringSlice("insecure"), c.Int("retries"), c.Duration("stall-timeout"))
	a.CAFiles = c.StringSlice("ca-file")
	if v, ok := os.LookupEnv("BUNDLE_CERTS_DIRS"); ok {
		a.CertsDirs = []string{}
		for _, d := range strings.Split(v, ":") {
			if d != "" {
				a.CertsDirs = append(a.CertsDirs, d)
			}
		}
	}
	return a
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

// outputOptions are what outputFlags ask for.
type outputOptions struct {
	quiet bool // print only errors on stderr
	json  bool // print one JSON object on stdout
}

// readOutput reads outputFlags (a command that takes one of them reads
// false for the other).
func readOutput(c *cli.Context) outputOptions {
	return outputOptions{quiet: c.Bool("quiet"), json: c.Bool("json")}
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

// readSourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible builds): the
// time it names, or ok false when it is unset or empty.
func readSourceDateEpoch() (t time.Time, ok bool, err error) {
	v, set := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !set || v == "" {
		return time.Time{}, false, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, usagef("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(sec, 0).UTC(), true, nil
}

// stdio is where a command reads and writes: stdin (-i -), stdout (data:
// --json, listings, -o -) and stderr (progress, warnings).
type stdio struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// action is a command's Action: read its options from the command line
// (read returns a usage error when they are wrong), then run it with them.
func action[O any](read func(*cli.Context) (O, error), run func(context.Context, O, stdio) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		o, err := read(c)
		if err != nil {
			return err
		}
		return run(c.Context, o, stdio{stdin: c.App.Reader, stdout: c.App.Writer, stderr: c.App.ErrWriter})
	}
}
