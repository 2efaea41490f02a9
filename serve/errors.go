package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bundle-tool/bundle/verify"
)

// Error codes of the distribution spec's error bodies.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeUnsupported     = "UNSUPPORTED"
	// CodeUnknown is distribution's code for an error of the server
	// itself (the spec lists none for a 500).
	CodeUnknown = "UNKNOWN"
)

// Error is an error answer: its status and the spec's error body.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func errorf(status int, code, format string, a ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// body is the spec's error body.
func (e *Error) body() []byte {
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{{e.Code, e.Message}}})
	return append(b, '\n')
}

// CorruptError refuses a bundle that did not verify: nothing is served.
// Report holds every finding.
type CorruptError struct {
	Name   string
	Report *verify.Report
}

func (e *CorruptError) Error() string {
	n := len(e.Report.Findings)
	if n == 1 && e.Report.Findings[0].Code == verify.CodeNotBundle {
		return fmt.Sprintf("%s: %s; nothing is served", e.Name, e.Report.Findings[0].Problem)
	}
	first := ""
	if n > 0 {
		first = ": " + e.Report.Findings[0].String()
		if n > 1 {
			first += fmt.Sprintf(" (and %d more)", n-1)
		}
	}
	return fmt.Sprintf("%s is corrupt or incomplete (%d %s), nothing is served%s", e.Name, n, plural(n, "problem", "problems"), first)
}

// CompressedError refuses a gzip-compressed bundle: its blobs cannot be
// read by offset.
type CompressedError struct {
	Name string
}

func (e *CompressedError) Error() string {
	return fmt.Sprintf("%s is gzip-compressed: its blobs cannot be read by offset, so it cannot be served in place", e.Name)
}

// Hint says what to do.
func (e *CompressedError) Hint() string {
	out := strings.TrimSuffix(e.Name, ".gz")
	if out == e.Name {
		out = e.Name + ".tar"
	}
	return fmt.Sprintf("decompress it once (gunzip -k %s, or gzip -dc %s > %s; bundle verify -i %s), then serve %s", e.Name, e.Name, out, out, out)
}

// MissingBlob is a blob that an image served needs and no bundle carries.
type MissingBlob struct {
	Digest string
	Image  string // the reference that needs it
	Bundle string // the bundle that lists it (as external, for a delta)
}

// IncompleteError refuses bundles that, together, lack blobs their
// images need: a delta served without the bundles that carry its
// external blobs.
type IncompleteError struct {
	Missing []MissingBlob
}

func (e *IncompleteError) Error() string {
	n := len(e.Missing)
	m := e.Missing[0]
	more := ""
	if n > 1 {
		more = fmt.Sprintf(" (and %d more)", n-1)
	}
	return fmt.Sprintf("%d %s that the images need %s in none of the bundles given: %s, used by %s, listed by %s%s; nothing is served",
		n, plural(n, "blob", "blobs"), plural(n, "is", "are"), m.Digest, m.Image, m.Bundle, more)
}

// Hint says what to do.
func (e *IncompleteError) Hint() string {
	return "a delta bundle's external blobs are served from the bundles it was made against: give those with -i too"
}

// ChangedError says that a bundle file changed on disk while it was
// served (or between its verification and its serving): what it serves
// from that file would no longer be what was verified, so it answers 500
// instead.
type ChangedError struct {
	Bundle string // the bundle's name
	File   string // the file (the volume of a split bundle) that changed
	What   string // what changed: "size 123 → 456", "modified 2026-…"
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("%s changed on disk while served (%s: %s): nothing more is served from it; restart bundle serve once the file is complete again", e.Bundle, e.File, e.What)
}

// IsRefused reports whether err is the refusal of a bundle as corrupt,
// incomplete, compressed or changed (the CLI's exit 3).
func IsRefused(err error) bool {
	var ce *CorruptError
	var ge *CompressedError
	var ie *IncompleteError
	var ch *ChangedError
	return errors.As(err, &ce) || errors.As(err, &ge) || errors.As(err, &ie) || errors.As(err, &ch)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Access is one request, for the access log.
type Access struct {
	Time     time.Time     `json:"time"`
	Remote   string        `json:"remote"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	Status   int           `json:"status"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	// Error is the message of an error answer.
	Error string `json:"error,omitempty"`
}

// writeError answers e with the spec's error body (none for HEAD).
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	if lw, ok := w.(*logWriter); ok {
		lw.err = e.Message
	}
	body := e.body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
