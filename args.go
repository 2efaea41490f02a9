package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a command's flags that come after its first argument
// to before it, so that `bundle create -o images.tar debian:bookworm
// --platform linux/arm64` means what it says (urfave/cli v2 stops reading
// flags at the first argument, as Go's flag package does; GNU tools and
// docker do not). args is the whole command line; what follows a "--" is
// left as it is. A token is a flag when it starts with "-" (no reference
// or file name bundle takes does, but "-" itself, stdin); the value of a flag that takes one (not a bool,
// and not given as --name=value) is the token after it.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	known := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n] = true
			takesValue[n] = !isBool
		}
	}
	known["help"], known["h"] = true, true
	var flags, positional []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i+1:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		// An unknown flag stays a flag, for cli to report it as one.
		flags = append(flags, a)
		if known[name] && takesValue[name] && !hasValue && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}
