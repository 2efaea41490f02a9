package load

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/fetch"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Target is where images are loaded: a registry, an OCI image layout
// directory or a docker daemon.
//
// Both methods take the images Select chose from a Bundle that has been
// verified. Check writes nothing. Load skips every image the target already
// holds as the bundle does (same digest, or for docker the same image ID),
// writes the rest children first, and names an image (a tag, an index.json
// entry) only after everything it references is in place, so an error or an
// interrupt never leaves a name on an incomplete image; running it again
// finishes the job and transfers nothing twice.
type Target interface {
	// String names the target in messages: "registry 127.0.0.1:5000/mirror",
	// "OCI layout /srv/images", "docker daemon unix:///var/run/docker.sock".
	String() string
	// Ping checks, writing nothing, that the target can be reached and
	// looks writable, so that a load fails at once rather than after a long
	// verify pass.
	Ping(ctx context.Context) error
	// Check says, for each image, whether the target holds it already and,
	// in Stats, how many blobs and bytes a load would send (at most).
	Check(ctx context.Context, b *Bundle, images []Chosen) (*Result, error)
	// Holds says, for each image, whether the target already holds it as
	// the bundle does (an image Load would skip), asking as little as it
	// can. A load does not decompress the layers that only such images
	// use in its verify pass.
	Holds(ctx context.Context, b *Bundle, images []Chosen) ([]bool, error)
	// Load loads the images the target lacks, reporting to p (which may be
	// nil).
	Load(ctx context.Context, b *Bundle, images []Chosen, p Progress) (*Result, error)
}

// Inflater is a target that decompresses some layers itself as it loads
// them, enforcing the decompression-bomb limit (verify.InflateLimit) and
// handing on only what it decompressed; what it hands on is checked
// against the diffIDs (a docker daemon does so). The verify pass need not
// decompress those layers.
type Inflater interface {
	// InflatesLayers names the layers that Load decompresses itself for
	// images, as things stand (nil when none).
	InflatesLayers(ctx context.Context, b *Bundle, images []Chosen) (map[v1.Hash]bool, error)
}

// Status says what happened, or with Check would happen, to one image.
type Status string

// Statuses of an image.
const (
	// StatusLoaded: written to the target by this run.
	StatusLoaded Status = "loaded"
	// StatusSkipped: the target held it already; nothing was written.
	StatusSkipped Status = "skipped"
	// StatusPresent (Check): the target holds it already.
	StatusPresent Status = "present"
	// StatusMissing (Check): the target lacks it, or names something else
	// under its reference; a load would write it.
	StatusMissing Status = "missing"
)

// ImageResult is what a target did, or would do, with one image.
type ImageResult struct {
	// Ref is the reference as the bundle names it.
	Ref string `json:"ref"`
	// Target is the reference in the target: rewritten under a registry's
	// prefix, as docker prints it for a daemon, as the bundle names it in an
	// OCI layout.
	Target string `json:"target"`
	// Digest is what Target names once loaded: the manifest or index digest
	// (the bundle's digest index entry, unless Note says otherwise), or for
	// a docker daemon the image ID.
	Digest v1.Hash `json:"digest"`
	// Platforms are the platform manifests loaded.
	Platforms []string `json:"platforms,omitempty"`
	Status    Status   `json:"status"`
	// Replaces is what Target named before, when it named something else.
	Replaces string `json:"replaces,omitempty"`
	// Note says what the user should know: an index loaded without some of
	// its platforms, a digest that differs from the source.
	Note string `json:"note,omitempty"`
}

// Stats counts what a load transferred. For Check, BlobsSent and BytesSent
// are what a load would send at most.
type Stats struct {
	// BlobsSent and BytesSent count blobs (layers and configs) and bytes
	// written to the target; for a daemon, BytesSent is the size of the tar
	// stream sent to it.
	BlobsSent int   `json:"blobsSent"`
	BytesSent int64 `json:"bytesSent"`
	// BlobsPresent are blobs the target held already.
	BlobsPresent int `json:"blobsPresent"`
	// BlobsMounted are blobs a registry linked from another of its
	// repositories instead of receiving them.
	BlobsMounted int `json:"blobsMounted,omitempty"`
	// ManifestsSent counts manifests and indexes written (for a layout,
	// blobs written of those kinds; for a registry, PUTs including tags).
	ManifestsSent int `json:"manifestsSent"`
}

// Result is what Check or Load did.
type Result struct {
	Target string        `json:"target"`
	Images []ImageResult `json:"images"`
	Stats
}

// Count returns how many images have status s.
func (r *Result) Count(s Status) int {
	n := 0
	for _, im := range r.Images {
		if im.Status == s {
			n++
		}
	}
	return n
}

// Progress is told what a load does. Implementations must be safe for
// concurrent use.
type Progress interface {
	// Planned says how much a load will consider sending: images to load,
	// and the blobs and bytes they are made of (some may be present).
	Planned(images, blobs int, bytes int64)
	// Sent reports n more bytes sent to the target.
	Sent(n int64)
	// Done reports one image handled (loaded or skipped).
	Done(r ImageResult)
	// Retry reports a request or upload that failed and will be tried again.
	Retry(what string, attempt int, reason string, wait time.Duration)
}

type noProgress struct{}

func (noProgress) Planned(int, int, int64)                  {}
func (noProgress) Sent(int64)                               {}
func (noProgress) Done(ImageResult)                         {}
func (noProgress) Retry(string, int, string, time.Duration) {}

func orNop(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}

// Options configure the target that ParseTarget makes.
type Options struct {
	// Jobs is how many blobs are sent at once (registry, layout).
	Jobs int
	// Access is how a registry target is reached: insecure hosts,
	// credentials, the retry policy and the stall window (zero values
	// mean fetch's defaults).
	fetch.Access
	// DockerHost is the daemon's address; "" means $DOCKER_HOST, else
	// unix:///var/run/docker.sock.
	DockerHost string
	// DockerDecompress says whether gzip layers go decompressed to a docker
	// daemon with the classic image store; DecompressAuto (the zero value)
	// means to a daemon on this machine only, unless
	// BUNDLE_DOCKER_DECOMPRESS=1 or 0 says otherwise.
	DockerDecompress Decompress
	// Progress, when set, is told of the retries of requests made outside
	// Load (Ping, Check), so that every retry of a run is reported.
	Progress Progress
}

// ParseTarget makes the target that spec names:
//
//	docker                      the docker daemon at DOCKER_HOST
//	docker://HOST[:PORT][/PREFIX]  a registry; images go under PREFIX (RewriteRef)
//	oci:DIR                     an OCI image layout directory
func ParseTarget(spec string, opts Options) (Target, error) {
	switch {
	case spec == "" || spec == "docker" || spec == "docker-daemon":
		return NewDaemon(opts)
	case strings.HasPrefix(spec, "docker://"):
		return NewRegistry(strings.TrimPrefix(spec, "docker://"), opts)
	case strings.HasPrefix(spec, "oci:"):
		dir := strings.TrimPrefix(spec, "oci:")
		if dir == "" {
			return nil, &SpecError{Spec: spec, Reason: "no directory after oci:"}
		}
		return NewLayout(dir, opts)
	}
	return nil, &SpecError{Spec: spec, Reason: "not docker, docker://HOST[/PREFIX] or oci:DIR"}
}

// SpecError says a target spec is malformed (a usage error).
type SpecError struct {
	Spec   string
	Reason string
}

func (e *SpecError) Error() string { return fmt.Sprintf("target %q: %s", e.Spec, e.Reason) }
