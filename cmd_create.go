package main

import (
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/bundle-tool/bundle/bundle"
	"github.com/bundle-tool/bundle/fetch"
	"github.com/bundle-tool/bundle/internal/space"
	"github.com/bundle-tool/bundle/sign"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "create",
		Usage:     "pull the images listed in a manifest file into one bundle file",
		UsageText: "bundle create -f images.yaml -o images.tar [options]",
		Description: `Reads images.yaml (or a plain images.txt list), resolves every reference on its
registry, downloads every blob into a verified cache, and writes one tar that
'docker load -i' accepts as it is, with bundle.json (digest index and blob index)
first. The file is written to a temp file beside the output and renamed only when
complete; images.tar.sha256 is written beside it. With --sign-key, bundle.json is
signed (a Sigstore bundle, as 'cosign sign-blob' makes): the signature is the
bundle.sigstore.json entry and images.tar.sigstore.json beside the file.

Examples:
   bundle create -f images.yaml -o images.tar
   bundle create -f images.txt -o images.tar --lock images.lock
   SOURCE_DATE_EPOCH=0 bundle create -f images.yaml --locked images.lock -o images.tar
   bundle create -f images.yaml -o - | ssh gateway 'cat > images.tar'
   bundle create -f images.yaml -o images.tar --quiet --json   # cron
   bundle create -f images.yaml -o images.tar --split 4G       # images.tar.001, .002, … (FAT32)
   bundle create -f images.yaml -o images.tar.gz --gzip
   COSIGN_PASSWORD=… bundle create -f images.yaml -o images.tar --sign-key cosign.key
   bundle create -f images.yaml --base images-monday.tar -o delta.tar   # only new layers
   bundle create -f images.yaml --have have.json -o delta.tar  # have.json: bundle inventory`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "manifest file (images.yaml or images.txt)", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "bundle file to write, or - for stdout", Required: true},
			&cli.StringFlag{Name: "lock", Usage: "write the digest each reference resolved to into this lockfile"},
			&cli.StringFlag{Name: "locked", Usage: "fetch exactly the digests of this lockfile (a moved tag is an error)"},
			&cli.StringFlag{Name: "cache", Usage: "blob cache directory (default $XDG_CACHE_HOME/bundle)", EnvVars: []string{"BUNDLE_CACHE"}},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Usage: "parallel downloads", Value: bundle.DefaultJobs()},
			&cli.StringSliceFlag{Name: "insecure", Usage: "registry host:port to reach over plain HTTP or unverified TLS (repeatable; loopback needs none)"},
			&cli.StringFlag{Name: "docker-platform", Usage: "platform that manifest.json lists for multi-arch references (default: the first platform asked for)"},
			&cli.IntFlag{Name: "retries", Usage: "attempts per request on 429/5xx/connection errors", Value: fetch.DefaultRetryPolicy.Attempts},
			&cli.DurationFlag{Name: "stall-timeout", Usage: "drop and retry (a blob: resume with a Range request) a transfer that moves less than 64 KiB (or what is left) in this long", Value: fetch.DefaultStallTimeout},
			&cli.IntFlag{Name: "segments", Usage: "Range requests at once for one large blob, when the registry caps each connection's rate (1: one stream)", Value: fetch.DefaultSegments},
			&cli.StringFlag{Name: "segment-threshold", Usage: "blobs of at least `SIZE` are downloaded in segments (K, M, G = KiB, MiB, GiB)", Value: "64M"},
			&cli.BoolFlag{Name: "no-space-check", Usage: "skip the check, before downloading, that the cache's and the output's disks have room (for filesystems whose free space statfs misreports)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON summary on stdout"},
			signKeyFlag, // cmd_sign.go
		}, createVolumeFlags...), // cmd_create_volumes.go
		Action: runCreate,
	})
}

func runCreate(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("create takes no arguments (got %q); use -f and -o", c.Args().First())
	}
	opts := bundle.CreateOptions{
		File:           c.String("file"),
		Output:         c.String("output"),
		Stdout:         c.App.Writer,
		Lock:           c.String("lock"),
		Locked:         c.String("locked"),
		CacheDir:       c.String("cache"),
		Jobs:           c.Int("jobs"),
		Insecure:       c.StringSlice("insecure"),
		DockerPlatform: c.String("docker-platform"),
		StallTimeout:   c.Duration("stall-timeout"),
		Creator:        "bundle " + version,
		NoSpaceCheck:   c.Bool("no-space-check"),
		SignKey:        c.String("sign-key"),
		Password:       cosignPassword(c), // cmd_sign.go
	}
	if opts.Output == "-" && c.Bool("json") {
		return usagef("--json and -o - both write to stdout; choose one")
	}
	if opts.Lock != "" && opts.Locked != "" && opts.Lock == opts.Locked {
		return usagef("--lock and --locked name the same file")
	}
	if err := createVolumeOptions(c, &opts); err != nil {
		return err
	}
	if opts.Segments = c.Int("segments"); opts.Segments < 1 {
		return usagef("--segments must be 1 or more (1: one stream per blob)")
	}
	n, err := parseSize(c.String("segment-threshold"))
	if err != nil || n < 1 {
		return usagef("--segment-threshold wants a size such as 64M (got %q)", c.String("segment-threshold"))
	}
	opts.SegmentThreshold = n
	if r := c.Int("retries"); r > 0 {
		opts.Retry = fetch.DefaultRetryPolicy
		opts.Retry.Attempts = r
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return usagef("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
		}
		t := time.Unix(sec, 0).UTC()
		opts.SourceDateEpoch = &t
	}
	ui := newCreateUI(c.App.ErrWriter, c.Bool("quiet"))
	opts.Progress = ui
	res, err := bundle.Create(c.Context, opts)
	ui.finish()
	var se *space.Error
	var ke *sign.KeyError
	if errors.As(err, &ke) {
		return keyHint(err)
	}
	if errors.As(err, &se) {
		return withHint(err, "free some space, or choose another -o or --cache (--no-space-check skips this check)")
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		b, err := bundle.MarshalResult(res)
		if err != nil {
			return err
		}
		_, err = c.App.Writer.Write(b)
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
