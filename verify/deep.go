package verify

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Defaults of the limits on decompressing a layer with Deep.
const (
	// DefaultMaxRatio is how many times its compressed size a layer may
	// decompress to. Real layers are 2 to 10 times; a layer that is almost
	// all zeros (a huge sparse file) can reach deflate's ceiling of about
	// 1030 times, and only a stream made to be a bomb goes beyond (zstd can
	// go far beyond). DefaultMaxLayerSize bounds what the ratio lets through.
	DefaultMaxRatio = 1000
	// DefaultMaxLayerSize caps the uncompressed size of one layer.
	DefaultMaxLayerSize = 64 << 30
	// minAllowance is what any layer may decompress to whatever its ratio,
	// so that small, very compressible layers pass.
	minAllowance = 64 << 20
	// zstdMaxWindow bounds the memory a zstd layer can make us allocate.
	zstdMaxWindow = 32 << 20
)

type deepLimits struct {
	maxRatio   int64
	maxSize    int64
	compressed int64
}

// allowed is how many bytes the layer may decompress to, and which limit
// sets it.
func (l deepLimits) allowed() (n int64, byRatio bool) {
	n, byRatio = l.maxSize, false
	if l.compressed <= l.maxSize/l.maxRatio {
		if r := max(l.compressed*l.maxRatio, minAllowance); r < n {
			n, byRatio = r, true
		}
	}
	return n, byRatio
}

// InflateLimit is how many bytes a layer of compressed bytes may
// decompress to under the default limits (DefaultMaxRatio,
// DefaultMaxLayerSize): what a Deep pass lets through. A loader that
// decompresses layers itself enforces it instead of the pass.
func InflateLimit(compressed int64) int64 {
	n, _ := deepLimits{maxRatio: DefaultMaxRatio, maxSize: DefaultMaxLayerSize, compressed: compressed}.allowed()
	return n
}

// decompress reads a layer's compressed stream and returns its diffID.
// same is true for an uncompressed layer, whose diffID is its digest (the
// caller has it). prob says why there is no diffID.
func decompress(cr *chunkReader, mt types.MediaType, lim deepLimits) (diffID v1.Hash, same bool, prob string) {
	head := cr.peek(4)
	var dec io.Reader
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		gz, err := pgzip.NewReaderN(bufio.NewReaderSize(cr, 256<<10), 256<<10, 4)
		if err != nil {
			return v1.Hash{}, false, "does not decompress: " + err.Error()
		}
		defer gz.Close()
		dec = gz
	case len(head) == 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		zr, err := zstd.NewReader(cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return v1.Hash{}, false, "does not decompress: " + err.Error()
		}
		defer zr.Close()
		dec = zr
	case isCompressedType(mt):
		return v1.Hash{}, false, fmt.Sprintf("media type %s says compressed, but the blob is neither gzip nor zstd", mt)
	default:
		return v1.Hash{}, true, ""
	}
	allowed, byRatio := lim.allowed()
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(dec, allowed+1), make([]byte, 256<<10))
	switch {
	case n > allowed && byRatio:
		return v1.Hash{}, false, fmt.Sprintf("stopped decompressing after %d bytes, over %d times its compressed size of %d bytes: likely a decompression bomb", allowed, lim.maxRatio, lim.compressed)
	case n > allowed:
		return v1.Hash{}, false, fmt.Sprintf("stopped decompressing after %d bytes, over the limit for one layer: likely a decompression bomb", allowed)
	case err != nil:
		return v1.Hash{}, false, fmt.Sprintf("does not decompress after %d bytes: %v", n, err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, false, ""
}

func isCompressedType(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.OCILayer, types.OCILayerZStd, types.OCIRestrictedLayer, types.DockerForeignLayer:
		return true
	}
	return false
}
