package load

import (
	"context"
	"fmt"

	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func orMT(mt types.MediaType, b *Bundle, d v1.Hash) types.MediaType {
	if mt != "" {
		return mt
	}
	if bl, ok := b.Index.Blobs[d]; ok && bl.MediaType != "" {
		return bl.MediaType
	}
	return types.DockerManifestSchema2
}

// putManifest PUTs manifest d (read from the bundle, as it is) under ref.
func (s *session) putManifest(ctx context.Context, ref name.Reference, d v1.Hash, mt types.MediaType) error {
	raw, err := s.b.ReadBlob(d, tarball.MaxManifestSize)
	if err != nil {
		return err
	}
	return s.retry(ctx, fmt.Sprintf("pushing manifest %s to %s", d, ref), func() error {
		c, err := s.conn(ref.Context())
		if err != nil {
			return err
		}
		if err := c.pusher.Put(ctx, ref, rawManifest{raw: raw, mt: mt}); err != nil {
			return err
		}
		s.manifestsSent.Add(1)
		return nil
	})
}

// rawManifest is a manifest or index pushed as the bundle holds it.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
