package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// parse decodes a JSON blob as what bundle.json says it is.
func parse(j *blobJob, data []byte) {
	switch j.role {
	case roleConfig:
		// Only what is checked: a config with fields of odd types that
		// docker accepts must not fail here.
		var cf struct {
			RootFS *struct {
				DiffIDs []v1.Hash `json:"diff_ids"`
			} `json:"rootfs"`
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		}
		if err := json.Unmarshal(data, &cf); err != nil {
			j.res.parseErr = err
			return
		}
		if cf.RootFS == nil {
			j.res.parseErr = errors.New("no rootfs")
			return
		}
		j.res.diffIDs = cf.RootFS.DiffIDs
		j.res.platform = v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	case roleManifest:
		var m v1.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			j.res.parseErr = err
			return
		}
		j.res.manifest = &m
	case roleIndex:
		var ix v1.IndexManifest
		if err := json.Unmarshal(data, &ix); err != nil {
			j.res.parseErr = err
			return
		}
		j.res.index = &ix
	}
}

// indexChecks checks bundle.json against itself, and learns from it which
// references use each blob and what each blob is.
func (v *verifier) indexChecks() {
	idx := v.idx
	v.usedBy = map[v1.Hash][]string{}
	v.roles = map[v1.Hash]role{}
	v.byManifest = map[v1.Hash][]manifestUse{}
	v.byTop = map[v1.Hash][]int{}
	refs := map[string]bool{}
	for i, im := range idx.Images {
		v.byTop[im.Digest] = append(v.byTop[im.Digest], i)
		for k, pm := range im.Manifests {
			v.byManifest[pm.Digest] = append(v.byManifest[pm.Digest], manifestUse{i, k})
		}
		if refs[im.Ref] {
			v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref}, Problem: "the reference is listed twice"})
		}
		refs[im.Ref] = true
		for _, f := range referenceFindings(im) {
			v.add(f)
		}
		uses := map[v1.Hash]bool{}
		use := func(h v1.Hash, r role, size int64, mt types.MediaType, what string) {
			if !uses[h] {
				uses[h] = true
				v.usedBy[h] = append(v.usedBy[h], im.Ref)
			}
			if v.roles[h] == roleUnknown {
				v.roles[h] = r
			}
			v.claim(im.Ref, h, size, mt, what)
		}
		if len(im.Manifests) == 0 {
			v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref}, Problem: "the image lists no manifest"})
		}
		for _, pm := range im.Manifests {
			for _, l := range pm.Layers {
				use(l, roleLayer, 0, "", "layer")
			}
			use(pm.Config, roleConfig, 0, "", "config")
			use(pm.Digest, roleManifest, pm.Size, pm.MediaType, "manifest")
		}
		if im.MediaType.IsIndex() {
			use(im.Digest, roleIndex, im.Size, im.MediaType, "index")
		} else {
			use(im.Digest, roleManifest, im.Size, im.MediaType, "manifest")
			if len(im.Manifests) != 1 || im.Manifests[0].Digest != im.Digest {
				v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref},
					Problem: fmt.Sprintf("the image is a single manifest (%s), but its manifests list is not that manifest alone", im.MediaType)})
			}
		}
	}
	for _, h := range sortedHashes(idx.Blobs) {
		if len(v.usedBy[h]) > 0 {
			continue
		}
		v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Problem: fmt.Sprintf("blobs lists %s, which no image uses", h)})
		mt := idx.Blobs[h].MediaType
		switch {
		case mt.IsIndex():
			v.roles[h] = roleIndex
		case mt.IsImage():
			v.roles[h] = roleManifest
		case mt.IsConfig():
			v.roles[h] = roleConfig
		case mt.IsLayer():
			v.roles[h] = roleLayer
		}
	}
}

// CheckReferences checks every reference of bundle.json as a load parses
// it (manifests.ParseReference), and that a reference pinned to a digest
// ("repo@sha256:…") names an image of that digest: a bundle that maps it
// to another image would have a load publish a lie under the pinned name.
// Verify makes the same checks; List and a bundle's inventory, which read
// bundle.json alone, use this.
func CheckReferences(idx *tarball.Index) []Finding {
	var out []Finding
	for _, im := range idx.Images {
		out = append(out, referenceFindings(im)...)
	}
	return out
}

