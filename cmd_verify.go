package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "verify",
		Usage:     "prove a bundle file complete and unaltered before loading it",
		UsageText: "bundle verify -i images.tar|images.tar.001|images.tar.gz [--deep] [--json] [--quiet]",
		Description: `Reads the bundle once, from start to end (a USB stick or a pipe is never
seeked), and checks every blob's sha256 and size against its name and bundle.json,
that every blob bundle.json, index.json, manifest.json and the manifests reference is
there and no other, that oci-layout, index.json and manifest.json have the sha256
bundle.json lists for them, that manifests, indexes and configs agree with bundle.json, and
that no entry is unsafe (absolute or .. paths, links, devices, duplicates). When
images.tar.sha256 is beside the file, the whole file's sha256 is checked too.
Nothing is written anywhere.

A split bundle (create --split) is named by its first volume, its base name or a
glob (images.tar.001, images.tar, 'images.tar.0*'): the volumes are read as one
stream, never joined on disk. A missing volume is reported by its number, each
volume is checked against its line in images.tar.sha256, and every problem names
the volume and the offset in it. A gzip-compressed bundle (create --gzip) is read
as it is. A delta bundle (create --base/--have) verifies what it carries and lists
the external blobs the target must already hold; they are not a problem.

A signed bundle (create --sign-key) carries its signature as bundle.sigstore.json
and beside the file as images.tar.sigstore.json: verify says by which key id it is
signed, and checks that the signature is over this bundle.json. With --key cosign.pub
(repeatable; any one suffices) the signature must verify with one of the keys, and an
unsigned bundle is refused (exit 3).

--deep also decompresses every layer and checks its diffID against the config and
bundle.json (a layer decompressing to more than --max-ratio times its size is
refused as a decompression bomb).

Every problem is printed on its own line, naming the entry and the images that use
it, then a verdict line. Exit codes: 0 intact, 3 corrupt or incomplete, 1 the file
could not be read.

Examples:
   bundle verify -i images.tar
   bundle verify -i images.tar --deep
   bundle verify -i images.tar --key cosign.pub
   bundle verify -i images.tar.001                    # a split bundle: all its volumes
   ssh gateway cat images.tar | bundle verify -i -
   bundle verify -i images.tar --quiet --json > report.json   # cron`,
		Flags: flagList(
			[]cli.Flag{
				&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "bundle file to verify, or - for stdin", Required: true},
				&cli.BoolFlag{Name: "deep", Usage: "also decompress every layer and check its diffID"},
				keyFlag, // cmd_sign.go
				&cli.Int64Flag{Name: "max-ratio", Usage: "with --deep, refuse a layer that decompresses to more than this many times its size", Value: verify.DefaultMaxRatio},
			},
			outputFlags("print nothing but errors; the exit code tells", "print the report as one JSON object on stdout"),
		),
		Action: action(readVerifyOptions, runVerify),
	})
}

// corruptBundle is the verdict of verify on a damaged bundle (exit 3).
type corruptBundle struct {
	name     string
	problems int
	msg      string // instead of the count
}

func (c corruptBundle) Error() string {
	if c.msg != "" {
		return c.name + ": " + c.msg
	}
	return fmt.Sprintf("%s is corrupt or incomplete: %d %s", c.name, c.problems, plural(c.problems, "problem", "problems"))
}

// verifyOptions are bundle verify's flags, read and checked: what
// bundle.Verify takes (but for stdin and progress) and what to print.
type verifyOptions struct {
	verify bundle.VerifyOptions
	out    outputOptions
}

// readVerifyOptions reads and checks verify's flags.
func readVerifyOptions(c *cli.Context) (verifyOptions, error) {
	more, err := volumeArgs(c, "verify")
	if err != nil {
		return verifyOptions{}, err
	}
	if c.Int64("max-ratio") < 1 {
		return verifyOptions{}, usagef("--max-ratio must be at least 1")
	}
	if c.String("input") == "" {
		return verifyOptions{}, usagef("-i needs a file name, or - for stdin")
	}
	return verifyOptions{out: readOutput(c), verify: bundle.VerifyOptions{
		Input: c.String("input"), MoreInputs: more,
		Deep: c.Bool("deep"), MaxRatio: c.Int64("max-ratio"), Keys: c.StringSlice("key"),
	}}, nil
}

