package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/load"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "load",
		Usage:     "verify a bundle file, then load its images into docker, an OCI layout or a registry",
		UsageText: "bundle load -i images.tar [--to docker|docker://HOST[/PREFIX]|oci:DIR] [options]",
		Description: `Verifies the whole bundle first (as 'bundle verify --deep' does: every layer is
decompressed and its diffID checked, and a decompression bomb refused); a corrupt,
incomplete or hostile bundle, or a file that is not a bundle (a docker save archive),
loads nothing (exit 3). Then loads the images, keeping every digest: blobs
go to the target as the bundle holds them, never re-compressed, and each is hashed
again as it is sent. What the target already holds is skipped, so a second load
sends nothing and an interrupted load can simply be run again.

Targets (--to):
   docker                   the docker daemon at DOCKER_HOST (unix:// or tcp://), the default:
                            POST /images/load with the original blobs (a classic-store daemon
                            gets parallel streams, tagged at the end); an image already there
                            under its tag with the same image ID is skipped
   oci:DIR                  an OCI image layout directory (created if missing); index.json is
                            merged with what is there and names each image by its full reference
                            (skopeo inspect oci:DIR:docker.io/library/debian:bookworm)
   docker://HOST[/PREFIX]   a registry: blobs first, manifests after their children, the tag
                            last. The source registry's host is dropped and the path put under
                            PREFIX: docker.io/library/debian:bookworm with docker://reg:5000/mirror
                            becomes reg:5000/mirror/library/debian:bookworm, ghcr.io/acme/api:1
                            becomes reg:5000/mirror/acme/api:1.
                            A multi-arch image whose platforms are not all in the bundle cannot be
                            pushed as its index (registries refuse an index with manifests
                            missing): the tag then names one platform manifest (the one docker
                            gets, or the first --platform), and the output says so.

A bundle read from stdin (-i -) or gzip-compressed is verified while it is copied,
uncompressed, to a temp file in $TMPDIR, then loaded from there. A split bundle
(create --split) is named by its first volume, base name or a glob, and loaded
from its volumes in place.

A delta bundle (create --base/--have) does not carry the layers listed as
external in its bundle.json. Before anything is written, a registry is asked
(HEAD) for each one in each repository that needs it (a layer in another
repository of the load is mounted from there), and an OCI layout is checked for
each file; if any is missing, nothing is loaded and each is listed. A docker daemon
is refused a delta's images that need external layers: docker load takes only
whole images.

--key cosign.pub (repeatable; any one suffices) also requires that bundle.json is
signed by one of the keys (the bundle.sigstore.json entry, or images.tar.sigstore.json
beside the file): an unsigned bundle, another signer, or a bundle.json changed after
signing loads nothing (exit 3).

--dry-run verifies, then says on stdout what would be loaded and what is already
there, writing nothing. Progress goes to stderr (bars on a terminal); --json prints
one summary object on stdout.

Exit codes: 0 ok, 1 error (a registry or daemon failed: no tag names an incomplete
image; run the same command again to finish), 2 usage, 3 bundle corrupt, incomplete,
hostile or not a bundle file (nothing loaded), 130 interrupted (run the same command
again to finish). The summary says how many requests were retried.

Examples:
   bundle load -i images.tar
   bundle load -i images.tar --to oci:/var/lib/images
   bundle load -i images.tar --to docker://registry.local:5000/mirror --jobs 8
   bundle load -i images.tar --key cosign.pub --to docker://registry.local:5000/mirror
   bundle load -i images.tar --to docker://registry.local:5000 --dry-run
   bundle load -i images.tar.001 --to oci:/srv/images            # a split bundle
   bundle load -i delta.tar --to docker://registry.local:5000/mirror
   bundle load -i images.tar --image debian:bookworm --platform linux/arm64 --to oci:out
   ssh gateway cat images.tar | bundle load -i - --to oci:/srv/images --quiet --json`,
		Flags: flagList(
			[]cli.Flag{
				&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "bundle file to load, or - for stdin", Required: true},
				&cli.StringFlag{Name: "to", Usage: "target: docker, docker://HOST[:PORT][/PREFIX] or oci:DIR", Value: "docker"},
				&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "verify and say what would be loaded; write nothing"},
				&cli.StringSliceFlag{Name: "image", Usage: "load only this reference (repeatable; as the bundle lists it, or short: debian:bookworm)"},
				&cli.StringSliceFlag{Name: "platform", Usage: "load only this platform's manifests (repeatable; os/arch[/variant]); for docker, the platform it gets"},
				keyFlag, // cmd_sign.go
				jobsFlag("parallel uploads (registry), blob writes (OCI layout), or twice the load streams (classic docker daemon, at most 4 streams)"),
			},
			registryFlags("attempts per request or upload on 429/5xx/connection errors",
				"registry: drop and retry a transfer (an upload too) that moves less than 64 KiB (or what is left) in this long"),
			outputFlags(quietUsage, "print one JSON summary on stdout"),
		),
		Action: action(readLoadOptions, runLoad),
	})
}

