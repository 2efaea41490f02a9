package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/bundle-tool/bundle/verify"
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
func volumeHint(res *bundle.VerifyResult) string {
	if !res.Split {
		return ""
	}
	rep := res.Report
	var names []string
	for _, f := range rep.Findings {
		if f.Code == verify.CodeVolume || (f.Code == verify.CodeChecksum && f.Entry != "") {
			names = append(names, f.Entry)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "copy " + strings.Join(names, ", ") + " again from the source (sha256sum -c " + filepath.Base(res.Checksum.File) + " checks each volume), then verify again"
}