func runVerify(ctx context.Context, o verifyOptions, std stdio) error {
	quiet, asJSON := o.out.quiet, o.out.json
	stdout, stderr := std.stdout, std.stderr
	ui := &verifyUI{w: stderr, quiet: quiet, deep: o.verify.Deep}
	opts := o.verify
	opts.Stdin, opts.Progress = std.stdin, ui
	start := time.Now()
	res, err := bundle.Verify(ctx, opts)
	ui.finish()
	if err != nil {
		return err
	}
	rep := res.Report

	switch {
	case asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	case !quiet:
		for _, f := range rep.Findings {
			fmt.Fprintln(stdout, f.String())
		}
		printExternal(stdout, rep)
		if line := signatureLine(rep); line != "" { // cmd_sign.go
			fmt.Fprintln(stdout, line)
		}
		if rep.NoMetadata && rep.Complete {
			fmt.Fprintln(stdout, "note: bundle.json lists no metadata (a bundle made before it did): oci-layout, index.json and manifest.json are checked against its images, not by their sha256")
		}
		fmt.Fprintln(stdout, verdict(res.Name, rep, time.Since(start), sumNote(res)))
	}
	if rep.Intact {
		return nil
	}
	for _, f := range rep.Findings {
		if f.Code == verify.CodeNotBundle {
			return withHint(corruptBundle{name: res.Name, msg: f.Problem}, notBundleHint(f.Looks, res.Name))
		}
	}
	hint := "do not load it; copy it again from a copy that verifies, or make it again with 'bundle create'"
	for _, f := range rep.Findings {
		if f.Code == verify.CodeEntry {
			hint = "do not load it: it holds entries that 'bundle create' never writes"
		}
	}
	for _, f := range rep.Findings {
		if f.Code == verify.CodeSignature {
			hint = "do not load it: its signature does not prove it comes from the holder of the key; get a bundle signed with it"
		}
	}
	if h := volumeHint(res); h != "" {
		hint = h
	}
	return withHint(corruptBundle{name: res.Name, problems: len(rep.Findings)}, hint)
}

// sumNote ends the verdict line when the checksum file is missing or
// unusable.
func sumNote(res *bundle.VerifyResult) string {
	base := filepath.Base(res.Checksum.File)
	switch res.Checksum.State {
	case bundle.ChecksumMissing:
		if res.Checksum.Volumes {
			return "; no " + base + " beside them"
		}
		return "; no " + base + " beside it"
	case bundle.ChecksumUnusable:
		return "; " + base + " unusable"
	}
	return ""
}

// verdict is the last line of verify's output.
func verdict(name string, rep *verify.Report, took time.Duration, sumNote string) string {
	if len(rep.Findings) == 1 && rep.Findings[0].Code == verify.CodeNotBundle {
		return name + ": NOT A BUNDLE"
	}
	if !rep.Intact {
		affected := rep.ImagesAffected()
		s := fmt.Sprintf("%s: CORRUPT: %d %s", name, len(rep.Findings), plural(len(rep.Findings), "problem", "problems"))
		if len(affected) > 0 {
			s += fmt.Sprintf(", %d of %d %s affected", len(affected), rep.Images, plural(rep.Images, "image", "images"))
		}
		if !rep.Complete {
			s += "; the check stopped early"
		}
		return s
	}
	s := fmt.Sprintf("%s: OK: %d %s, %d %s, %s checked in %s", name,
		rep.Images, plural(rep.Images, "image", "images"),
		rep.Blobs, plural(rep.Blobs, "blob", "blobs"),
		humanBytes(rep.BytesRead), took.Round(time.Millisecond))
	if rep.Deep {
		s += " (deep: every layer's diffID)"
	}
	if n := len(rep.External); n > 0 {
		s += fmt.Sprintf("; a delta bundle: %d %s expected at the target", n, plural(n, "blob", "blobs"))
	}
	if len(rep.Volumes) > 0 {
		return s + volumeVerdict(rep) + sumNote
	}
	if rep.ChecksumFile != "" {
		s += "; sha256 matches " + rep.ChecksumFile
	}
	return s + sumNote
}

// notBundleHint is the hint for a file that is not a bundle; looks is
// what it looks like (tarball.NotBundleError.Looks).
func notBundleHint(looks, name string) string {
	switch looks {
	case tarball.LooksDockerSave:
		return fmt.Sprintf("load it with 'docker load -i %s'; bundle reads files made by 'bundle create'", name)
	case tarball.LooksOCIArchive:
		return "bundle reads files made by 'bundle create'; an OCI archive loads with skopeo or ctr"
	}
	return "bundle reads files made by 'bundle create'"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// verifyUI draws a progress bar on stderr when it is a terminal; it
// implements bundle.VerifyProgress.
type verifyUI struct {
	statusUI
	w     io.Writer
	quiet bool
	deep  bool
	begun bool
}

// Started warns of an unusable checksum file, then starts the bar (a
// spinner when the size is not known: a pipe) or, not on a terminal, says
// what is verified.
func (u *verifyUI) Started(name string, size int64, sum bundle.Checksum) {
	note := func(format string, a ...any) {
		if !u.quiet {
			fmt.Fprintf(u.w, format+"\n", a...)
		}
	}
	if w := sum.Warning(); w != "" {
		note("bundle: warning: %s", w)
	}
	u.statusUI = newStatusUI(u.w, u.quiet)
	u.startBar(size, "verifying")
	u.begun = true
	if !u.tty {
		what := "verifying " + name
		if size > 0 {
			what += " (" + humanBytes(size) + ")"
		}
		if u.deep {
			what += ", decompressing every layer"
		}
		note("%s", what)
	}
}

// Update implements verify.Progress.
func (u *verifyUI) Update(read int64) { u.barSet(read) }

func (u *verifyUI) finish() {
	if u.begun {
		u.endBar()
	}
}
