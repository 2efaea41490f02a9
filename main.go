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

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/serve"
	"github.com/bundle-tool/bundle/tarball"
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
		OnUsageError:         onUsageError,
		// bundle NAME: a NAME that is no command is a usage error.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand(c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		// bundle help NAME: the help command cannot return an error, so
		// run returns it (unknownCommandKey).
		CommandNotFound: func(c *cli.Context, name string) {
			c.App.Metadata[unknownCommandKey] = name
		},
		Metadata:       map[string]any{},
		ExitErrHandler: func(*cli.Context, error) {}, // run maps errors to exit codes
	}
}

const unknownCommandKey = "unknownCommand"

func unknownCommand(name string) error {
	return withHint(usagef("unknown command %q", name), "run 'bundle --help' for the list of commands")
}

// onUsageError turns a flag the command line got wrong (an unknown flag,
// a value that does not parse) into a usage error (exit 2) with a hint.
func onUsageError(c *cli.Context, err error, isSub bool) error {
	help := "bundle --help"
	if isSub && c.Command != nil && c.Command.Name != "" {
		help = "bundle " + c.Command.Name + " --help"
	}
	return withHint(usageError{err.Error()}, "run '"+help+"' for its flags")
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
	app := newApp(stdout, stderr)
	for _, c := range app.Commands {
		c.OnUsageError = onUsageError // cli sets it on the root command only
	}
	err := app.RunContext(ctx, interspersed(app, args))
	if name, ok := app.Metadata[unknownCommandKey].(string); ok && err == nil {
		err = unknownCommand(name)
	}
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
	} else if code == exitUsage {
		fmt.Fprintf(stderr, "bundle: hint: run '%s' for its flags\n", helpCommand(app, args))
	}
	return code
}

// exitCode maps err to the exit code, over typed errors: the one place
// that does.
func exitCode(ctx context.Context, err error) int {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupted
	case isUsage(err):
		return exitUsage
	case isCorrupt(err):
		return exitCorrupt
	}
	return exitError
}

// isUsage says err is about how the command was called.
func isUsage(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	// cli checks required flags itself and returns an unexported type
	// (errRequiredFlags, cli v2.27) whose only mark is its message: the
	// one place that matches text.
	msg := err.Error()
	return strings.HasPrefix(msg, "Required flag ") && strings.HasSuffix(msg, " not set")
}

// isCorrupt says err is the verdict that a bundle is corrupt, incomplete
// or changed while it was read (exit 3), from whichever package found it.
func isCorrupt(err error) bool {
	var vc corruptBundle        // bundle verify's verdict
	var lc *bundle.CorruptError // bundle load's verify pass
	var changed *load.ChangedError
	var bomb *load.BombError
	var notBundle *tarball.NotBundleError // list, inventory, load: what tarball reads
	var entry *tarball.EntryError
	var tc *tarball.CorruptError
	return errors.As(err, &vc) || errors.As(err, &lc) || errors.As(err, &changed) || errors.As(err, &bomb) ||
		errors.As(err, &notBundle) || errors.As(err, &entry) || errors.As(err, &tc) || serve.IsRefused(err)
}

// helpCommand is the command line that shows the help of the command
// args run.
func helpCommand(app *cli.App, args []string) string {
	for _, a := range args[min(1, len(args)):] {
		if strings.HasPrefix(a, "-") {
			continue
		}
		if app.Command(a) != nil {
			return "bundle " + a + " --help"
		}
		break
	}
	return "bundle --help"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
