package fetch

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestDescribe pins the one-line texts of registry errors, for pulls
// (describe) and for load's pushes (Describe): docs/RELIABILITY.md and the
// CLI tests quote them.
func TestDescribe(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=opaque&digest=sha256:1", nil)
	answer := func(code int, errs ...transport.Diagnostic) error {
		return fmt.Errorf("wrapped: %w", &transport.Error{StatusCode: code, Request: req, Errors: errs})
	}
	noAnswer := &url.Error{Op: "Patch", URL: "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=opaque", Err: syscall.ECONNRESET}
	const u = "PUT http://127.0.0.1:5000/v2/x/blobs/uploads/abc: "
	for _, tc := range []struct {
		name       string
		err        error
		pull, push string
	}{
		{"401", answer(401, transport.Diagnostic{Code: transport.UnauthorizedErrorCode, Message: "authentication required"}),
			"authentication failed (check docker login / DOCKER_CONFIG): " + u + "UNAUTHORIZED: authentication required",
			"authentication failed (check docker login / DOCKER_CONFIG): " + u + "UNAUTHORIZED: authentication required"},
		{"403", answer(403), "access denied: " + u + "403 Forbidden", "access denied: " + u + "403 Forbidden"},
		{"404", answer(404, transport.Diagnostic{Code: transport.BlobUploadUnknownErrorCode, Message: "blob upload unknown"}),
			"not found: " + u + "BLOB_UPLOAD_UNKNOWN: blob upload unknown", u + "BLOB_UPLOAD_UNKNOWN: blob upload unknown"},
		{"500 two codes", answer(500, transport.Diagnostic{Code: "A", Message: "a"}, transport.Diagnostic{Code: "B", Message: "b"}),
			u + "A: a; B: b", u + "A: a; B: b"},
		{"no answer", noAnswer, noAnswer.Error(), "PATCH http://127.0.0.1:5000/v2/x/blobs/uploads/abc: connection reset by peer"},
		{"other", errors.New("plain"), "plain", "plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(tc.err).Error(); got != tc.pull {
				t.Errorf("describe:\n got %q\nwant %q", got, tc.pull)
			}
			got := Describe(tc.err)
			if got.Error() != tc.push {
				t.Errorf("Describe:\n got %q\nwant %q", got.Error(), tc.push)
			}
			var te *transport.Error
			var ue *url.Error
			if errors.As(tc.err, &te) && !errors.As(got, &te) || errors.As(tc.err, &ue) && !errors.As(got, &ue) {
				t.Errorf("Describe(%v) does not unwrap to the transport or URL error", tc.err)
			}
		})
	}
}
