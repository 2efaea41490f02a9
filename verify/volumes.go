package verify

import (
	"fmt"
	"path/filepath"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SplitOptions sets the volume fields of opts for a split bundle: set is
// what tarball.FindVolumes found, sums the checksum file's lines by base
// name (ParseChecksums; nil without one), named checksumFile in findings.
// Volumes the checksum file lists beyond the last one found are missing
// too. It does nothing for a bundle that is not split.
func (o *Options) SplitOptions(set *tarball.VolumeSet, sums map[string]v1.Hash, checksumFile string) {
	if !set.Split {
		return
	}
	o.Volumes = set.Readable()
	o.VolumeSHA256 = map[int]v1.Hash{}
	o.ChecksumFile = checksumFile
	highest := 0
	for _, v := range set.Volumes {
		highest = max(highest, v.Number)
	}
	for _, n := range set.Missing {
		o.MissingVolumes = append(o.MissingVolumes, tarball.Volume{Number: n, Path: tarball.VolumeName(set.Base, n)})
	}
	base := filepath.Base(set.Base)
	for name, h := range sums {
		b, n, ok := tarball.ParseVolumeName(name)
		if !ok || b != base {
			continue
		}
		o.VolumeSHA256[n] = h
		highest = max(highest, n)
	}
	found := map[int]bool{}
	for _, v := range set.Volumes {
		found[v.Number] = true
	}
	for _, m := range o.MissingVolumes {
		found[m.Number] = true
	}
	for n := 1; n <= highest; n++ {
		if !found[n] {
			o.MissingVolumes = append(o.MissingVolumes, tarball.Volume{Number: n, Path: tarball.VolumeName(set.Base, n)})
		}
	}
	sortVolumes(o.MissingVolumes)
}

func sortVolumes(vs []tarball.Volume) {
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && vs[j].Number < vs[j-1].Number; j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
}

// volumeEnds returns where each volume ends in the stream, when each is
// to be hashed on its own.
func (v *verifier) volumeEnds() []int64 {
	if len(v.opts.Volumes) == 0 || len(v.opts.VolumeSHA256) == 0 {
		return nil
	}
	var ends []int64
	var end int64
	for _, vol := range v.opts.Volumes {
		if vol.Size < 0 {
			return nil
		}
		end += vol.Size
		ends = append(ends, end)
	}
	return ends
}

// missingVolumes reports the volumes not found, first of all.
func (v *verifier) missingVolumes() {
	for i, m := range v.opts.MissingVolumes {
		p := fmt.Sprintf("volume %d is missing", m.Number)
		if i == 0 {
			last := 0
			for _, vol := range v.opts.Volumes {
				last = max(last, vol.Number)
			}
			if last == 0 {
				p += ": nothing of the bundle can be read"
			} else {
				p += fmt.Sprintf(": the bundle is read up to the end of volume %d only", last)
			}
		}
		v.add(Finding{Code: CodeVolume, Entry: filepath.Base(m.Path), Problem: p})
	}
}

// volumeChecks checks each volume's size and sha256, once the stream has
// been read.
func (v *verifier) volumeChecks(fh *fileHasher) {
	vols := v.opts.Volumes
	if len(vols) == 0 {
		return
	}
	for i, vol := range vols {
		vr := VolumeReport{Number: vol.Number, Name: filepath.Base(vol.Path), Size: vol.Size}
		if i < len(v.volumeSums) {
			vr.SHA256 = v.volumeSums[i]
		}
		want, listed := v.opts.VolumeSHA256[vol.Number]
		vr.Checked = listed && vr.SHA256 != ""
		v.rep.Volumes = append(v.rep.Volumes, vr)
		if i < len(vols)-1 && vol.Size != vols[0].Size && vols[0].Size >= 0 {
			what := "smaller"
			if vol.Size > vols[0].Size {
				what = "larger"
			}
			v.add(Finding{Code: CodeVolume, Entry: vr.Name, Problem: fmt.Sprintf("volume %d is %d bytes, %s than volume 1 (%d bytes): it was cut short or belongs to another bundle", vol.Number, vol.Size, what, vols[0].Size)})
		}
		if vr.Checked && vr.SHA256 != want.Hex {
			v.add(Finding{Code: CodeChecksum, Entry: vr.Name, Problem: fmt.Sprintf("the sha256 of volume %d is not the one in %s", vol.Number, orName(v.opts.ChecksumFile, "its checksum file")),
				Got: "sha256:" + vr.SHA256, Want: want.String()})
		}
	}
	// A bundle cut at the end of the last volume found: a volume after it
	// is missing (when the checksum file does not say so already).
	if len(v.opts.MissingVolumes) == 0 && !v.rep.Complete && v.stopOffset != nil {
		var total int64
		for _, vol := range vols {
			total += vol.Size
		}
		last := vols[len(vols)-1]
		for _, f := range v.rep.Findings {
			if f.Code == CodeTruncated && *v.stopOffset == total {
				v.add(Finding{Code: CodeVolume, Entry: tarball.VolumeName(filepath.Base(trimVolume(last.Path)), last.Number+1),
					Problem: fmt.Sprintf("the bundle ends with volume %d, the last one found: volume %d is missing", last.Number, last.Number+1)})
				break
			}
		}
	}
}

func trimVolume(p string) string {
	if b, _, ok := tarball.ParseVolumeName(p); ok {
		return b
	}
	return p
}

// locate gives every finding that names an entry the entry's offset, and
// for a split bundle the volume and the offset in it.
func (v *verifier) locate() {
	vols := v.opts.Volumes
	for i := range v.rep.Findings {
		f := &v.rep.Findings[i]
		if f.Offset == nil && f.Entry != "" {
			if off, ok := v.offsets[f.Entry]; ok {
				f.Offset = offsetPtr(off)
			}
		}
		if f.Offset == nil || len(vols) == 0 || v.rep.Compressed {
			continue
		}
		vol, at, ok := tarball.Locate(vols, *f.Offset)
		if !ok {
			// The end of the stream: the end of the last volume.
			last := vols[len(vols)-1]
			if last.Size < 0 {
				continue
			}
			vol, at = last, last.Size
		}
		f.Volume = &VolumeAt{Number: vol.Number, Name: filepath.Base(vol.Path), Offset: at}
		if f.Code != CodeTruncated && f.Code != CodeArchive {
			size := int64(0)
			if j := v.byName(f.Entry); j != nil {
				size = j.headSize
			}
			if size > 0 {
				if end, _, ok := tarball.Locate(vols, *f.Offset+size-1); ok && end.Number > vol.Number {
					f.Volume.Through = end.Number
				}
			}
		}
	}
}

func (v *verifier) byName(name string) *blobJob {
	if h, ok := blobDigest(name); ok {
		return v.byDigest[h]
	}
	return nil
}

func offsetPtr(n int64) *int64 { return &n }

// externalList lists the blobs a delta bundle expects the target to hold.
func (v *verifier) externalList() {
	for _, h := range sortedHashes(v.idx.External) {
		e := v.idx.External[h]
		v.rep.External = append(v.rep.External, ExternalBlob{Digest: h, Size: e.Size, MediaType: e.MediaType, Images: v.imagesOf(h)})
	}
}
