package fetch

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A tag the repository lacks: the error lists the tags it has, nearest
// first, and says what a name without a tag means.
func TestResolveTagNotFoundListsTags(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"2.0", "1.0", "1.1", "1.10"} {
		ref, _ := name.ParseReference(host + "/team/app:" + tag)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newTestClient(t, t.TempDir(), Options{})
	for _, tc := range []struct{ tag, want string }{
		{"latest", "; the repository has 1.0, 1.1, 1.10, 2.0 (a name without a tag means :latest)"},
		{"1.01", "; the repository has 1.0, 1.1, 1.10, 2.0"},
	} {
		ref, _ := name.ParseReference(host + "/team/app:" + tc.tag)
		src := Source{Ref: ref, From: ref}
		_, err := resolve(context.Background(), c, src)
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) || !strings.Contains(err.Error(), "not found") {
			t.Errorf("resolve :%s = %v, want it to end %q", tc.tag, err, tc.want)
		}
	}
}
