// Command bundle moves container images into air-gapped networks: it packs
// images from registries into one file that docker load accepts as it is,
// proves that file intact on the other side, and loads it into a docker
// daemon, an OCI image layout directory or a registry, keeping every digest.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Exit codes, documented in --help.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitCorrupt     = 3
	exitInterrupted = 130
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "v0.1.0-dev"

// commands is filled by the init functions of the cmd_*.go files.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

// usageError marks an error in how the command was called (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// hinted carries a hint line the CLI prints under the error.
type hinted struct {
	err  error
	hint string
}

func (h hinted) Error() string { return h.err.Error() }
func (h hinted) Unwrap() error { return h.err }

func withHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return hinted{err, hint}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	sort.Slice(commands, func(i, j int) bool { return commands[i].Name < commands[j].Name })
	return &cli.App{
		Name:    "bundle",
		Usage:   "move container images into air-gapped networks",
		Version: version,
		Description: `On a connected host:
   bundle create -f images.yaml -o images.tar    pull images into one file
Carry images.tar (and images.tar.sha256) across. On the air-gapped host:
   bundle verify -i images.tar                   prove the file is intact
   bundle list -i images.tar                     show what it holds
   bundle load -i images.tar                     load it into docker, an OCI layout or a registry
Nightly, carry only what the air-gapped side lacks:
   bundle inventory --from docker://registry.local:5000/mirror -o have.json   (air-gapped side)
   bundle create -f images.yaml --have have.json -o delta.tar                (or --base images-yesterday.tar)

The file is a docker-save archive and an OCI image layout at once: docker load -i images.tar
accepts it as it is.

Exit codes: 0 ok, 1 error, 2 usage, 3 bundle corrupt or incomplete, 130 interrupted.`,
		Commands:             commands,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          false,
		EnableBashCompletion: false,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "bundle: error: unknown command %q\nbundle: hint: run 'bundle --help' for the list of commands\n", name)
			os.Exit(exitUsage)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
	}
}

func main() {
	stop := startProfiles()
	code := run(os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	code := exitCode(ctx, err)
	msg := err.Error()
	if code == exitInterrupted {
		msg = "interrupted"
	}
	fmt.Fprintf(stderr, "bundle: error: %s\n", oneLine(msg))
	var h hinted
	if errors.As(err, &h) && h.hint != "" {
		fmt.Fprintf(stderr, "bundle: hint: %s\n", h.hint)
	}
	return code
}

func exitCode(ctx context.Context, err error) int {
	var ue usageError
	var coder interface{ ExitCode() int }
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &coder):
		return coder.ExitCode()
	case isCorrupt(err):
		return exitCorrupt
	}
	return exitError
}

// corruptCheckers are filled by cmd files whose packages define a
// "bundle corrupt or incomplete" error.
var corruptCheckers []func(error) bool

func isCorrupt(err error) bool {
	for _, f := range corruptCheckers {
		if f(err) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