func referenceFindings(im tarball.Image) []Finding {
	r, err := manifests.ParseReference(im.Ref)
	if err != nil {
		return []Finding{{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref}, Problem: fmt.Sprintf("the reference does not parse: %v", err)}}
	}
	if pinned, ok := r.(name.Digest); ok && pinned.DigestStr() != im.Digest.String() {
		return []Finding{{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref},
			Problem: "the image's digest is not the one its reference pins", Got: im.Digest.String(), Want: pinned.DigestStr()}}
	}
	return nil
}

// claim checks what images[] says of a blob against blobs (or external).
func (v *verifier) claim(ref string, h v1.Hash, size int64, mt types.MediaType, what string) {
	b, ok := v.idx.Blobs[h]
	if !ok {
		if b, ok = v.idx.External[h]; !ok {
			v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{ref},
				Problem: fmt.Sprintf("the image's %s %s is in neither blobs nor external", what, h)})
			return
		}
	}
	if size != 0 && b.Size != size {
		v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{ref},
			Problem: fmt.Sprintf("the image gives its %s %s a size that blobs does not", what, h),
			Got:     fmt.Sprint(size), Want: fmt.Sprint(b.Size)})
	}
	if mt != "" && b.MediaType != "" && mt != b.MediaType {
		v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{ref},
			Problem: fmt.Sprintf("the image gives its %s %s a media type that blobs does not", what, h),
			Got:     string(mt), Want: string(b.MediaType)})
	}
}

// crossChecks compares what was read with what bundle.json and the
// manifests claim, once every blob has been hashed.
func (v *verifier) crossChecks() {
	for _, j := range v.jobs {
		if v.byDigest[j.digest] == j {
			v.checkBlob(j)
		}
	}
	v.checkMissing()
	for _, j := range v.jobs {
		if v.byDigest[j.digest] != j || !j.res.complete {
			continue
		}
		switch {
		case j.res.manifest != nil:
			v.checkManifest(j)
		case j.res.index != nil:
			v.checkIndex(j)
		}
	}
}

// checkBlob checks one blob entry against its name and bundle.json.
func (v *verifier) checkBlob(j *blobJob) {
	imgs := v.imagesOf(j.digest)
	b, listed := v.idx.Blobs[j.digest]
	if !listed {
		if _, ext := v.idx.External[j.digest]; ext {
			v.add(Finding{Code: CodeUnlisted, Entry: j.name, Problem: "carried, but bundle.json lists it as external"})
		} else {
			v.add(Finding{Code: CodeUnlisted, Entry: j.name, Problem: "not listed in bundle.json"})
		}
	}
	if !j.res.complete {
		return // the truncation is reported
	}
	if j.res.sum != j.digest.Hex {
		v.add(Finding{Code: CodeDigest, Entry: j.name, Images: imgs, Problem: "sha256 of the " + j.role.String() + " is not the digest in its name",
			Got: "sha256:" + j.res.sum, Want: j.digest.String()})
	}
	if listed && j.res.size != b.Size {
		v.add(Finding{Code: CodeSize, Entry: j.name, Images: imgs, Problem: "size is not the one in bundle.json",
			Got: fmt.Sprint(j.res.size), Want: fmt.Sprint(b.Size)})
	}
	switch {
	case j.res.tooBig:
		v.add(Finding{Code: CodeInvalid, Entry: j.name, Images: imgs,
			Problem: fmt.Sprintf("the %s is %d bytes, over the limit of %d", j.role, j.headSize, j.keep)})
	case j.res.parseErr != nil:
		v.add(Finding{Code: CodeInvalid, Entry: j.name, Images: imgs,
			Problem: fmt.Sprintf("does not parse as an image %s: %v", j.role, j.res.parseErr)})
	}
	if !j.deep {
		return
	}
	switch {
	case j.res.deepProb != "":
		v.add(Finding{Code: CodeLayer, Entry: j.name, Images: imgs, Problem: j.res.deepProb})
	case listed && b.DiffID != nil && *b.DiffID != j.res.diffID:
		v.add(Finding{Code: CodeDiffID, Entry: j.name, Images: imgs, Problem: "sha256 of the uncompressed layer is not the diffID in bundle.json",
			Got: j.res.diffID.String(), Want: b.DiffID.String()})
	}
}

