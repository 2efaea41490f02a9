package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/bundle-tool/bundle/internal/atomicfile"
	"github.com/bundle-tool/bundle/internal/safefs"
)

// LockVersion is the lockfile format this package reads and writes.
const LockVersion = 1

// MaxLockSize is the largest lockfile ReadLock reads.
const MaxLockSize = 16 << 20

// Lock is a lockfile: every reference a create run resolved, with the
// digest it resolved to. `bundle create --lock` writes one; `--locked`
// fetches exactly those digests.
type Lock struct {
	Version int           `json:"lockVersion"`      // LockVersion
	Source  *LockSource   `json:"source,omitempty"` // the manifest file the lock was made from
	Images  []LockedImage `json:"images"`           // sorted by Ref
}

// LockSource names the manifest file a lock was made from.
type LockSource struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"` // hex sha256 of the file's bytes, as Spec.SHA256
}

// LockedImage is one resolved reference.
type LockedImage struct {
	Ref       string   `json:"ref"`    // full normalized reference (FullName)
	Digest    string   `json:"digest"` // "sha256:…" of the manifest or index the registry served
	Platforms []string `json:"platforms,omitempty"`
}

// Lookup returns the digest locked for a reference. fullRef is normalized
// first, so "debian:bookworm" finds docker.io/library/debian:bookworm.
func (l *Lock) Lookup(fullRef string) (digest string, ok bool) {
	if l == nil {
		return "", false
	}
	key := fullRef
	if r, err := ParseReference(fullRef); err == nil {
		key = FullName(r)
	}
	for _, im := range l.Images {
		if im.Ref == key || im.Ref == fullRef {
			return im.Digest, true
		}
	}
	return "", false
}

// ReadLock reads and checks a lockfile. Errors name the file, with
// line:col for JSON syntax and type errors and the image's index for
// other problems; every problem found is reported.
//
// The file must be regular (links are followed): a FIFO or a device is
// refused without being waited on.
func ReadLock(path string) (*Lock, error) {
	f, err := safefs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading lockfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxLockSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading lockfile %s: %w", path, err)
	}
	return ParseLock(path, data)
}

// ParseLock decodes and checks the bytes of a lockfile; file names it in
// errors. References are normalized to their FullName.
func ParseLock(file string, data []byte) (*Lock, error) {
	fail := func(off int64, format string, a ...any) error {
		pos := Pos{File: file}
		if off >= 0 {
			pos.Line, pos.Col = lineCol(data, off)
		}
		return &Error{Pos: pos, Msg: "reading lockfile: " + fmt.Sprintf(format, a...)}
	}
	if len(data) > MaxLockSize {
		return nil, fail(-1, "file is larger than %d bytes", MaxLockSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail(-1, "file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var l Lock
	if err := dec.Decode(&l); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fail(syn.Offset, "%v", err)
		case errors.As(err, &typ):
			return nil, fail(typ.Offset, "%s: %v", typ.Field, err)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fail(int64(len(data)), "unexpected end of JSON")
		}
		return nil, fail(-1, "%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail(dec.InputOffset(), "unexpected data after the JSON object")
	}

	el := errList{file: file}
	add := func(format string, a ...any) {
		el.add(Pos{File: file}, nil, "reading lockfile: "+format, a...)
	}
	switch l.Version {
	case LockVersion:
	case 0:
		add("missing lockVersion (want %d)", LockVersion)
	default:
		add("unsupported lockVersion %d (this bundle reads %d)", l.Version, LockVersion)
	}
	if l.Source != nil {
		if err := checkSHA256Hex(l.Source.SHA256); err != nil {
			add("source.sha256: %v", err)
		}
	}
	l.Images = checkLocked(l.Images, add)
	if err := el.err(); err != nil {
		return nil, err
	}
	if l.Images == nil {
		l.Images = []LockedImage{}
	}
	return &l, nil
}

// checkLocked checks and normalizes locked images, reporting problems
// through add, and returns them sorted by Ref.
func checkLocked(in []LockedImage, add func(format string, a ...any)) []LockedImage {
	out := make([]LockedImage, 0, len(in))
	seen := map[string]int{}
	for i, im := range in {
		r, err := ParseReference(im.Ref)
		if err != nil {
			add("images[%d].ref: %v", i, err)
			continue
		}
		ref := FullName(r)
		if err := checkDigest(im.Digest); err != nil {
			add("images[%d].digest: %v", i, err)
			continue
		}
		if pinned := r.Identifier(); strings.Contains(pinned, ":") && pinned != im.Digest {
			add("images[%d]: ref %s is pinned to %s but digest is %s", i, ref, pinned, im.Digest)
			continue
		}
		bad := false
		for _, pl := range im.Platforms {
			if pl == AllPlatforms {
				continue
			}
			if err := CheckPlatform(pl); err != nil {
				add("images[%d].platforms: %v", i, err)
				bad = true
			}
		}
		if bad {
			continue
		}
		if first, dup := seen[ref]; dup {
			add("images[%d]: duplicate ref %s (first at images[%d])", i, ref, first)
			continue
		}
		seen[ref] = i
		out = append(out, LockedImage{Ref: ref, Digest: im.Digest, Platforms: slices.Clone(im.Platforms)})
	}
	slices.SortFunc(out, func(a, b LockedImage) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// WriteLock writes a lockfile deterministically (images sorted by Ref,
// refs normalized, two-space indent, trailing newline) and atomically: a
// temp file in the same directory, fsync, rename. On error no file is
// left behind and any old file at path is unchanged.
func WriteLock(path string, l *Lock) error {
	data, err := encodeLock(l)
	if err != nil {
		return fmt.Errorf("writing lockfile %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing lockfile: %w", err)
	}
	return nil
}

// encodeLock checks a lock and returns the bytes WriteLock writes.
func encodeLock(l *Lock) ([]byte, error) {
	if l == nil {
		return nil, errors.New("no lock given")
	}
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if l.Version != 0 && l.Version != LockVersion {
		add("unsupported lockVersion %d", l.Version)
	}
	out := Lock{Version: LockVersion, Images: checkLocked(l.Images, add)}
	if l.Source != nil {
		src := *l.Source
		out.Source = &src
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	return buf.Bytes(), nil
}

func checkSHA256Hex(s string) error {
	if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not 64 lower-case hex digits", s)
	}
	return nil
}

// lineCol turns a JSON decoder offset (bytes read when the error was
// found) into a 1-based line and column.
func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off-- // the offending byte is the last one read
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
