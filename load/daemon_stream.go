package load

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bundle-tool/bundle/internal/digestio"
	"github.com/bundle-tool/bundle/tarball"
	"github.com/klauspost/pgzip"
)

// sendBatch sends one batch in one POST /images/load and returns how many
// blobs it sent.
func (d *Daemon) sendBatch(ctx context.Context, b *Bundle, bt *classicBatch, wait func() error, sent func(int64)) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var blobs int
	writeErr := make(chan error, 1)
	go func() {
		var err error
		blobs, err = writeBatch(ctx, &digestio.CountingWriter{W: pw, OnWrite: sent}, b, bt, wait)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	_, loadErr := d.postLoad(ctx, pr)
	pr.CloseWithError(errors.New("the daemon stopped reading"))
	werr := <-writeErr
	var ce *ChangedError
	var se *sizeError
	switch {
	case errors.As(werr, &ce), errors.As(werr, &se), errors.Is(werr, errWaitLost):
		return blobs, werr
	case loadErr != nil:
		return blobs, loadErr
	case werr != nil:
		return blobs, fmt.Errorf("sending images to the docker daemon: %w", werr)
	}
	return blobs, nil
}

// writeBatch writes the tar of one batch: the configs, the layer files it
// carries, and manifest.json last (a stream cut short can never be taken
// for a complete one). It returns how many blobs it wrote.
func writeBatch(ctx context.Context, w io.Writer, b *Bundle, bt *classicBatch, wait func() error) (int, error) {
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64, dir bool) *tar.Header {
		h := &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: time.Unix(0, 0).UTC(), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if size >= 1<<33-1 {
			h.Format = tar.FormatPAX
		}
		return h
	}
	for _, dir := range []string{tarball.BlobsDir, tarball.BlobsSHA256Dir} {
		if err := tw.WriteHeader(hdr(dir, 0, true)); err != nil {
			return 0, err
		}
	}
	written := map[string]bool{}
	var entries []tarball.DockerManifestEntry
	var zr *pgzip.Reader
	defer func() {
		if zr != nil {
			zr.Close()
		}
	}()
	buf := make([]byte, 256<<10)
	blobs := 0
	for _, c := range bt.images {
		e := tarball.DockerManifestEntry{Config: tarball.BlobPath(c.config), RepoTags: []string{}}
		if !written[e.Config] {
			written[e.Config] = true
			if err := tw.WriteHeader(hdr(e.Config, int64(len(c.raw)), false)); err != nil {
				return blobs, err
			}
			if _, err := tw.Write(c.raw); err != nil {
				return blobs, err
			}
			blobs++
		}
		for _, l := range c.layers {
			e.Layers = append(e.Layers, l.entry())
			if !bt.send[l.chainID] || written[l.entry()] {
				continue
			}
			written[l.entry()] = true
			if err := ctx.Err(); err != nil {
				return blobs, err
			}
			if err := tw.WriteHeader(hdr(l.entry(), l.size, false)); err != nil {
				return blobs, err
			}
			var err error
			if l.inflate {
				zr, err = inflateLayer(tw, b, l, zr, buf)
			} else {
				err = copyLayer(tw, b, l, buf)
			}
			if err != nil {
				return blobs, err
			}
			blobs++
		}
		entries = append(entries, e)
	}
	mj, err := json.Marshal(entries)
	if err != nil {
		return blobs, err
	}
	// The daemon starts loading once it has read manifest.json: the layers
	// this batch does not carry must be in by then.
	if zr != nil {
		zr.Close()
		zr = nil // its read-ahead buffers are not kept while waiting
	}
	if err := wait(); err != nil {
		return blobs, err
	}
	if err := tw.WriteHeader(hdr(tarball.DockerManifest, int64(len(mj)), false)); err != nil {
		return blobs, err
	}
	if _, err := tw.Write(mj); err != nil {
		return blobs, err
	}
	return blobs, tw.Close()
}

// copyLayer copies a layer blob as it is (not gzip: uncompressed, zstd).
// OpenBlob's reader fails at EOF when the bytes are not the blob's.
func copyLayer(w io.Writer, b *Bundle, l classicLayer, buf []byte) error {
	rc, err := b.OpenBlob(l.blob)
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.CopyBuffer(w, rc, buf)
	if err != nil {
		return err
	}
	if n != l.size {
		return &ChangedError{Entry: tarball.BlobPath(l.blob), Got: fmt.Sprintf("%d bytes", n), Want: fmt.Sprintf("%d bytes", l.size)}
	}
	return nil
}