// checkMissing reports every blob bundle.json lists that the file lacks.
func (v *verifier) checkMissing() {
	var order []v1.Hash
	seen := map[v1.Hash]bool{}
	add := func(h v1.Hash) {
		if _, listed := v.idx.Blobs[h]; listed && !seen[h] {
			seen[h] = true
			order = append(order, h)
		}
	}
	for _, im := range v.idx.Images {
		for _, pm := range im.Manifests {
			for _, l := range pm.Layers {
				add(l)
			}
			add(pm.Config)
			add(pm.Digest)
		}
		add(im.Digest)
	}
	for _, h := range sortedHashes(v.idx.Blobs) {
		add(h)
	}
	var notReached int
	affected := map[string]bool{}
	for _, h := range order {
		if v.byDigest[h] != nil {
			continue
		}
		if !v.rep.Complete {
			notReached++
			for _, im := range v.imagesOf(h) {
				affected[im] = true
			}
			continue
		}
		v.add(Finding{Code: CodeMissing, Entry: tarball.BlobPath(h), Images: v.imagesOf(h), Problem: "listed in bundle.json but not in the file"})
	}
	if notReached > 0 {
		v.add(Finding{Code: CodeMissing, Images: sortedKeys(affected),
			Problem: fmt.Sprintf("%d of the blobs bundle.json lists were not reached", notReached)})
	}
}

// checkManifest checks an image manifest's children and its agreement with
// bundle.json and its config.
func (v *verifier) checkManifest(j *blobJob) {
	m := j.res.manifest
	imgs := v.imagesOf(j.digest)
	if b, ok := v.idx.Blobs[j.digest]; ok && m.MediaType != "" && b.MediaType != "" && m.MediaType != b.MediaType {
		v.add(Finding{Code: CodeMediaType, Entry: j.name, Images: imgs, Problem: "the manifest's own mediaType is not the one in bundle.json",
			Got: string(m.MediaType), Want: string(b.MediaType)})
	}
	if m.Config.Digest.Hex == "" {
		v.add(Finding{Code: CodeInvalid, Entry: j.name, Images: imgs, Problem: "not an image manifest: it has no config"})
		return
	}
	v.checkChild(j, "manifest", m.Config)
	layers := make([]v1.Hash, len(m.Layers))
	for i, l := range m.Layers {
		layers[i] = l.Digest
		v.checkChild(j, "manifest", l)
	}
	for _, u := range v.byManifest[j.digest] {
		im, pm := &v.idx.Images[u.image], &v.idx.Images[u.image].Manifests[u.manifest]
		if pm.Config != m.Config.Digest {
			v.add(Finding{Code: CodeMismatch, Entry: j.name, Images: []string{im.Ref}, Problem: "the manifest's config is not the one bundle.json lists",
				Got: m.Config.Digest.String(), Want: pm.Config.String()})
		}
		if len(pm.Layers) != len(layers) {
			v.add(Finding{Code: CodeMismatch, Entry: j.name, Images: []string{im.Ref}, Problem: "the manifest's layer count is not the one bundle.json lists",
				Got: fmt.Sprint(len(layers)), Want: fmt.Sprint(len(pm.Layers))})
			continue
		}
		for i := range layers {
			if layers[i] != pm.Layers[i] {
				v.add(Finding{Code: CodeMismatch, Entry: j.name, Images: []string{im.Ref}, Problem: fmt.Sprintf("the manifest's layer %d is not the one bundle.json lists", i),
					Got: layers[i].String(), Want: pm.Layers[i].String()})
			}
		}
	}

	cj := v.byDigest[m.Config.Digest]
	if cj == nil || !cj.res.complete || cj.role != roleConfig || cj.res.tooBig || cj.res.parseErr != nil {
		return
	}
	v.checkPlatform(j, cj)
	ids := cj.res.diffIDs
	// Only filesystem layers have diff_ids: an attestation manifest's
	// in-toto layers are not checked against its config.
	for _, l := range layers {
		if b, ok := v.idx.Blobs[l]; ok && !b.MediaType.IsLayer() {
			return
		}
	}
	if len(ids) != len(layers) {
		v.add(Finding{Code: CodeDiffID, Entry: cj.name, Images: v.imagesOf(cj.digest),
			Problem: fmt.Sprintf("the config has %d diff_ids for the %d layers of manifest %s", len(ids), len(layers), j.digest)})
		return
	}
	for i, l := range layers {
		name := tarball.BlobPath(l)
		if b, ok := v.idx.Blobs[l]; ok && b.DiffID != nil && *b.DiffID != ids[i] {
			v.add(Finding{Code: CodeDiffID, Entry: name, Images: v.imagesOf(l),
				Problem: fmt.Sprintf("the diffID in bundle.json is not diff_id %d of config %s", i, m.Config.Digest),
				Got:     b.DiffID.String(), Want: ids[i].String()})
		}
		lj := v.byDigest[l]
		if lj != nil && lj.deep && lj.res.complete && lj.res.deepProb == "" && lj.res.diffID != ids[i] {
			v.add(Finding{Code: CodeDiffID, Entry: name, Images: v.imagesOf(l),
				Problem: fmt.Sprintf("sha256 of the uncompressed layer is not diff_id %d of config %s", i, m.Config.Digest),
				Got:     lj.res.diffID.String(), Want: ids[i].String()})
		}
	}
}

