package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bundle-tool/bundle/internal/safefs"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/urfave/cli/v2"
)

// volumeArgs returns the arguments of a command that takes none but -i:
// accepted only as the further volumes of a split bundle, when the shell
// expanded an unquoted glob (-i images.tar.0* → -i images.tar.001
// images.tar.002 …).
func volumeArgs(c *cli.Context, cmd string) ([]string, error) {
	args := c.Args().Slice()
	if len(args) == 0 {
		return nil, nil
	}
	if _, _, ok := tarball.ParseVolumeName(c.String("input")); ok {
		all := true
		for _, a := range args {
			_, _, ok := tarball.ParseVolumeName(a)
			all = all && (ok || strings.HasSuffix(a, ".sha256")) // images.tar.* matches the .sha256 too
		}
		if all {
			return args, nil
		}
	}
	return nil, usagef("%s takes no arguments (got %q); name the bundle with -i", cmd, args[0])
}

// splitChecksums reads BASE.sha256 beside a split bundle's volumes into
// opts; it returns a note for the verdict when there is none.
func splitChecksums(set *tarball.VolumeSet, opts *verify.Options, warn func(string, ...any)) (string, error) {
	sumFile := set.Base + ".sha256"
	var sums map[string]v1.Hash
	switch f, err := safefs.Open(sumFile); {
	case err == nil:
		sums, err = verify.ParseChecksums(f)
		f.Close()
		if err != nil {
			warn("bundle: warning: %s: %v; the volumes' sha256 are not checked", sumFile, err)
			opts.SplitOptions(set, nil, "")
			return "; " + filepath.Base(sumFile) + " unusable", nil
		}
	case errors.Is(err, os.ErrNotExist):
		opts.SplitOptions(set, nil, "")
		return "; no " + filepath.Base(sumFile) + " beside them", nil
	default:
		return "", fmt.Errorf("reading the checksum file: %w", err)
	}
	opts.SplitOptions(set, sums, filepath.Base(sumFile))
	return "", nil
}

// volumeVerdict ends the OK line of a split bundle.
func volumeVerdict(rep *verify.Report) string {
	n, checked := len(rep.Volumes), 0
	for _, v := range rep.Volumes {
		if v.Checked {
			checked++
		}
	}
	s := fmt.Sprintf("; %d %s", n, plural(n, "volume", "volumes"))
	switch {
	case checked == n && rep.ChecksumFile != "":
		s += ", the sha256 of each matches " + rep.ChecksumFile
	case checked > 0:
		s += fmt.Sprintf(", the sha256 of %d matches %s (it has no line for the others)", checked, rep.ChecksumFile)
	}
	return s
}

// printExternal lists, for a delta bundle, the blobs the target must hold.
func printExternal(w io.Writer, rep *verify.Report) {
	if len(rep.External) == 0 {
		return
	}
	fmt.Fprintf(w, "delta bundle: %d %s (%s) not carried; the target must have %s already:\n",
		len(rep.External), plural(len(rep.External), "blob", "blobs"), humanBytes(rep.ExternalBytes()),
		plural(len(rep.External), "it", "them"))
	for _, e := range rep.External {
		line := fmt.Sprintf("  external %s %s", e.Digest, humanBytes(e.Size))
		if len(e.Images) > 0 {
			line += " (used by " + strings.Join(e.Images, ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
}

// volumeHint tells what to do about a split bundle's missing or damaged
// volumes, or returns "".
func volumeHint(rep *verify.Report, set *tarball.VolumeSet) string {
	if set == nil || !set.Split {
		return ""
	}
	var names []string
	for _, f := range rep.Findings {
		if f.Code == verify.CodeVolume || (f.Code == verify.CodeChecksum && f.Entry != "") {
			names = append(names, f.Entry)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "copy " + strings.Join(names, ", ") + " again from the source (sha256sum -c " + filepath.Base(set.Base) + ".sha256 checks each volume), then verify again"
}
