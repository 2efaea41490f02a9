package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/load"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "inventory",
		Usage:     "list the blobs the offline side holds, for a delta bundle (create --have)",
		UsageText: "bundle inventory --from docker://HOST[/PREFIX]|oci:DIR|images.tar [-f images.yaml] -o have.json",
		Description: `Writes a small JSON file of the blobs a place holds, by digest and size only
(docs/format.md), to carry back to the online side, where
'bundle create --have have.json' leaves those layers out of the bundle.

Sources (--from):
   docker://HOST[/PREFIX]   a registry: every tag of every repository under PREFIX, from the
                            registry's catalog (or only the repositories of -f images.yaml, as
                            bundle load names them under PREFIX), each manifest, config and layer
   oci:DIR                  an OCI image layout: every blob in DIR/blobs/sha256
   images.tar               a bundle (or its volumes): what its bundle.json lists, carried or
                            external

Examples:
   bundle inventory --from docker://registry.local:5000/mirror -o have.json
   bundle inventory --from oci:/srv/images -o have.json
   bundle inventory --from docker://registry.local:5000/mirror -f images.yaml -o have.json`,
		Flags: flagList(
			[]cli.Flag{
				&cli.StringFlag{Name: "from", Usage: "what to list: docker://HOST[/PREFIX], oci:DIR or a bundle file", Required: true},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "inventory file to write, or - for stdout", Value: "-"},
				&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "registry: walk only the repositories of this manifest file, not the catalog"},
				jobsFlag("repositories walked at once"),
			},
			registryFlags(retriesUsage, "registry: drop and retry a transfer that moves less than 64 KiB (or what is left) in this long"),
			[]cli.Flag{quietFlag(quietUsage)},
		),
		Action: action(readInventoryOptions, runInventory),
	})
}

// inventoryOptions are bundle inventory's flags, read and checked.
type inventoryOptions struct {
	inventory bundle.InventoryOptions
	output    string // the file to write, "-" for stdout
	quiet     bool
}

// readInventoryOptions reads and checks inventory's flags.
func readInventoryOptions(c *cli.Context) (inventoryOptions, error) {
	if c.Args().Len() > 0 {
		return inventoryOptions{}, usagef("inventory takes no arguments (got %q); name the source with --from", c.Args().First())
	}
	jobs, err := readJobs(c)
	if err != nil {
		return inventoryOptions{}, err
	}
	o := inventoryOptions{output: c.String("output"), quiet: readOutput(c).quiet, inventory: bundle.InventoryOptions{
		From:   c.String("from"),
		File:   c.String("file"),
		Access: readRegistry(c),
		Jobs:   jobs,
	}}
	t, ok, err := readSourceDateEpoch()
	if err != nil {
		return inventoryOptions{}, err
	}
	if ok {
		o.inventory.Created = t
	}
	return o, nil
}

func runInventory(ctx context.Context, o inventoryOptions, std stdio) error {
	opts := o.inventory
	inv, st, err := bundle.TakeInventory(ctx, opts)
	if err != nil {
		return err
	}
	data, err := bundle.MarshalInventory(inv)
	if err != nil {
		return err
	}
	out := o.output
	if out == "-" {
		if _, err := std.stdout.Write(data); err != nil {
			return err
		}
	} else if err := atomicfile.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	if !o.quiet {
		what := fmt.Sprintf("%d %s", st.Blobs, plural(st.Blobs, "blob", "blobs"))
		if st.Repositories > 0 || strings.HasPrefix(opts.From, "docker://") {
			what += fmt.Sprintf(" in %d %s (%d tags, %d manifests)", st.Repositories, plural(st.Repositories, "repository", "repositories"), st.Tags, st.Manifests)
		}
		dest := out
		if out == "-" {
			dest = "stdout"
		}
		fmt.Fprintf(std.stderr, "inventory of %s: %s; written to %s\n", opts.From, what, dest)
	}
	return nil
}

// deltaLoadError presents load's refusals of a delta bundle: every blob the
// target lacks on its own line, and a hint. It returns nil for other
// errors.
func deltaLoadError(std stdio, err error, input string, quiet, asJSON bool) error {
	var me *load.MissingExternalError
	var de *load.DeltaToDaemonError
	switch {
	case errors.As(err, &me):
		if asJSON {
			_ = writeJSON(std.stdout, map[string]any{"input": input, "loaded": 0, "target": me.Target, "missingExternal": me.Blobs})
		}
		if !quiet {
			for _, m := range me.Blobs {
				fmt.Fprintf(std.stderr, "  missing %s (%s) in %s, used by %s\n", m.Digest, humanBytes(m.Size), m.Where, strings.Join(m.Images, ", "))
			}
		}
		return withHint(err, "load the bundle this delta was made against (or a full bundle) into the target first, then this one; 'bundle verify -i "+input+"' lists every blob it expects")
	case errors.As(err, &de):
		return withHint(err, "load it into a registry or an OCI layout that holds the earlier bundles (--to docker://HOST[/PREFIX] or --to oci:DIR), or load a full bundle into docker")
	}
	return nil
}
