package main

import (
	"context"
	"errors"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/space"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/sign"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "create",
		Usage:     "pull the images listed in a manifest file, or named as arguments, into one bundle file",
		UsageText: "bundle create [-f images.yaml] [REF...] -o images.tar [options]",
		Description: `Reads images.yaml (or a plain images.txt list) and the references given as
arguments, resolves every reference on its
registry, downloads every blob into a verified cache, and writes one tar that
'docker load -i' accepts as it is, with bundle.json (digest index and blob index)
first. The file is written to a temp file beside the output and renamed only when
complete; images.tar.sha256 is written beside it. With --sign-key, bundle.json is
signed (a Sigstore bundle, as 'cosign sign-blob' makes): the signature is the
bundle.sigstore.json entry and images.tar.sigstore.json beside the file.

Examples:
   bundle create -f images.yaml -o images.tar
   bundle create -o images.tar debian:bookworm alpine:3.20 --platform linux/amd64 --platform linux/arm64
   bundle create -o team.tar --all-tags registry.local:5000/team/app
   bundle create -f images.txt -o images.tar --lock images.lock
   SOURCE_DATE_EPOCH=0 bundle create -f images.yaml --locked images.lock -o images.tar
   bundle create -f images.yaml -o - | ssh gateway 'cat > images.tar'
   bundle create -f images.yaml -o images.tar --quiet --json   # cron
   bundle create -f images.yaml -o images.tar --split 4G       # images.tar.001, .002, … (FAT32)
   bundle create -f images.yaml -o images.tar.gz --gzip
   COSIGN_PASSWORD=… bundle create -f images.yaml -o images.tar --sign-key cosign.key
   bundle create -f images.yaml --base images-monday.tar -o delta.tar   # only new layers
   bundle create -f images.yaml --have have.json -o delta.tar  # have.json: bundle inventory`,
		Flags: flagList(
			[]cli.Flag{
				&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "manifest file (images.yaml or images.txt); references given as arguments are added to it"},
				&cli.StringSliceFlag{Name: "platform", Usage: "platform to keep, such as linux/arm64 (repeatable; all: every platform): for the references given as arguments, or else the file's default"},
				&cli.BoolFlag{Name: "all-tags", Usage: "every tag of each repository given as an argument (as docker pull --all-tags)"},
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "bundle file to write, or - for stdout", Required: true},
				&cli.StringFlag{Name: "lock", Usage: "write the digest each reference resolved to into this lockfile"},
				&cli.StringFlag{Name: "locked", Usage: "fetch exactly the digests of this lockfile (a moved tag is an error)"},
				&cli.StringFlag{Name: "cache", Usage: "blob cache directory (default $XDG_CACHE_HOME/bundle)", EnvVars: []string{"BUNDLE_CACHE"}},
				jobsFlag("parallel downloads"),
			},
			registryFlags(retriesUsage, "drop and retry (a blob: resume with a Range request) a transfer that moves less than 64 KiB (or what is left) in this long"),
			[]cli.Flag{
				&cli.StringFlag{Name: "docker-platform", Usage: "platform that manifest.json lists for multi-arch references (default: the first platform asked for)"},
				&cli.IntFlag{Name: "segments", Usage: "Range requests at once for one large blob, when the registry caps each connection's rate (1: one stream)", Value: fetch.DefaultSegments},
				&cli.StringFlag{Name: "segment-threshold", Usage: "blobs of at least `SIZE` are downloaded in segments (K, M, G = KiB, MiB, GiB)", Value: "64M"},
				&cli.BoolFlag{Name: "no-space-check", Usage: "skip the check, before downloading, that the cache's and the output's disks have room (for filesystems whose free space statfs misreports)"},
			},
			outputFlags(quietUsage, "print one JSON summary on stdout"),
			[]cli.Flag{signKeyFlag}, // cmd_sign.go
			createVolumeFlags,       // cmd_create_volumes.go
		),
		Action: action(readCreateOptions, runCreate),
	})
}

// createOptions are bundle create's flags, read and checked: what
// bundle.Create takes (but for where it writes and reports) and what to
// print.
type createOptions struct {
	create bundle.CreateOptions
	out    outputOptions
}

