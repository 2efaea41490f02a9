package bundletest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"
)

// FastImage returns an image of n gzip layers of about size bytes each,
// quick to make in bulk (for benchmarks). With compressible the content
// compresses about 2.5:1, like real layers; otherwise it is random.
func FastImage(size int64, n int, seed uint64, compressible bool) (v1.Image, error) {
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	img := empty.Image
	for i := range n {
		l, err := newFastLayer(rng, size, compressible, fmt.Sprintf("file-%d-%d", seed, i))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// fastLayer is a gzip layer held in memory.
type fastLayer struct {
	gz             []byte
	digest, diffID v1.Hash
}

func newFastLayer(rng *rand.Rand, size int64, compressible bool, name string) (*fastLayer, error) {
	content := make([]byte, size)
	for i := 0; i < len(content); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8 && i+k < len(content); k++ {
			b := byte(v >> (8 * k))
			if compressible {
				b = 'a' + b&0x07
			}
			content[i+k] = b
		}
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := pgzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &fastLayer{gz: gz.Bytes(), digest: hashOf(gz.Bytes()), diffID: hashOf(raw.Bytes())}, nil
}

// GzipLayer returns a layer of the gzip stream gz, claiming diffID (which
// a test may make wrong on purpose).
func GzipLayer(gz []byte, diffID v1.Hash) v1.Layer {
	return &fastLayer{gz: gz, digest: hashOf(gz), diffID: diffID}
}

func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func (l *fastLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *fastLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *fastLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *fastLayer) Uncompressed() (io.ReadCloser, error) {
	zr, err := pgzip.NewReader(bytes.NewReader(l.gz))
	if err != nil {
		return nil, err
	}
	return zr, nil
}
func (l *fastLayer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *fastLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