// checkPlatform checks the platform bundle.json gives a single-platform
// image (create takes it from the config) against its config: a load with
// --platform, and docker, go by bundle.json's. An index's manifests are
// checked against the index instead (checkIndex).
func (v *verifier) checkPlatform(j, cj *blobJob) {
	cp := cj.res.platform
	if cp.OS == "" || cp.Architecture == "" {
		return
	}
	for _, i := range v.byTop[j.digest] {
		im := &v.idx.Images[i]
		if im.MediaType.IsIndex() {
			continue
		}
		for _, pm := range im.Manifests {
			if pm.Digest != j.digest || pm.Platform == "" {
				continue
			}
			p, err := v1.ParsePlatform(pm.Platform)
			if err != nil {
				v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Images: []string{im.Ref}, Problem: fmt.Sprintf("platform %q does not parse: %v", pm.Platform, err)})
				continue
			}
			// Not manifests.MatchPlatform: this asks whether two records
			// of one image agree, not whether a request selects it, so
			// it is symmetric and ignores what a config rarely records
			// (a variant on one side only, OS version, features).
			if p.OS != cp.OS || p.Architecture != cp.Architecture || (p.Variant != "" && cp.Variant != "" && p.Variant != cp.Variant) {
				v.add(Finding{Code: CodeMismatch, Entry: cj.name, Images: []string{im.Ref},
					Problem: fmt.Sprintf("the config's platform is not the one bundle.json gives manifest %s", j.digest),
					Got:     cp.String(), Want: pm.Platform})
			}
		}
	}
}

