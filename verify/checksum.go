package verify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNoChecksum is returned by ParseChecksumFile when the checksum file has
// no line for the file.
var ErrNoChecksum = errors.New("no line for the file")

// ParseChecksumFile reads a checksum file in sha256sum format
// ("<64 hex>  <name>" or "<64 hex> *<name>", one line per file) and returns
// the sum recorded for the file named name (compared by base name, so a
// bundle moved to another directory still matches).
func ParseChecksumFile(r io.Reader, name string) (v1.Hash, error) {
	base := path.Base(strings.ReplaceAll(name, `\`, "/"))
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		sum, file, ok := strings.Cut(text, " ")
		if !ok {
			return v1.Hash{}, fmt.Errorf("reading checksums: line %d is not in sha256sum format", line)
		}
		file = strings.TrimPrefix(strings.TrimPrefix(file, " "), "*")
		h, err := v1.NewHash("sha256:" + strings.ToLower(sum))
		if err != nil {
			return v1.Hash{}, fmt.Errorf("reading checksums: line %d: %w", line, err)
		}
		if path.Base(strings.ReplaceAll(file, `\`, "/")) == base {
			return h, nil
		}
	}
	if err := sc.Err(); err != nil {
		return v1.Hash{}, fmt.Errorf("reading checksums: %w", err)
	}
	return v1.Hash{}, fmt.Errorf("reading checksums: %w %s", ErrNoChecksum, base)
}

// ParseChecksums reads every line of a checksum file in sha256sum format
// and returns the sums by base name (the volumes of a split bundle each
// have a line).
func ParseChecksums(r io.Reader) (map[string]v1.Hash, error) {
	sums := map[string]v1.Hash{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		sum, file, ok := strings.Cut(text, " ")
		if !ok {
			return nil, fmt.Errorf("reading checksums: line %d is not in sha256sum format", line)
		}
		file = strings.TrimPrefix(strings.TrimPrefix(file, " "), "*")
		h, err := v1.NewHash("sha256:" + strings.ToLower(sum))
		if err != nil {
			return nil, fmt.Errorf("reading checksums: line %d: %w", line, err)
		}
		sums[path.Base(strings.ReplaceAll(file, `\`, "/"))] = h
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading checksums: %w", err)
	}
	return sums, nil
}
