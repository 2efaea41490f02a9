// Package bundletest writes small bundles in the layout of FORMAT.md for
// tests, independently of the real writer (tarball.Write), and lets tests
// damage them entry by entry. It is used only by tests.
package bundletest

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/internal/digestio"
	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/sign"
	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Ref is one reference to put in a bundle: a single-platform image, or an
// index whose image children are all carried.
type Ref struct {
	Name  string // full normalized reference
	Image v1.Image
	Index v1.ImageIndex
}

// Entry is one entry of a tar archive.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg when zero
	Linkname string
	Data     []byte
}

// Bundle is a bundle held in memory, entry by entry.
type Bundle struct {
	Index   *tarball.Index
	Entries []Entry
}

// RandomImage returns a random image (go-containerregistry's random.Image)
// of n layers of size bytes for platform ("linux/amd64"), the same for the
// same seed.
func RandomImage(size, n int64, platform string, seed int64) (v1.Image, error) {
	img, err := random.Image(size, n, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		return nil, err
	}
	return WithPlatform(img, platform)
}

// WithPlatform returns img with its config naming platform ("linux/amd64").
func WithPlatform(img v1.Image, platform string) (v1.Image, error) {
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	return mutate.ConfigFile(img, cf)
}

// RandomIndex returns an OCI index over one random image per platform.
func RandomIndex(size, n int64, seed int64, platforms ...string) (v1.ImageIndex, error) {
	var adds []mutate.IndexAddendum
	for i, plat := range platforms {
		img, err := RandomImage(size, n, plat, seed+int64(i)+1)
		if err != nil {
			return nil, err
		}
		p, _ := v1.ParsePlatform(plat)
		img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex), nil
}