// checkIndex checks an image index's carried children and its agreement
// with bundle.json.
func (v *verifier) checkIndex(j *blobJob) {
	ix := j.res.index
	imgs := v.imagesOf(j.digest)
	if b, ok := v.idx.Blobs[j.digest]; ok && ix.MediaType != "" && b.MediaType != "" && ix.MediaType != b.MediaType {
		v.add(Finding{Code: CodeMediaType, Entry: j.name, Images: imgs, Problem: "the index's own mediaType is not the one in bundle.json",
			Got: string(ix.MediaType), Want: string(b.MediaType)})
	}
	children := map[v1.Hash]v1.Descriptor{}
	for _, d := range ix.Manifests {
		children[d.Digest] = d
		_, listed := v.idx.Blobs[d.Digest]
		_, ext := v.idx.External[d.Digest]
		if v.byDigest[d.Digest] != nil || listed || ext {
			v.checkChild(j, "index", d) // platforms not selected are not carried
		}
	}
	for _, i := range v.byTop[j.digest] {
		im := &v.idx.Images[i]
		for _, pm := range im.Manifests {
			d, ok := children[pm.Digest]
			if !ok {
				v.add(Finding{Code: CodeMismatch, Entry: j.name, Images: []string{im.Ref},
					Problem: fmt.Sprintf("bundle.json lists manifest %s, which the index does not", pm.Digest)})
				continue
			}
			if pm.Platform == "" || d.Platform == nil {
				continue
			}
			if p, err := v1.ParsePlatform(pm.Platform); err == nil && !manifests.MatchPlatform(*p, *d.Platform) {
				v.add(Finding{Code: CodeMismatch, Entry: j.name, Images: []string{im.Ref},
					Problem: fmt.Sprintf("the index gives manifest %s a platform that bundle.json does not", pm.Digest),
					Got:     d.Platform.String(), Want: pm.Platform})
			}
		}
	}
}

// checkChild checks a descriptor in a manifest or index (the parent):
// the blob is there (or external), with the size and media type the
// descriptor gives, before the parent in the file.
func (v *verifier) checkChild(parent *blobJob, what string, d v1.Descriptor) {
	name := tarball.BlobPath(d.Digest)
	// The images are listed only for a finding: a config or a base layer
	// that thousands of images share has thousands.
	var affected []string
	imgs := func() []string {
		if affected == nil {
			affected = union(v.imagesOf(parent.digest), v.imagesOf(d.Digest))
		}
		return affected
	}
	if d.Digest.Algorithm != "sha256" {
		v.add(Finding{Code: CodeInvalid, Entry: parent.name, Images: imgs(), Problem: fmt.Sprintf("references %q, not a sha256 digest", d.Digest)})
		return
	}
	cj := v.byDigest[d.Digest]
	b, listed := v.idx.Blobs[d.Digest]
	e, ext := v.idx.External[d.Digest]
	switch {
	case cj != nil:
		if cj.res.complete && cj.res.size != d.Size {
			v.add(Finding{Code: CodeSize, Entry: name, Images: imgs(), Problem: fmt.Sprintf("size is not the one %s %s gives", what, parent.digest),
				Got: fmt.Sprint(cj.res.size), Want: fmt.Sprint(d.Size)})
		}
		if cj.order > parent.order {
			v.add(Finding{Code: CodeOrder, Entry: name, Images: imgs(), Problem: fmt.Sprintf("comes after %s %s, which references it", what, parent.digest)})
		}
		if cm := cj.res.manifest; cm != nil && cm.MediaType != "" && d.MediaType != "" && cm.MediaType != d.MediaType {
			v.add(Finding{Code: CodeMediaType, Entry: name, Images: imgs(), Problem: fmt.Sprintf("the manifest's own mediaType is not the one %s %s gives", what, parent.digest),
				Got: string(cm.MediaType), Want: string(d.MediaType)})
		}
	case listed:
		// reported by checkMissing
	case ext:
		if e.Size != d.Size {
			v.add(Finding{Code: CodeSize, Entry: name, Images: imgs(), Problem: fmt.Sprintf("size in bundle.json's external is not the one %s %s gives", what, parent.digest),
				Got: fmt.Sprint(e.Size), Want: fmt.Sprint(d.Size)})
		}
	case !d.MediaType.IsDistributable():
		return // a foreign layer, fetched from its URLs
	case v.rep.Complete:
		v.add(Finding{Code: CodeMissing, Entry: name, Images: imgs(), Problem: fmt.Sprintf("referenced by %s %s, but neither in the file nor in bundle.json", what, parent.digest)})
	}
	mt := b.MediaType
	if !listed {
		mt = e.MediaType
	}
	if d.MediaType != "" && mt != "" && d.MediaType != mt {
		v.add(Finding{Code: CodeMediaType, Entry: name, Images: imgs(), Problem: fmt.Sprintf("media type in bundle.json is not the one %s %s gives", what, parent.digest),
			Got: string(mt), Want: string(d.MediaType)})
	}
}