// readCreateOptions reads and checks create's flags.
func readCreateOptions(c *cli.Context) (createOptions, error) {
	args := manifests.Args{Refs: c.Args().Slice(), Platforms: c.StringSlice("platform"), AllTags: c.Bool("all-tags")}
	if c.String("file") == "" && len(args.Refs) == 0 {
		return createOptions{}, usagef("no images: give a manifest file (-f images.yaml) or references as arguments")
	}
	// The arguments are checked here, so that a bad one is a usage error;
	// bundle.Create adds them to the file's entries.
	if _, err := manifests.AddArgs(nil, args); err != nil {
		return createOptions{}, usagef("%v", err)
	}
	jobs, err := readJobs(c)
	if err != nil {
		return createOptions{}, err
	}
	o := createOptions{out: readOutput(c), create: bundle.CreateOptions{
		File:           c.String("file"),
		Args:           args,
		Output:         c.String("output"),
		Lock:           c.String("lock"),
		Locked:         c.String("locked"),
		CacheDir:       c.String("cache"),
		Jobs:           jobs,
		Access:         readRegistry(c),
		DockerPlatform: c.String("docker-platform"),
		Creator:        "bundle " + version,
		NoSpaceCheck:   c.Bool("no-space-check"),
		SignKey:        c.String("sign-key"),
		Password:       cosignPassword(c), // cmd_sign.go
	}}
	opts := &o.create
	if opts.Output == "-" && o.out.json {
		return createOptions{}, usagef("--json and -o - both write to stdout; choose one")
	}
	if opts.Lock != "" && opts.Locked != "" && opts.Lock == opts.Locked {
		return createOptions{}, usagef("--lock and --locked name the same file")
	}
	if err := createVolumeOptions(c, opts); err != nil {
		return createOptions{}, err
	}
	if opts.Segments = c.Int("segments"); opts.Segments < 1 {
		return createOptions{}, usagef("--segments must be 1 or more (1: one stream per blob)")
	}
	n, err := parseSize(c.String("segment-threshold"))
	if err != nil || n < 1 {
		return createOptions{}, usagef("--segment-threshold wants a size such as 64M (got %q)", c.String("segment-threshold"))
	}
	opts.SegmentThreshold = n
	t, ok, err := readSourceDateEpoch()
	if err != nil {
		return createOptions{}, err
	}
	if ok {
		opts.SourceDateEpoch = &t
	}
	return o, nil
}

func runCreate(ctx context.Context, o createOptions, std stdio) error {
	opts := o.create
	opts.Stdout = std.stdout
	if opts.Output == "-" && isTerminal(std.stdout) {
		return usagef("refusing to write a bundle to a terminal: redirect stdout (-o - > images.tar) or give -o FILE")
	}
	ui := newCreateUI(std.stderr, o.out.quiet)
	opts.Progress = ui
	res, err := bundle.Create(ctx, opts)
	ui.finish()
	var se *space.Error
	var ke *sign.KeyError
	if errors.As(err, &ke) {
		return keyHint(err)
	}
	if errors.As(err, &se) {
		err = withHint(err, "free some space, or choose another -o or --cache (--no-space-check skips this check)")
	}
	if err != nil {
		if o.out.json {
			// Every run prints its result, a failed one too (cron).
			b, jerr := bundle.MarshalResult(&bundle.CreateResult{Output: opts.Output, Images: []bundle.ImageSummary{}, Error: err.Error()})
			if jerr == nil {
				_, _ = std.stdout.Write(b)
			}
		}
		return err
	}
	if o.out.json {
		b, err := bundle.MarshalResult(res)
		if err != nil {
			return err
		}
		_, err = std.stdout.Write(b)
		return err
	}
	if res.Unchanged {
		ui.printf("unchanged: every image has the digests %s has; nothing written\n", res.UnchangedSince)
		return nil
	}
	if opts.Output != "-" {
		ui.printf("wrote %s: %d images, %d blobs, %s; downloaded %d blobs (%s), %d from cache, %d retries, %.1fs\n",
			res.Output, len(res.Images), res.Blobs, humanBytes(res.FileBytes), res.BlobsDownloaded,
			humanBytes(res.BytesDownloaded), res.BlobsFromCache, res.Retries, res.Seconds)
	}
	for _, line := range createVolumeSummary(res) {
		ui.printf("%s\n", line)
	}
	if s := res.Signature; s != nil && s.File != "" {
		ui.printf("signed with key %s: %s\n", s.KeyID, s.File)
	} else if s != nil {
		ui.printf("signed with key %s\n", s.KeyID)
	}
	return nil
}
