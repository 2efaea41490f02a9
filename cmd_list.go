package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "list",
		Usage:     "show the images a bundle file holds",
		UsageText: "bundle list -i images.tar [--json]",
		Description: `Reads bundle.json, the first entry of the bundle, and nothing more (fast on any
size): every reference with the digest the registry served for it, its media type,
and per platform the manifest digest, layer count and compressed size; then the
totals and the bytes saved by storing shared blobs once. It does not check the
blobs: run 'bundle verify' for that. A split bundle is named by its first volume,
its base name or a glob; a gzip-compressed bundle is read as it is.

Examples:
   bundle list -i images.tar
   bundle list -i images.tar --json | jq -r '.images[].ref'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "bundle file to read, or - for stdin", Required: true},
			jsonFlag("print the listing as one JSON object on stdout"),
		},
		Action: action(readListOptions, runList),
	})
}

// listOptions are bundle list's flags, read and checked.
type listOptions struct {
	input string   // -i: a file, a split bundle's volume, base name or glob, or "-"
	more  []string // the further volumes of a glob the shell expanded
	json  bool
}

// readListOptions reads and checks list's flags.
func readListOptions(c *cli.Context) (listOptions, error) {
	more, err := volumeArgs(c, "list")
	if err != nil {
		return listOptions{}, err
	}
	if c.String("input") == "" {
		return listOptions{}, usagef("-i needs a file name, or - for stdin")
	}
	return listOptions{input: c.String("input"), more: more, json: readOutput(c).json}, nil
}

func runList(_ context.Context, o listOptions, std stdio) error {
	in, err := bundle.OpenInput(o.input, o.more, std.stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	l, err := verify.List(in)
	if err != nil {
		var nb *tarball.NotBundleError
		if errors.As(err, &nb) {
			return withHint(fmt.Errorf("%s: %w", in.Name, err), notBundleHint(nb.Looks, in.Name))
		}
		return fmt.Errorf("%s: %w", in.Name, err)
	}
	if o.json {
		enc := json.NewEncoder(std.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(l)
	}
	return printListing(std.stdout, l)
}

func printListing(w io.Writer, l *verify.Listing) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tTYPE\tPLATFORM\tDIGEST\tLAYERS\tSIZE")
	for _, im := range l.Images {
		if !im.MediaType.IsIndex() && len(im.Manifests) == 1 && im.Manifests[0].Digest == im.Digest {
			m := im.Manifests[0]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", im.Ref, shortType(im.MediaType), m.Platform, im.Digest, m.Layers, humanBytes(im.Size))
			continue
		}
		layers := 0
		for _, m := range im.Manifests {
			layers += m.Layers
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", im.Ref, shortType(im.MediaType), "", im.Digest, layers, humanBytes(im.Size))
		for _, m := range im.Manifests {
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%d\t%s\n", "  manifest", m.Platform, m.Digest, m.Layers, humanBytes(m.Size))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := l.Totals
	_, err := fmt.Fprintf(w, "\n%d %s, %d %s, %s of blobs; sharing saves %s (%s as separate images)\n",
		t.Images, plural(t.Images, "image", "images"), t.Blobs, plural(t.Blobs, "blob", "blobs"),
		humanBytes(t.Bytes), humanBytes(t.SavedBySharing), humanBytes(t.ImageBytes))
	if err == nil && t.External > 0 {
		_, err = fmt.Fprintf(w, "%d %s referenced but not carried (a delta bundle: the target must have them)\n", t.External, plural(t.External, "blob", "blobs"))
	}
	return err
}

// shortType names a manifest media type the way people say it.
func shortType(mt types.MediaType) string {
	switch mt {
	case types.OCIImageIndex:
		return "oci index"
	case types.OCIManifestSchema1:
		return "oci manifest"
	case types.DockerManifestList:
		return "docker list"
	case types.DockerManifestSchema2:
		return "docker manifest"
	case "":
		return "-"
	}
	return string(mt)
}