// fixedChecks checks oci-layout, index.json, manifest.json and
// repositories, and their agreement with bundle.json.
func (v *verifier) fixedChecks() {
	required := func(name string) ([]byte, bool) {
		data, ok := v.files[name]
		if !ok && v.rep.Complete {
			v.add(Finding{Code: CodeMissing, Entry: name, Problem: "missing"})
		}
		return data, ok
	}
	if data, ok := required(tarball.OCILayoutFile); ok {
		var l struct {
			Version string `json:"imageLayoutVersion"`
		}
		if err := json.Unmarshal(data, &l); err != nil {
			v.add(Finding{Code: CodeInvalid, Entry: tarball.OCILayoutFile, Problem: fmt.Sprintf("does not parse: %v", err)})
		} else if l.Version != "1.0.0" {
			v.add(Finding{Code: CodeInvalid, Entry: tarball.OCILayoutFile, Problem: "unknown imageLayoutVersion", Got: l.Version, Want: "1.0.0"})
		}
	}
	if data, ok := required(tarball.OCIIndexFile); ok {
		v.checkOCIIndex(data)
	}
	if data, ok := required(tarball.DockerManifest); ok {
		v.checkDockerManifest(data)
	}
	if data, ok := v.files[tarball.RepositoriesFile]; ok {
		var repos map[string]map[string]string
		if err := json.Unmarshal(data, &repos); err != nil {
			v.add(Finding{Code: CodeInvalid, Entry: tarball.RepositoriesFile, Problem: fmt.Sprintf("does not parse: %v", err)})
		}
	}
	v.metadataChecks()
}

// metadataChecks checks the fixed entries against the sums bundle.json's
// metadata lists (an entry it does not list is refused by the reader). A
// bundle.json without metadata predates it: Report.NoMetadata says so.
func (v *verifier) metadataChecks() {
	md := v.idx.Metadata
	if md == nil {
		v.rep.NoMetadata = true
		return
	}
	names := make([]string, 0, len(md))
	for name := range md {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want := md[name]
		if name == tarball.SignatureFile {
			v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Problem: "metadata lists bundle.sigstore.json, which signs bundle.json and so cannot be listed in it"})
			continue
		}
		if !tarball.IsFixedFile(name) {
			v.add(Finding{Code: CodeIndex, Entry: tarball.IndexFile, Problem: fmt.Sprintf("metadata lists %q, which is not an entry a bundle may hold", name)})
			continue
		}
		data, ok := v.files[name]
		switch {
		case !ok:
			// oci-layout, index.json and manifest.json missing are
			// reported as such by fixedChecks.
			if name == tarball.RepositoriesFile && v.rep.Complete {
				v.add(Finding{Code: CodeMissing, Entry: name, Problem: "listed in bundle.json's metadata but not in the file"})
			}
		case tarball.SumOf(data) != want:
			got := tarball.SumOf(data)
			problem := "sha256 is not the one bundle.json's metadata lists"
			if got.Size != want.Size {
				problem = fmt.Sprintf("sha256 and size (%d bytes, not %d) are not the ones bundle.json's metadata lists", got.Size, want.Size)
			}
			v.add(Finding{Code: CodeDigest, Entry: name, Problem: problem, Got: "sha256:" + got.SHA256, Want: "sha256:" + want.SHA256})
		}
	}
}

func (v *verifier) imageByRef() map[string]*tarball.Image {
	m := map[string]*tarball.Image{}
	for i := range v.idx.Images {
		m[v.idx.Images[i].Ref] = &v.idx.Images[i]
	}
	return m
}

