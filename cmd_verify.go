package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/internal/safefs"
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
there and no other, that manifests, indexes and configs agree with bundle.json, and
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

--deep also decompresses every layer and checks its diffID against the config and
bundle.json (a layer decompressing to more than --max-ratio times its size is
refused as a decompression bomb).

Every problem is printed on its own line, naming the entry and the images that use
it, then a verdict line. Exit codes: 0 intact, 3 corrupt or incomplete, 1 the file
could not be read.

Examples:
   bundle verify -i images.tar
   bundle verify -i images.tar --deep
   bundle verify -i images.tar.001                    # a split bundle: all its volumes
   ssh gateway cat images.tar | bundle verify -i -
   bundle verify -i images.tar --quiet --json > report.json   # cron`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "bundle file to verify, or - for stdin", Required: true},
			&cli.BoolFlag{Name: "deep", Usage: "also decompress every layer and check its diffID"},
			&cli.Int64Flag{Name: "max-ratio", Usage: "with --deep, refuse a layer that decompresses to more than this many times its size", Value: verify.DefaultMaxRatio},
			&cli.BoolFlag{Name: "json", Usage: "print the report as one JSON object on stdout"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors; the exit code tells"},
		},
		Action: runVerify,
	})
	corruptCheckers = append(corruptCheckers, func(err error) bool {
		var c corruptBundle
		return errors.As(err, &c) || tarball.IsCorrupt(err)
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

func runVerify(c *cli.Context) error {
	more, err := volumeArgs(c, "verify")
	if err != nil {
		return err
	}
	if c.Int64("max-ratio") < 1 {
		return usagef("--max-ratio must be at least 1")
	}
	in, err := openInput(c, c.String("input"), more...)
	if err != nil {
		return err
	}
	defer in.Close()
	opts := verify.Options{Deep: c.Bool("deep"), MaxRatio: c.Int64("max-ratio")}
	quiet, asJSON := c.Bool("quiet"), c.Bool("json")
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	note := func(format string, a ...any) {
		if !quiet {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}

	// <file>.sha256 beside the file, when there is one.
	sumNote := ""
	if in.set != nil && in.set.Split {
		sumNote, err = splitChecksums(in.set, &opts, note)
		if err != nil {
			return err
		}
	} else if in.path != "" {
		sumFile := in.path + ".sha256"
		switch f, err := safefs.Open(sumFile); {
		case err == nil:
			h, err := verify.ParseChecksumFile(f, in.path)
			f.Close()
			if err != nil {
				note("bundle: warning: %s: %v; the file's sha256 is not checked", sumFile, err)
				sumNote = "; " + filepath.Base(sumFile) + " unusable"
			} else {
				opts.FileSHA256, opts.ChecksumFile = h, filepath.Base(sumFile)
			}
		case errors.Is(err, os.ErrNotExist):
			sumNote = "; no " + filepath.Base(sumFile) + " beside it"
		default:
			return fmt.Errorf("reading the checksum file: %w", err)
		}
	}

	ui := newVerifyUI(stderr, quiet, in.size)
	if !ui.tty {
		what := "verifying " + in.name
		if in.size > 0 {
			what += " (" + humanBytes(in.size) + ")"
		}
		if opts.Deep {
			what += ", decompressing every layer"
		}
		note("%s", what)
	}
	opts.Progress = ui
	if ra, ok := in.Reader.(io.ReaderAt); ok && in.set != nil {
		opts.ReaderAt = ra // a file: blobs are read several at once
	}
	start := time.Now()
	rep, err := verify.Verify(c.Context, in, opts)
	ui.finish()
	if err != nil {
		return fmt.Errorf("verifying %s: %w", in.name, err)
	}

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
		fmt.Fprintln(stdout, verdict(in.name, rep, time.Since(start), sumNote))
	}
	if rep.Intact {
		return nil
	}
	for _, f := range rep.Findings {
		if f.Code == verify.CodeNotBundle {
			return withHint(corruptBundle{name: in.name, msg: f.Problem}, notBundleHint(f.Problem, in.name))
		}
	}
	hint := "do not load it; copy it again from a copy that verifies, or make it again with 'bundle create'"
	for _, f := range rep.Findings {
		if f.Code == verify.CodeEntry {
			hint = "do not load it: it holds entries that 'bundle create' never writes"
		}
	}
	if h := volumeHint(rep, in.set); h != "" {
		hint = h
	}
	return withHint(corruptBundle{name: in.name, problems: len(rep.Findings)}, hint)
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

func notBundleHint(problem, name string) string {
	switch {
	case strings.Contains(problem, "docker save"):
		return fmt.Sprintf("load it with 'docker load -i %s'; bundle reads files made by 'bundle create'", name)
	case strings.Contains(problem, "OCI image layout"):
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

// input is the bundle file, the volumes of a split bundle, or stdin.
type input struct {
	io.Reader
	name  string             // for messages
	path  string             // "" for stdin; the base name of volumes
	set   *tarball.VolumeSet // nil for stdin
	size  int64              // 0 when unknown
	close func() error
}

func (in *input) Close() error {
	if in.close != nil {
		return in.close()
	}
	return nil
}

// openInput opens the bundle -i names: a file, stdin (-), or a split
// bundle's volumes (any volume, their base name, or a glob; more are the
// further volumes of a glob the shell expanded), read as one stream.
func openInput(c *cli.Context, path string, more ...string) (*input, error) {
	if path == "" {
		return nil, usagef("-i needs a file name, or - for stdin")
	}
	if path == "-" {
		r := c.App.Reader
		if r == nil {
			r = os.Stdin
		}
		return &input{Reader: r, name: "stdin"}, nil
	}
	set, err := tarball.FindVolumes(path, more...)
	if err != nil {
		return nil, fmt.Errorf("opening the bundle: %w", err)
	}
	in := &input{name: set.Name(), path: set.Base, set: set}
	if !set.Split {
		in.name = path
	}
	if len(set.Readable()) == 0 {
		// Volume 1 is missing: verify reports it; there is nothing to read.
		in.Reader = strings.NewReader("")
		return in, nil
	}
	r, err := set.Open()
	if err != nil {
		return nil, err
	}
	in.Reader, in.close = r, r.Close
	if n := r.Size(); n > 0 {
		in.size = n
	}
	return in, nil
}

// verifyUI draws a progress bar on stderr when it is a terminal.
type verifyUI struct{ statusUI }

func newVerifyUI(w io.Writer, quiet bool, size int64) *verifyUI {
	u := &verifyUI{newStatusUI(w, quiet)}
	u.startBar(size, "verifying") // a spinner when the size is not known (a pipe)
	return u
}

// Update implements verify.Progress.
func (u *verifyUI) Update(read int64) { u.barSet(read) }

func (u *verifyUI) finish() { u.endBar() }
