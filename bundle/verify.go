package bundle

import (
	"context"
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
)

// Input is an opened bundle: a file, the volumes of a split bundle read as
// one stream, or stdin. A gzip-compressed bundle is read as it is (verify
// and list decompress it).
type Input struct {
	io.Reader
	// Name is the bundle's name for messages: the path, the split
	// bundle's name (tarball.VolumeSet.Name) or "stdin".
	Name string
	// Path is the file's path, or the base name of a split bundle's
	// volumes; "" for stdin.
	Path string
	// Set is the file or volumes; nil for stdin.
	Set *tarball.VolumeSet
	// Size is the size in bytes; 0 when unknown.
	Size  int64
	close func() error
}

// Close closes the file or volumes.
func (in *Input) Close() error {
	if in.close != nil {
		return in.close()
	}
	return nil
}

// OpenInput opens the bundle named path: a file, "-" for stdin, or a split
// bundle's volumes (any volume, their base name or a glob; more are the
// further volumes of a glob a shell expanded).
func OpenInput(path string, more []string, stdin io.Reader) (*Input, error) {
	if path == "" {
		return nil, errors.New("no bundle file given")
	}
	if path == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		return &Input{Reader: stdin, Name: "stdin"}, nil
	}
	set, err := tarball.FindVolumes(path, more...)
	if err != nil {
		return nil, fmt.Errorf("opening the bundle: %w", err)
	}
	in := &Input{Name: set.Name(), Path: set.Base, Set: set}
	if !set.Split {
		in.Name = path
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
		in.Size = n
	}
	return in, nil
}

// ChecksumState says what became of the checksum file beside a bundle.
type ChecksumState int

const (
	// ChecksumNone: there is no place to look for one (stdin).
	ChecksumNone ChecksumState = iota
	// ChecksumMissing: there is no FILE.sha256 beside the bundle.
	ChecksumMissing
	// ChecksumUnusable: it is there but holds no usable line (Err says
	// why); the bundle is verified without it.
	ChecksumUnusable
	// ChecksumUsed: the file's (or each volume's) sha256 is checked
	// against it.
	ChecksumUsed
)

// Checksum is the checksum file beside a bundle and what became of it.
type Checksum struct {
	File  string // its path; "" with ChecksumNone
	State ChecksumState
	Err   error // with ChecksumUnusable
	// Volumes says it is (or would be) the sums of a split bundle's
	// volumes, not of one file.
	Volumes bool
}

// Warning says, for an unusable checksum file, what was not checked and
// why; "" otherwise.
func (c Checksum) Warning() string {
	if c.State != ChecksumUnusable {
		return ""
	}
	what := "the file's sha256 is"
	if c.Volumes {
		what = "the volumes' sha256 are"
	}
	return fmt.Sprintf("%s: %v; %s not checked", c.File, c.Err, what)
}

// checksums finds FILE.sha256 beside the bundle in (through safefs: a
// FIFO, a device or a link is not followed) and sets vo from it: the whole
// file's sha256, or for a split bundle its volumes and their sums. A
// checksum file that is there but cannot be opened is an error; one that
// cannot be parsed is ChecksumUnusable.
func checksums(in *Input, vo *verify.Options) (Checksum, error) {
	split := in.Set != nil && in.Set.Split
	if in.Path == "" {
		return Checksum{}, nil
	}
	sum := Checksum{File: in.Path + ".sha256", Volumes: split}
	f, err := safefs.Open(sum.File)
	switch {
	case errors.Is(err, os.ErrNotExist):
		sum.State = ChecksumMissing
	case err != nil:
		return sum, fmt.Errorf("reading the checksum file: %w", err)
	}
	if f != nil {
		defer f.Close()
	}
	base := filepath.Base(sum.File)
	if split {
		var sums map[string]v1.Hash
		if f != nil {
			if sums, err = verify.ParseChecksums(f); err != nil {
				sum.State, sum.Err, sums = ChecksumUnusable, err, nil
			} else {
				sum.State = ChecksumUsed
			}
		}
		if sum.State == ChecksumUsed {
			vo.SplitOptions(in.Set, sums, base)
		} else {
			vo.SplitOptions(in.Set, nil, "")
		}
		return sum, nil
	}
	if f != nil {
		h, err := verify.ParseChecksumFile(f, in.Path)
		if err != nil {
			sum.State, sum.Err = ChecksumUnusable, err
		} else {
			sum.State = ChecksumUsed
			vo.FileSHA256, vo.ChecksumFile = h, base
		}
	}
	return sum, nil
}

// VerifyProgress receives what Verify does.
type VerifyProgress interface {
	// Started says what is verified, before anything is read: the
	// bundle's name, its size (0 when unknown) and its checksum file.
	Started(name string, size int64, sum Checksum)
	verify.Progress
}

// VerifyOptions are the inputs of Verify.
type VerifyOptions struct {
	// Input, MoreInputs and Stdin name the bundle (OpenInput).
	Input      string
	MoreInputs []string
	Stdin      io.Reader
	// Deep also decompresses every layer; MaxRatio limits what one may
	// decompress to (verify.Options).
	Deep     bool
	MaxRatio int64
	// Keys are public key files (cosign.pub); when set, the bundle must
	// be signed by one of them (the bundle.sigstore.json entry, or the
	// <file>.sigstore.json beside it) or it is not intact.
	Keys     []string
	Progress VerifyProgress // may be nil
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Name     string
	Report   *verify.Report
	Checksum Checksum
	// Split says the bundle is split in volumes.
	Split bool
}

// Verify runs bundle verify: it opens the bundle, finds its checksum file
// and reads the bundle once, checking it. The error is non-nil only when
// the bundle or its checksum file could not be read, or ctx was
// cancelled; findings are in Report.
func Verify(ctx context.Context, opts VerifyOptions) (*VerifyResult, error) {
	keys, err := readKeys(opts.Keys)
	if err != nil {
		return nil, err
	}
	in, err := OpenInput(opts.Input, opts.MoreInputs, opts.Stdin)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	vo := verify.Options{Deep: opts.Deep, MaxRatio: opts.MaxRatio, Keys: keys}
	var started func(Checksum)
	if opts.Progress != nil {
		vo.Progress = opts.Progress
		started = func(sum Checksum) { opts.Progress.Started(in.Name, in.Size, sum) }
	}
	rep, sum, err := verifyPass(ctx, in, in.Reader, vo, started)
	if err != nil {
		return nil, err
	}
	return &VerifyResult{Name: in.Name, Report: rep, Checksum: sum, Split: in.Set != nil && in.Set.Split}, nil
}

// verifyPass is the verify pass of Verify and Load: it sets vo from the
// checksum file and the signature file beside in, then verifies r (in's stream, or a reader
// over it). started, when set, is called before anything is read.
func verifyPass(ctx context.Context, in *Input, r io.Reader, vo verify.Options, started func(Checksum)) (*verify.Report, Checksum, error) {
	sum, err := checksums(in, &vo)
	if err != nil {
		return nil, sum, err
	}
	if err := sidecar(in.Path, &vo); err != nil {
		return nil, sum, err
	}
	if started != nil {
		started(sum)
	}
	if ra, ok := in.Reader.(io.ReaderAt); ok && in.Set != nil && vo.ReaderAt == nil {
		vo.ReaderAt = ra // a file: blobs are read several at once
	}
	rep, err := verify.Verify(ctx, r, vo)
	if err != nil {
		return rep, sum, fmt.Errorf("verifying %s: %w", in.Name, err)
	}
	return rep, sum, nil
}
