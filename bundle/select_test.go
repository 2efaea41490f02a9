package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bundle-tool/bundle/load"
)

// An --image the bundle lacks, or a --platform that leaves nothing, fails
// before the verify pass: here the bundle's sha256 file is wrong, which the
// pass would report as corruption; the selection error comes first.
func TestLoadSelectionFailsBeforeVerify(t *testing.T) {
	dir := t.TempDir()
	p := writeBundle(t, dir)
	wrong := strings.Repeat("0", 64) + "  images.tar\n"
	if err := os.WriteFile(p+".sha256", []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "oci")
	for _, tc := range []struct {
		name      string
		opts      LoadOptions
		check     func(error) bool
		wantInMsg string
	}{
		{"missing image", LoadOptions{Images: []string{"registry.local/other:2"}},
			func(err error) bool { var e *load.NotInBundleError; return errors.As(err, &e) }, "registry.local/app:1"},
		{"bad image", LoadOptions{Images: []string{"Bad Ref"}},
			func(err error) bool { var e *load.SelectionError; return errors.As(err, &e) }, "--image"},
		{"no such platform", LoadOptions{Platforms: []string{"linux/s390x"}},
			func(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "nothing to load") }, "linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Input, tc.opts.To = p, "oci:"+out
			_, err := Load(context.Background(), tc.opts)
			var ce *CorruptError
			if errors.As(err, &ce) || !tc.check(err) {
				t.Fatalf("Load = %v, want the selection error before the verify pass", err)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Errorf("error %q lacks %q", err, tc.wantInMsg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s written", out)
			}
		})
	}
}