// checkOCIIndex checks that index.json has one descriptor per reference,
// the same as bundle.json's.
func (v *verifier) checkOCIIndex(data []byte) {
	const entry = tarball.OCIIndexFile
	var ix v1.IndexManifest
	if err := json.Unmarshal(data, &ix); err != nil {
		v.add(Finding{Code: CodeInvalid, Entry: entry, Problem: fmt.Sprintf("does not parse: %v", err)})
		return
	}
	byRef := v.imageByRef()
	seen := map[string]bool{}
	for i, d := range ix.Manifests {
		ref := d.Annotations[tarball.AnnotationRefName]
		cname := d.Annotations[tarball.AnnotationContainerdName]
		switch {
		case ref == "" && cname == "":
			v.add(Finding{Code: CodeMismatch, Entry: entry, Problem: fmt.Sprintf("descriptor %d (%s) names no reference", i, d.Digest)})
			continue
		case ref == "":
			ref = cname
		case cname != "" && cname != ref:
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref},
				Problem: fmt.Sprintf("descriptor %d: its %s is not its %s", i, tarball.AnnotationContainerdName, tarball.AnnotationRefName),
				Got:     cname, Want: ref})
		}
		if r, err := manifests.ParseReference(ref); err == nil {
			if pinned, ok := r.(name.Digest); ok && pinned.DigestStr() != d.Digest.String() {
				v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref},
					Problem: fmt.Sprintf("descriptor %d: the digest is not the one its reference pins", i), Got: d.Digest.String(), Want: pinned.DigestStr()})
			}
		}
		im, ok := byRef[ref]
		if !ok {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref}, Problem: "lists a reference that bundle.json does not"})
			v.requirePresent(d.Digest, entry, ref)
			continue
		}
		if seen[ref] {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref}, Problem: "lists the reference twice"})
		}
		seen[ref] = true
		if d.Digest != im.Digest {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref}, Problem: "the digest is not the one bundle.json records",
				Got: d.Digest.String(), Want: im.Digest.String()})
			v.requirePresent(d.Digest, entry, ref)
		}
		if d.Size != im.Size {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref}, Problem: "the size is not the one bundle.json records",
				Got: fmt.Sprint(d.Size), Want: fmt.Sprint(im.Size)})
		}
		if d.MediaType != im.MediaType {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{ref}, Problem: "the media type is not the one bundle.json records",
				Got: string(d.MediaType), Want: string(im.MediaType)})
		}
	}
	for _, im := range v.idx.Images {
		if !seen[im.Ref] {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{im.Ref}, Problem: "has no descriptor for the reference"})
		}
	}
}

// requirePresent reports a blob that index.json or manifest.json
// references but that is neither in the file nor in bundle.json (those in
// bundle.json are reported by checkMissing).
func (v *verifier) requirePresent(h v1.Hash, by string, images ...string) {
	if v.byDigest[h] != nil || !v.rep.Complete {
		return
	}
	if _, listed := v.idx.Blobs[h]; listed {
		return
	}
	if _, ext := v.idx.External[h]; ext {
		return
	}
	v.add(Finding{Code: CodeMissing, Entry: tarball.BlobPath(h), Images: images, Problem: "referenced by " + by + ", but not in the file"})
}

