package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/urfave/cli/v2"
)

// The flags of create that split, compress and make delta bundles; their
// options are bundle.OutputOptions and bundle.DeltaOptions.
var createVolumeFlags = []cli.Flag{
	&cli.StringFlag{Name: "split", Usage: "split the bundle into volumes OUT.001, OUT.002, … each smaller than `SIZE` (K, M, G, T = KiB, MiB, GiB, TiB; 4G fits FAT32)"},
	&cli.BoolFlag{Name: "gzip", Usage: "compress the bundle (name it .tar.gz); docker load and every bundle command read it as it is"},
	&cli.StringSliceFlag{Name: "have", Usage: "write a delta: leave out the layers this inventory (bundle inventory) lists (repeatable)"},
	&cli.StringSliceFlag{Name: "base", Usage: "write a delta: leave out the layers this earlier bundle carries or references (repeatable)"},
	&cli.BoolFlag{Name: "skip-unchanged", Usage: "with --base: write nothing when every image has the digests the (first) base bundle has"},
}

// minSplit is the smallest --split.
const minSplit = 1 << 10

// createVolumeOptions reads the flags of createVolumeFlags into opts.
func createVolumeOptions(c *cli.Context, opts *bundle.CreateOptions) error {
	if s := c.String("split"); s != "" {
		size, err := parseSize(s)
		if err != nil {
			return usagef("--split %s: %v", s, err)
		}
		if size < minSplit {
			return usagef("--split %s: volumes must be at least 1K", s)
		}
		if opts.Output == "-" {
			return usagef("--split writes files OUT.001, OUT.002, …: it needs -o FILE, not -o -")
		}
		// Every volume is smaller than SIZE: FAT32 holds no file of 4 GiB,
		// only 4 GiB − 1 byte.
		opts.VolumeSize = size - 1
	}
	opts.Gzip = c.Bool("gzip")
	switch ext := filepath.Ext(opts.Output); {
	case !opts.Gzip && (ext == ".gz" || ext == ".tgz"):
		return usagef("-o %s names a gzip file, but the bundle is not compressed: add --gzip, or name it .tar", opts.Output)
	case opts.Gzip && opts.Output != "-" && ext != ".gz" && ext != ".tgz":
		return usagef("--gzip writes a gzip file: name it %s.gz", opts.Output)
	}
	opts.Have = c.StringSlice("have")
	opts.Base = c.StringSlice("base")
	opts.SkipUnchanged = c.Bool("skip-unchanged")
	if opts.SkipUnchanged && len(opts.Base) == 0 {
		return usagef("--skip-unchanged compares with the bundle --base names; give --base")
	}
	return nil
}

// parseSize reads a size in bytes: a whole number with an optional K, M,
// G or T (KiB, MiB, GiB, TiB; "4G", "4GiB", "512M").
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGTkmgtiIbB")
	unit := strings.ToUpper(s[len(num):])
	shift := 0
	switch unit {
	case "", "B":
	case "K", "KIB":
		shift = 10
	case "M", "MIB":
		shift = 20
	case "G", "GIB":
		shift = 30
	case "T", "TIB":
		shift = 40
	case "KB", "MB", "GB", "TB":
		return 0, fmt.Errorf("%q is ambiguous: write %s (binary units, %siB)", unit, unit[:1], unit[:1])
	default:
		return 0, fmt.Errorf("unknown unit %q (K, M, G or T)", s[len(num):])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a size: a whole number of bytes with an optional K, M, G or T")
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("too large")
	}
	return n << shift, nil
}

// createVolumeSummary is what create prints for a split, compressed or
// delta bundle, after its usual line.
func createVolumeSummary(res *bundle.CreateResult) []string {
	var lines []string
	if n := len(res.Volumes); n > 0 {
		lines = append(lines, fmt.Sprintf("%d %s: %s … %s (each smaller than %s); the sha256 of each in %s",
			n, plural(n, "volume", "volumes"), res.Volumes[0].Name, res.Volumes[n-1].Name,
			humanBytes(res.Volumes[0].Size+1), trimVolumeSuffix(res.Volumes[0].Name)+".sha256"))
	}
	if res.External > 0 {
		lines = append(lines, fmt.Sprintf("delta: %d %s (%s) left out, listed as external in bundle.json: the offline side has them",
			res.External, plural(res.External, "layer", "layers"), humanBytes(res.ExternalBytes)))
	}
	return lines
}

func trimVolumeSuffix(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}