// loadOptions are bundle load's flags, read and checked: what bundle.Load
// takes (but for stdin and progress) and what to print.
type loadOptions struct {
	load bundle.LoadOptions
	out  outputOptions
}

// readLoadOptions reads and checks load's flags.
func readLoadOptions(c *cli.Context) (loadOptions, error) {
	more, err := volumeArgs(c, "load")
	if err != nil {
		return loadOptions{}, usagef("load takes no arguments (got %q); name the bundle with -i and the target with --to", c.Args().First())
	}
	if c.String("input") == "" {
		return loadOptions{}, usagef("-i needs a file name, or - for stdin")
	}
	jobs, err := readJobs(c)
	if err != nil {
		return loadOptions{}, err
	}
	return loadOptions{out: readOutput(c), load: bundle.LoadOptions{
		Input:      c.String("input"),
		MoreInputs: more,
		To:         c.String("to"),
		DryRun:     c.Bool("dry-run"),
		Images:     c.StringSlice("image"),
		Platforms:  c.StringSlice("platform"),
		Jobs:       jobs,
		Access:     readRegistry(c),
		Keys:       c.StringSlice("key"),
	}}, nil
}

func runLoad(ctx context.Context, o loadOptions, std stdio) error {
	opts := o.load
	opts.Stdin = std.stdin
	quiet, asJSON := o.out.quiet, o.out.json
	ui := newLoadUI(std.stderr, quiet)
	opts.Progress = ui
	res, err := bundle.Load(ctx, opts)
	ui.finish()
	if err != nil {
		var ce *bundle.CorruptError
		if errors.As(err, &ce) {
			if asJSON {
				_ = writeJSON(std.stdout, map[string]any{"input": ce.Name, "loaded": 0, "intact": false, "findings": ce.Report.Findings})
			}
			if !quiet {
				for _, f := range ce.Report.Findings {
					fmt.Fprintln(std.stderr, "  "+f.String())
				}
				ce.Brief = true
			}
			hint := "copy the bundle again, from a copy that 'bundle verify' passes, or make it again with 'bundle create'"
			if len(ce.Report.Findings) == 1 && ce.Report.Findings[0].Code == verify.CodeNotBundle {
				hint = "bundle load reads files made by 'bundle create'"
				switch ce.Report.Findings[0].Looks {
				case tarball.LooksDockerSave:
					hint += "; load a docker save archive with 'docker load -i " + opts.Input + "'"
				case tarball.LooksOCIArchive:
					hint += "; an OCI archive loads with skopeo (skopeo copy oci-archive:" + opts.Input + " …) or ctr"
				}
			}
			return withHint(err, hint)
		}
		var se *load.SpecError
		if errors.As(err, &se) {
			return usagef("--to: %s", err)
		}
		if derr := deltaLoadError(std, err, opts.Input, quiet, asJSON); derr != nil {
			return derr
		}
		var nb *load.NotInBundleError
		if errors.As(err, &nb) {
			return withHint(err, "'bundle list -i "+opts.Input+"' shows the references the bundle holds")
		}
		return err
	}
	if w := res.Verified.ChecksumWarning; w != "" && !quiet {
		fmt.Fprintf(std.stderr, "bundle: warning: %s\n", w)
	}
	if asJSON {
		return writeJSON(std.stdout, res)
	}
	if res.DryRun {
		printDryRun(std.stdout, res)
	}
	for _, n := range res.Notes {
		ui.printf("note: %s\n", n)
	}
	ui.printf("%s\n", loadSummary(res))
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printDryRun prints, on stdout, one line per image: what a load would do.
func printDryRun(w io.Writer, res *bundle.LoadResult) {
	for _, im := range res.Images {
		what := "would load"
		if im.Status == load.StatusPresent {
			what = "present   "
		}
		line := fmt.Sprintf("%s %s %s", what, im.Target, im.Digest)
		if len(im.Platforms) > 0 && im.Platforms[0] != "" {
			line += " [" + strings.Join(im.Platforms, ", ") + "]"
		}
		if im.Replaces != "" && im.Status != load.StatusPresent {
			line += " (replaces " + im.Replaces + ")"
		}
		fmt.Fprintln(w, line)
		if im.Note != "" {
			fmt.Fprintln(w, "  note: "+im.Note)
		}
	}
}

func loadSummary(res *bundle.LoadResult) string {
	if res.DryRun {
		return fmt.Sprintf("dry run, %s: %d %s to load, %d already there; would send up to %d %s (%s), %d already there",
			res.Target, res.Missing, plural(res.Missing, "image", "images"), res.Present,
			res.BlobsSent, plural(res.BlobsSent, "blob", "blobs"), humanBytes(res.BytesSent), res.BlobsPresent)
	}
	s := fmt.Sprintf("%s: loaded %d %s, skipped %d (already there); sent %d %s (%s)",
		res.Target, res.Loaded, plural(res.Loaded, "image", "images"), res.Skipped,
		res.BlobsSent, plural(res.BlobsSent, "blob", "blobs"), humanBytes(res.BytesSent))
	if res.BlobsPresent > 0 {
		s += fmt.Sprintf(", %d already there", res.BlobsPresent)
	}
	if res.BlobsMounted > 0 {
		s += fmt.Sprintf(", %d mounted", res.BlobsMounted)
	}
	return s + fmt.Sprintf(", %d %s in %.1fs", res.Retries, plural(int(res.Retries), "retry", "retries"), res.Seconds)
}

// loadUI shows bundle load's progress: a bar for the verify pass and one
// for the bytes sent on a terminal, plain lines otherwise.
type loadUI struct {
	statusUI
	verifying atomic.Bool
}

func newLoadUI(w io.Writer, quiet bool) *loadUI {
	return &loadUI{statusUI: newStatusUI(w, quiet)}
}

// Verifying implements bundle.LoadProgress.
func (u *loadUI) Verifying(read, total int64) {
	if u.quiet {
		return
	}
	if !u.verifying.Swap(true) {
		if !u.tty {
			if total > 0 {
				u.printf("verifying (%s)\n", humanBytes(total))
			} else {
				u.printf("verifying\n")
			}
			return
		}
		u.startBar(total, "verifying")
	}
	u.barSet(read)
}

// Verified implements bundle.LoadProgress.
func (u *loadUI) Verified(rep *verify.Report) {
	u.endBar()
	if rep.Intact {
		skipped := ""
		if rep.Shallow > 0 {
			skipped = fmt.Sprintf(" (%d %s, %s, checked by digest only: already in the target, or decompressed as they load)",
				rep.Shallow, plural(rep.Shallow, "layer", "layers"), humanBytes(rep.ShallowBytes))
		}
		u.printf("verified: %d %s, %d %s, %s%s\n", rep.Images, plural(rep.Images, "image", "images"),
			rep.Blobs, plural(rep.Blobs, "blob", "blobs"), humanBytes(rep.BytesRead), skipped)
		if line := signatureLine(rep); line != "" { // cmd_sign.go
			u.printf("%s\n", line)
		}
	}
}

// Loading implements bundle.LoadProgress.
func (u *loadUI) Loading(target string, images int, dryRun bool) {
	if dryRun {
		u.printf("checking %d %s against %s\n", images, plural(images, "image", "images"), target)
		return
	}
	u.printf("loading %d %s into %s\n", images, plural(images, "image", "images"), target)
}

// Planned implements load.Progress.
func (u *loadUI) Planned(images, blobs int, bytes int64) {
	if bytes > 0 {
		u.startBar(bytes, "sending")
	}
}

// Sent implements load.Progress.
func (u *loadUI) Sent(n int64) { u.barAdd(n) }

// Done implements load.Progress.
func (u *loadUI) Done(r load.ImageResult) {
	switch r.Status {
	case load.StatusSkipped:
		u.printf("skipped %s %s (already there)\n", r.Target, r.Digest)
	default:
		line := fmt.Sprintf("loaded  %s %s", r.Target, r.Digest)
		if len(r.Platforms) > 0 && r.Platforms[0] != "" {
			line += " [" + strings.Join(r.Platforms, ", ") + "]"
		}
		if r.Replaces != "" {
			line += " (was " + r.Replaces + ")"
		}
		u.printf("%s\n", line)
	}
	if r.Note != "" {
		u.printf("note: %s\n", r.Note)
	}
}

func (u *loadUI) finish() { u.endBar() }