// checkDockerManifest checks that manifest.json gives every tagged
// reference its tag on the right config and layers, and every image an
// entry.
func (v *verifier) checkDockerManifest(data []byte) {
	const entry = tarball.DockerManifest
	var entries []tarball.DockerManifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		v.add(Finding{Code: CodeInvalid, Entry: entry, Problem: fmt.Sprintf("does not parse: %v", err)})
		return
	}
	// The images that have each config and layers, by image, in order
	// (each once), and each reference's image.
	byKey := map[string][]int{}
	byRef := map[string]int{}
	for i, im := range v.idx.Images {
		byRef[im.Ref] = i
		for _, pm := range im.Manifests {
			k := manifestKey(pm.Config, pm.Layers)
			if l := byKey[k]; len(l) == 0 || l[len(l)-1] != i {
				byKey[k] = append(l, i)
			}
		}
	}
	marked := map[string]bool{}   // keys whose images are in hasEntry
	tagged := map[string]bool{}   // references tagged by some entry
	hasEntry := map[string]bool{} // references whose image some entry loads
	for i, e := range entries {
		cfg, ok := blobDigest(e.Config)
		if !ok {
			v.add(Finding{Code: CodeInvalid, Entry: entry, Images: e.RepoTags, Problem: fmt.Sprintf("entry %d: Config %q is not a blob of the bundle", i, e.Config)})
			continue
		}
		layers := make([]v1.Hash, 0, len(e.Layers))
		bad := false
		for _, l := range e.Layers {
			h, ok := blobDigest(l)
			if !ok {
				v.add(Finding{Code: CodeInvalid, Entry: entry, Images: e.RepoTags, Problem: fmt.Sprintf("entry %d: layer %q is not a blob of the bundle", i, l)})
				bad = true
				continue
			}
			layers = append(layers, h)
		}
		if bad {
			continue
		}
		for _, h := range append([]v1.Hash{cfg}, layers...) {
			v.requirePresent(h, entry, e.RepoTags...)
		}
		key := manifestKey(cfg, layers)
		users := byKey[key]
		if !marked[key] {
			marked[key] = true
			for _, k := range users {
				hasEntry[v.idx.Images[k].Ref] = true
			}
		}
		if len(users) == 0 {
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: e.RepoTags,
				Problem: fmt.Sprintf("entry %d (config %s) is none of the image manifests in bundle.json", i, cfg)})
		}
		for _, tag := range e.RepoTags {
			r, err := manifests.ParseReference(tag)
			if err != nil {
				v.add(Finding{Code: CodeInvalid, Entry: entry, Problem: fmt.Sprintf("entry %d: RepoTags has %q: %v", i, tag, err)})
				continue
			}
			if _, isTag := r.(name.Tag); !isTag {
				// docker load refuses to tag a digest reference.
				v.add(Finding{Code: CodeInvalid, Entry: entry, Images: []string{manifests.FullName(r)}, Problem: fmt.Sprintf("entry %d: RepoTags has %q, a digest reference, not a tag", i, tag)})
				continue
			}
			full := manifests.FullName(r)
			k, ok := byRef[full]
			switch {
			case !ok:
				v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{full}, Problem: fmt.Sprintf("entry %d tags %s, which bundle.json does not list", i, tag)})
			case !sortedHas(users, k):
				v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{full},
					Problem: fmt.Sprintf("entry %d tags %s on config %s, which is none of its manifests in bundle.json", i, tag, cfg)})
			default:
				tagged[full] = true
			}
		}
	}
	for _, im := range v.idx.Images {
		r, err := manifests.ParseReference(im.Ref)
		_, isTag := r.(interface{ TagStr() string })
		switch {
		case err == nil && isTag && !tagged[im.Ref]:
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{im.Ref}, Problem: "does not tag the reference: docker load would not name it"})
		case !hasEntry[im.Ref]:
			v.add(Finding{Code: CodeMismatch, Entry: entry, Images: []string{im.Ref}, Problem: "has no entry for the image: docker load would not load it"})
		}
	}
}

// manifestKey identifies a config and its layers, as manifest.json
// entries and bundle.json's manifests give them.
func manifestKey(cfg v1.Hash, layers []v1.Hash) string {
	var b strings.Builder
	b.Grow(len(cfg.Hex) + 1 + len(layers)*65)
	b.WriteString(cfg.String())
	for _, l := range layers {
		b.WriteByte(' ')
		b.WriteString(l.String())
	}
	return b.String()
}

// sortedHas reports whether the sorted list l holds x.
func sortedHas(l []int, x int) bool {
	_, ok := slices.BinarySearch(l, x)
	return ok
}

func sortedHashes[T any](m map[v1.Hash]T) []v1.Hash {
	out := make([]v1.Hash, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// union returns a and the elements of b not in a, each once.
func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	out := make([]string, 0, len(a)+len(b))
	seen := make(map[string]bool, len(a)+len(b))
	for _, l := range [][]string{a, b} {
		for _, s := range l {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