// New builds a bundle of refs: bundle.json, oci-layout, index.json,
// manifest.json, blobs/, blobs/sha256/, then layers, configs, manifests
// and indexes, each blob once.
func New(refs ...Ref) (*Bundle, error) {
	idx := &tarball.Index{
		SchemaVersion: tarball.SchemaVersion,
		Created:       "1970-01-01T00:00:00Z",
		Creator:       "bundletest",
		Blobs:         map[v1.Hash]tarball.Blob{},
	}
	data := map[v1.Hash][]byte{}
	var layers, configs, mans, indexes []v1.Hash
	add := func(list *[]v1.Hash, h v1.Hash, b []byte, mt types.MediaType, diffID *v1.Hash) {
		if _, ok := data[h]; ok {
			return
		}
		data[h] = b
		idx.Blobs[h] = tarball.Blob{Size: int64(len(b)), MediaType: mt, DiffID: diffID}
		*list = append(*list, h)
	}
	addImage := func(img v1.Image) (tarball.PlatformManifest, error) {
		var pm tarball.PlatformManifest
		m, err := img.Manifest()
		if err != nil {
			return pm, err
		}
		ls, err := img.Layers()
		if err != nil {
			return pm, err
		}
		for _, l := range ls {
			d, err := l.Digest()
			if err != nil {
				return pm, err
			}
			diff, err := l.DiffID()
			if err != nil {
				return pm, err
			}
			mt, err := l.MediaType()
			if err != nil {
				return pm, err
			}
			rc, err := l.Compressed()
			if err != nil {
				return pm, err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return pm, err
			}
			add(&layers, d, b, mt, &diff)
			pm.Layers = append(pm.Layers, d)
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			return pm, err
		}
		add(&configs, m.Config.Digest, cfg, m.Config.MediaType, nil)
		pm.Config = m.Config.Digest
		raw, err := img.RawManifest()
		if err != nil {
			return pm, err
		}
		pm.Digest, pm.Size, pm.MediaType = digestOf(raw), int64(len(raw)), m.MediaType
		add(&mans, pm.Digest, raw, m.MediaType, nil)
		cf, err := img.ConfigFile()
		if err != nil {
			return pm, err
		}
		pm.Platform = (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String()
		return pm, nil
	}
	for _, r := range refs {
		im := tarball.Image{Ref: r.Name}
		switch {
		case r.Index != nil:
			raw, err := r.Index.RawManifest()
			if err != nil {
				return nil, err
			}
			ix, err := r.Index.IndexManifest()
			if err != nil {
				return nil, err
			}
			for _, d := range ix.Manifests {
				if !d.MediaType.IsImage() {
					continue
				}
				img, err := r.Index.Image(d.Digest)
				if err != nil {
					return nil, err
				}
				pm, err := addImage(img)
				if err != nil {
					return nil, err
				}
				if d.Platform != nil {
					pm.Platform = d.Platform.String()
				}
				im.Manifests = append(im.Manifests, pm)
			}
			im.Digest, im.Size, im.MediaType = digestOf(raw), int64(len(raw)), ix.MediaType
			add(&indexes, im.Digest, raw, ix.MediaType, nil)
		case r.Image != nil:
			pm, err := addImage(r.Image)
			if err != nil {
				return nil, err
			}
			im.Digest, im.Size, im.MediaType = pm.Digest, pm.Size, pm.MediaType
			im.Manifests = []tarball.PlatformManifest{pm}
		default:
			return nil, fmt.Errorf("reference %s has no image", r.Name)
		}
		idx.Images = append(idx.Images, im)
	}

	b := &Bundle{Index: idx}
	if err := b.rebuildFixed(); err != nil {
		return nil, err
	}
	b.Entries = append(b.Entries, Entry{Name: tarball.BlobsDir, Type: tar.TypeDir}, Entry{Name: tarball.BlobsSHA256Dir, Type: tar.TypeDir})
	for _, list := range [][]v1.Hash{layers, configs, mans, indexes} {
		for _, h := range list {
			b.Entries = append(b.Entries, Entry{Name: tarball.BlobPath(h), Data: data[h]})
		}
	}
	return b, nil
}

// rebuildFixed (re)writes bundle.json, oci-layout, index.json and
// manifest.json from b.Index, as the first four entries; bundle.json's
// metadata lists the other three, as create writes it.
func (b *Bundle) rebuildFixed() error {
	oci := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	type key struct{ cfg, layers string }
	var entries []tarball.DockerManifestEntry
	byKey := map[key]int{}
	for _, im := range b.Index.Images {
		oci.Manifests = append(oci.Manifests, v1.Descriptor{
			MediaType: im.MediaType, Digest: im.Digest, Size: im.Size,
			Annotations: map[string]string{tarball.AnnotationContainerdName: im.Ref, tarball.AnnotationRefName: im.Ref},
		})
		pm := im.Manifests[0]
		var ls []string
		for _, l := range pm.Layers {
			ls = append(ls, tarball.BlobPath(l))
		}
		k := key{pm.Config.String(), strings.Join(ls, ",")}
		i, ok := byKey[k]
		if !ok {
			i = len(entries)
			byKey[k] = i
			entries = append(entries, tarball.DockerManifestEntry{Config: tarball.BlobPath(pm.Config), RepoTags: []string{}, Layers: ls})
		}
		r, err := manifests.ParseReference(im.Ref)
		if err != nil {
			return err
		}
		if _, isTag := r.(interface{ TagStr() string }); isTag {
			entries[i].RepoTags = append(entries[i].RepoTags, manifests.FamiliarName(r))
			sort.Strings(entries[i].RepoTags)
		}
	}
	ociJSON, err := json.Marshal(oci)
	if err != nil {
		return err
	}
	dmJSON, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	b.Index.Metadata = map[string]tarball.EntrySum{
		tarball.OCILayoutFile:  tarball.SumOf([]byte(tarball.OCILayoutContent)),
		tarball.OCIIndexFile:   tarball.SumOf(ociJSON),
		tarball.DockerManifest: tarball.SumOf(dmJSON),
	}
	idxJSON, err := json.MarshalIndent(b.Index, "", "  ")
	if err != nil {
		return err
	}
	fixed := []Entry{
		{Name: tarball.IndexFile, Data: append(idxJSON, '\n')},
		{Name: tarball.OCILayoutFile, Data: []byte(tarball.OCILayoutContent)},
		{Name: tarball.OCIIndexFile, Data: ociJSON},
		{Name: tarball.DockerManifest, Data: dmJSON},
	}
	for _, f := range fixed {
		if i := b.Find(f.Name); i >= 0 {
			b.Entries[i] = f
		} else {
			b.Entries = append(b.Entries, f)
		}
	}
	return nil
}

// SetIndex rewrites bundle.json from b.Index, leaving the other entries
// as they are.
func (b *Bundle) SetIndex() error {
	idxJSON, err := json.MarshalIndent(b.Index, "", "  ")
	if err != nil {
		return err
	}
	b.Entries[b.Find(tarball.IndexFile)].Data = append(idxJSON, '\n')
	return nil
}

// SetEntry replaces the content of the fixed entry name (oci-layout,
// index.json, manifest.json, repositories: added after manifest.json when
// missing) and lists its new sum in bundle.json's metadata, as a bundle
// made that way would have it. A legacy bundle (no metadata) stays so.
func (b *Bundle) SetEntry(name string, data []byte) error {
	if i := b.Find(name); i >= 0 {
		b.Entries[i].Data = data
	} else {
		i = b.Find(tarball.DockerManifest) + 1
		b.Entries = append(b.Entries[:i], append([]Entry{{Name: name, Data: data}}, b.Entries[i:]...)...)
	}
	if b.Index.Metadata != nil {
		b.Index.Metadata[name] = tarball.SumOf(data)
	}
	return b.SetIndex()
}

// Sign signs bundle.json's bytes as they are now with k and puts the
// signature as bundle.sigstore.json right after it (replacing one there);
// it returns the signature, which is also what create writes beside the
// bundle.
func (b *Bundle) Sign(k *sign.PrivateKey) ([]byte, error) {
	sig, err := k.Sign(b.Entries[b.Find(tarball.IndexFile)].Data)
	if err != nil {
		return nil, err
	}
	b.Remove(tarball.SignatureFile)
	i := b.Find(tarball.IndexFile) + 1
	b.Entries = append(b.Entries[:i], append([]Entry{{Name: tarball.SignatureFile, Data: sig}}, b.Entries[i:]...)...)
	return sig, nil
}

// PrivatePEM returns a new ECDSA P-256 private key as PKCS#8 PEM and its
// public key as PKIX PEM, for tests that write key files.
func PrivatePEM() (priv, pub []byte, err error) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		return nil, nil, err
	}
	pd, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pd}), nil
}

// Legacy drops bundle.json's metadata: the bundle is then as a bundle
// made before metadata existed.
func (b *Bundle) Legacy() error {
	b.Index.Metadata = nil
	return b.SetIndex()
}

// Find returns the position of the entry named name, or -1.
func (b *Bundle) Find(name string) int {
	for i, e := range b.Entries {
		if e.Name == name {
			return i
		}
	}
	return -1
}

// Remove drops the entry named name.
func (b *Bundle) Remove(name string) {
	if i := b.Find(name); i >= 0 {
		b.Entries = append(b.Entries[:i], b.Entries[i+1:]...)
	}
}

// Bytes returns the bundle as a tar archive, and where each entry's data
// starts in it.
func (b *Bundle) Bytes() ([]byte, map[string]int64) {
	var buf bytes.Buffer
	offsets, err := Write(&buf, b.Entries...)
	if err != nil {
		panic(err) // writing to memory fails only on a bad entry
	}
	return buf.Bytes(), offsets
}

// Write writes entries as a tar archive with fixed modes, owners and times,
// and returns where each entry's data starts.
func Write(w io.Writer, entries ...Entry) (map[string]int64, error) {
	cw := &digestio.CountingWriter{W: w}
	tw := tar.NewWriter(cw)
	offsets := map[string]int64{}
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Linkname, Mode: 0o644, Size: int64(len(e.Data)), ModTime: time.Unix(0, 0)}
		switch e.Type {
		case 0:
			hdr.Typeflag = tar.TypeReg
		case tar.TypeDir:
			hdr.Mode = 0o755
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		offsets[e.Name] = cw.N // WriteHeader has written the header
		if hdr.Size > 0 {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		}
	}
	return offsets, tw.Close()
}

// Tar returns entries as a tar archive.
func Tar(entries ...Entry) []byte {
	var buf bytes.Buffer
	if _, err := Write(&buf, entries...); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// ChecksumLine returns data's line in sha256sum format.
func ChecksumLine(data []byte, name string) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]) + "  " + name + "\n"
}

// Digest returns the sha256 digest of b.
func Digest(b []byte) v1.Hash { return digestOf(b) }

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
